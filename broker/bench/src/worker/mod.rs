//! A worker process: runs its share of the clients and reports to the parent.
//!
//! - `reactor`: epoll, non-blocking connect, raw reads (why epoll and not glommio: there).
//! - `stdin`: the parent's command pipe, line by line without blocking.
//! - `conn`: one connection's socket, buffers and protocol state.
//! - `link`: TLS and WebSocket between a socket and its MQTT bytes (`link::ws`: the WebSocket
//!   client, without I/O).
//! - `window`: a publisher's QoS 1/2 in-flight window.
//! - `template`: a PUBLISH encoded once, patched per message.
//! - `sender`: pacing, sequence numbers, backpressure time and encoding of a publishing client.
//! - `engine`: the event loop; `phases` (setup, start, window end, drain, teardown), `sweep`
//!   (one packet to every connection, paced: the liveness check, the teardown), `events`
//!   (socket readiness) and `packets` (what each packet from the broker does) are more of its
//!   methods.

mod conn;
mod engine;
mod events;
mod link;
mod packets;
mod phases;
mod reactor;
mod sender;
mod stdin;
mod sweep;
mod template;
mod window;

use std::io::BufRead;
use std::process::ExitCode;

use crate::protocol::{FromWorker, WorkerSpec};

/// The hidden `worker` subcommand: reads its spec from the first stdin line, runs, prints its
/// result as the last stdout line.
pub fn main() -> ExitCode {
    let mut first = String::new();
    // One blocking read of the spec line, before stdin turns non-blocking.
    if let Err(e) = std::io::stdin().lock().read_line(&mut first) {
        eprintln!("ironsight-bench worker: reading the spec: {e}");
        return ExitCode::from(2);
    }
    let ws: WorkerSpec = match serde_json::from_str(&first) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("ironsight-bench worker: bad spec: {e}");
            return ExitCode::from(2);
        }
    };
    // Ctrl-C reaches the whole process group: the parent handles it (it tells every worker to
    // stop and still prints a report), so a worker must not die of it.
    // SAFETY: setting a signal to SIG_IGN installs no handler code.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    if ws.spec.client.pin {
        pin(ws.assignment.worker);
    }
    let mut engine = match stdin::StdinLines::new().and_then(|s| engine::Engine::new(ws, s)) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("ironsight-bench worker: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match engine.run() {
        Ok(partial) => {
            let line = serde_json::to_string(&FromWorker::Result(Box::new(partial)))
                .expect("a result serializes");
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ironsight-bench worker: {e}");
            ExitCode::from(1)
        }
    };
    // The sockets still open close only now, once the parent has the report.
    drop(engine);
    code
}

/// Pins this process to one CPU (worker index modulo the CPUs it may use).
fn pin(worker: u32) {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let Ok(allowed) = sched_getaffinity(Pid::from_raw(0)) else {
        return;
    };
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    if cpus.is_empty() {
        return;
    }
    let mut set = CpuSet::new();
    if set.set(cpus[worker as usize % cpus.len()]).is_ok() {
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}
