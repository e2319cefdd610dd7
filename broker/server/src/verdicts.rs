//! The shards' link to the auth service (`ironsight_auth`): CONNECTs go out through the
//! service's channel; verdicts come back into one inbox per shard, and a byte on the shard's
//! wake socket, the way the parking relay wakes a shard, starts its verdicts task, which takes
//! the whole inbox.
//!
//! No wake-up is lost: a poster writes a byte whenever it makes an inbox non-empty, after its
//! answer is in, and the shard takes the whole inbox after every byte it reads. No byte is
//! needed for answers added to an inbox that is not empty: the byte that made it non-empty
//! has not been followed by a take yet.

use std::io::Write;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, Mutex};

use ironsight_auth::Answer;

/// Verdicts waiting for each shard.
pub struct Verdicts {
    inboxes: Vec<Inbox>,
}

struct Inbox {
    answers: Mutex<Vec<Answer>>,
    /// The service's end of the shard's wake socket (non-blocking).
    wake: StdUnixStream,
}

impl Verdicts {
    /// Inboxes for `shards` shards; returns them and each shard's end of its wake socket.
    pub fn new(shards: usize) -> std::io::Result<(Arc<Verdicts>, Vec<StdUnixStream>)> {
        let mut inboxes = Vec::with_capacity(shards);
        let mut shard_ends = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (wake, shard_end) = StdUnixStream::pair()?;
            wake.set_nonblocking(true)?;
            inboxes.push(Inbox {
                answers: Mutex::new(Vec::new()),
                wake,
            });
            shard_ends.push(shard_end);
        }
        Ok((Arc::new(Verdicts { inboxes }), shard_ends))
    }

    /// Called by the auth service, on its threads.
    pub fn post(&self, answer: Answer) {
        let Some(inbox) = self.inboxes.get(usize::from(answer.shard)) else {
            tracing::error!(shard = answer.shard, "verdict for an unknown shard");
            return;
        };
        let was_empty = {
            let mut answers = inbox.answers.lock().expect("no panics while held");
            let was_empty = answers.is_empty();
            answers.push(answer);
            was_empty
        };
        if was_empty {
            // A full socket means bytes are already waiting for the shard, which will take
            // this answer with the others: the error is harmless then.
            let _ = (&inbox.wake).write(&[1]);
        }
    }

    /// Everything waiting for `shard`.
    pub fn take(&self, shard: usize, into: &mut Vec<Answer>) {
        let mut answers = self.inboxes[shard]
            .answers
            .lock()
            .expect("no panics while held");
        into.append(&mut answers);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use ironsight_core::auth::Refusal;

    use super::*;

    fn answer(shard: u16, ticket: u64) -> Answer {
        Answer {
            shard,
            conn: 1,
            ticket,
            answer: Err(Refusal::BadCredentials).into(),
        }
    }

    /// Proves a shard is woken once per empty-to-non-empty change and takes every answer.
    #[test]
    fn a_shard_is_woken_and_takes_every_answer() {
        let (verdicts, mut ends) = Verdicts::new(2).unwrap();
        verdicts.post(answer(1, 1));
        verdicts.post(answer(1, 2));
        let mut byte = [0u8; 8];
        ends[1].set_nonblocking(true).unwrap();
        assert_eq!(ends[1].read(&mut byte).unwrap(), 1, "one wake-up byte");
        let mut taken = Vec::new();
        verdicts.take(1, &mut taken);
        assert_eq!(taken.iter().map(|a| a.ticket).collect::<Vec<_>>(), [1, 2]);
        verdicts.take(0, &mut taken);
        assert_eq!(taken.len(), 2, "shard 0 got nothing");
        verdicts.post(answer(1, 3));
        assert_eq!(
            ends[1].read(&mut byte).unwrap(),
            1,
            "empty again: woken again"
        );
    }
}
