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
            .enable_all()
            .build()?;
        let (requests, mut incoming) = mpsc::unbounded_channel::<AuthRequest>();
        let checker = Arc::new(checker);
        let thread = std::thread::Builder::new()
            .name("ironsight-auth".into())
            .spawn(move || {
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
