//! The side runtime. Requests arrive over an unbounded channel from any shard (each shard
//! caps its own pending authentications, so the channel holds at most that many per shard),
//! each is checked in its own task under the timeout, and the answer goes back through the
//! server's callback, which queues it for the shard and wakes it.

use std::sync::Arc;
use std::thread::JoinHandle;

use ironsight_core::auth::{AuthAnswer, AuthRequest, Refusal};
use ironsight_core::conn::ConnId;
use tokio::sync::mpsc;

use crate::check::Checker;

/// Threads of the side runtime. Checks wait on the network or hash for a millisecond; two
/// threads keep a connection storm from queueing behind one slow directory answer without
/// taking cores from the shards.
const WORKER_THREADS: usize = 2;

/// The nice value of every side-runtime thread (workers and the hashing pool). The shards run
/// at 0, so on a core that both want, the kernel's fair scheduler gives a shard about nine
/// tenths of it (weights 1024 against 110): a storm of logins slows the clients already
/// connected as little as it can, and still uses every idle cycle of every core.
const NICE: libc::c_int = 10;

/// The answer to one request, for the shard that asked.
#[derive(Debug)]
pub struct Answer {
    pub shard: u16,
    pub conn: ConnId,
    pub ticket: u64,
    pub answer: AuthAnswer,
}

/// Where answers go: the server queues each for its shard and wakes that shard.
pub type Reply = Arc<dyn Fn(Answer) + Send + Sync>;

/// The running side runtime. Dropping it stops taking requests and waits for the thread.
pub struct AuthService {
    requests: Option<mpsc::UnboundedSender<AuthRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl AuthService {
    pub fn start(checker: Checker, reply: Reply) -> std::io::Result<AuthService> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("ironsight-auth")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        let (requests, mut incoming) = mpsc::unbounded_channel::<AuthRequest>();
        let checker = Arc::new(checker);
        let thread = std::thread::Builder::new()
            .name("ironsight-auth".into())
            .spawn(move || {
                lower_priority(); // this thread takes requests in: it yields to the shards too
                runtime.block_on(async move {
                    while let Some(request) = incoming.recv().await {
                        let (checker, reply) = (checker.clone(), reply.clone());
                        tokio::spawn(async move { reply(answer(&checker, request).await) });
                    }
                });
                // Checks still running are dropped with the runtime: the broker is stopping.
                runtime.shutdown_background();
            })?;
        Ok(AuthService {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// Hands a request over; never blocks. After the service stopped, the request is
    /// answered "unavailable" by its shard's timeout.
    pub fn submit(&self, request: AuthRequest) {
        if let Some(requests) = &self.requests {
            let _ = requests.send(request);
        }
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.requests.take(); // closes the channel: the runtime's loop ends
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Lowers the calling thread's priority to [`NICE`]. Linux keeps a nice value per thread, so the
/// shards keep theirs. If the kernel refuses (a seccomp filter, say), the thread runs on at
/// normal priority: slower for the clients connected during a storm, not wrong. The admin
/// API's runtime (`ironsight_admin`) lowers its threads with it too.
pub fn lower_priority() {
    // SAFETY: setpriority takes plain integers and touches no memory of ours; `who` 0 is the
    // calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) } != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "a side runtime's threads run at the shards' priority"
        );
    }
}

async fn answer(checker: &Checker, request: AuthRequest) -> Answer {
    let answer = match tokio::time::timeout(checker.timeout(), checker.check(&request)).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::warn!(
                conn = request.conn,
                client_id = %request.client_id,
                timeout = ?checker.timeout(),
                "authentication did not finish in time"
            );
            Err(Refusal::Unavailable).into()
        }
    };
    Answer {
        shard: request.shard,
        conn: request.conn,
        ticket: request.ticket,
        answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> libc::c_int {
        // SAFETY: as in lower_priority; getpriority reads the calling thread's nice value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    /// Proves the side runtime's threads give way to the shards, and only they do: the nice
    /// value is the thread's, not the process's.
    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = nice_of_this_thread();
        let lowered = std::thread::spawn(|| {
            lower_priority();
            nice_of_this_thread()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, NICE);
        assert_eq!(nice_of_this_thread(), before);
    }
}
