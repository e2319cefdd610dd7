//! The flusher: one task per shard that writes the output of a whole scheduling round at once.
//!
//! Every core entry point marks the connections it gave output to; instead of writing each
//! packet as it is produced, the work of one round is collected and the flusher task, which
//! runs after the tasks already woken, writes every dirty connection with one vectored send
//! (`ShardIo::flush`). So a fan-out to a thousand subscribers costs a thousand sends, not a
//! thousand per message.

use std::cell::{Cell, RefCell};
use std::task::{Context, Waker};

#[derive(Default)]
pub struct Flusher {
    waker: RefCell<Option<Waker>>,
    scheduled: Cell<bool>,
}

impl Flusher {
    /// Asks for a flush at the end of this scheduling round.
    pub fn schedule(&self) {
        if !self.scheduled.replace(true) {
            if let Some(waker) = self.waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// The flusher task's poll: whether a flush is due now. The task is woken by the next
    /// [`Flusher::schedule`].
    pub fn due(&self, cx: &Context<'_>) -> bool {
        let due = self.scheduled.replace(false);
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        due
    }
}
