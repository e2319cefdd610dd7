//! The parent process: starts the workers (this binary again, `worker` subcommand), walks them
//! through the phases of [`crate::protocol`] with a deadline on each, merges their results, and
//! prints the report. It holds no client sockets itself.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::accounting::Window;
use crate::clock::{now_ns, ns_to_s, s_to_ns};
use crate::errors::ErrorLog;
use crate::proc_stats::{self, Sample};
use crate::progress::Display;
use crate::protocol::{
    FromWorker, Progress, Schedule, ToWorker, WorkerSpec, CLEAR_TIMEOUT_S, PHASE_SLACK_S,
    PING_TIMEOUT_S, TEARDOWN_TIMEOUT_S,
};
use crate::report::{BrokerSamples, Merged, Outside, Partial, Report, WindowSamples};
use crate::spec::{partition, RunOptions, Scenario, Spec};

/// Time between the start command and the schedule's start, so every worker has it first.
pub const GO_LEAD_S: f64 = 0.2;
/// How long workers get to exit after their result before they are killed.
pub const EXIT_WAIT_S: f64 = 5.0;
/// Bound on a run after an interrupt: workers are told to stop and get this long to report.
pub const INTERRUPT_GRACE_S: f64 = 10.0;

/// Set by SIGINT/SIGTERM.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// What a worker's stdout said.
enum Event {
    Msg(FromWorker),
    Garbage(String),
    Closed,
}

/// What the parent knows about one worker.
#[derive(Default)]
struct WorkerState {
    alive: bool,
    ready: bool,
    published: Option<Vec<(u32, u64)>>,
    result: Option<Partial>,
    progress: Progress,
}

struct Fleet {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    rx: Receiver<(usize, Event)>,
    workers: Vec<WorkerState>,
    display: Display,
    errors: ErrorLog,
    /// When the parent stopped waiting because of an interrupt.
    interrupt_deadline_ns: Option<u64>,
}

/// Runs a checked spec to the end and prints its report; `warnings` go into its errors.
pub fn run(spec: Spec, options: RunOptions, warnings: Vec<String>) -> ExitCode {
    install_signal_handlers();
    let started = now_ns();
    let mut errors = ErrorLog::default();
    for w in warnings {
        errors.push(w);
    }
    let broker_before = options
        .broker_pid
        .and_then(|pid| match proc_stats::sample(pid) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push(e);
                None
            }
        });
    let mut fleet = match Fleet::spawn(&spec, &options) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ironsight-bench: starting workers: {e}");
            return ExitCode::from(1);
        }
    };
    let window = fleet.drive(&spec, options.broker_pid);
    let partials = fleet.finish();
    let wall_s = ns_to_s(now_ns() - started);
    let window = window.and_then(|sampler| match sampler.join() {
        Ok(Ok(samples)) => Some(samples),
        Ok(Err(e)) => {
            errors.push(e);
            None
        }
        Err(_) => None,
    });
    let broker = match (options.broker_pid, broker_before) {
        (Some(pid), Some(before)) => match proc_stats::sample(pid) {
            Ok(after) => Some(BrokerSamples {
                pid,
                before,
                after,
                window,
            }),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        _ => None,
    };
    let mut merged = Merged::default();
    for p in &partials {
        merged.add(p);
    }
    errors.merge_lines(&fleet.errors.lines());
    let outside = Outside {
        wall_s,
        cpu: proc_stats::self_and_children(),
        broker,
    };
    let report = Report::build(&spec, &merged, &outside, errors);
    let json = serde_json::to_string_pretty(&report).expect("a report serializes");
    println!("{json}");
    if !options.json_only {
        eprintln!("{}", report.summary());
    }
    if partials.len() == spec.procs as usize {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn install_signal_handlers() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { signal(sig, SigHandler::Handler(on_signal)) };
    }
}

/// The time plan of a run starting now.
pub fn schedule(spec: &Spec, now: u64) -> Schedule {
    let start_ns = now + s_to_ns(GO_LEAD_S);
    let (window, drain_end_ns) = match spec.scenario {
        Scenario::Conn { hold_s, .. } => {
            let end_ns = start_ns + s_to_ns(hold_s);
            (
                Window { start_ns, end_ns },
                end_ns + s_to_ns(spec.sweep_bound_s() + PING_TIMEOUT_S),
            )
        }
        Scenario::Retained { .. } => {
            let end_ns = start_ns + s_to_ns(spec.load.duration_s);
            (Window { start_ns, end_ns }, end_ns)
        }
        _ => {
            let window_start = start_ns + s_to_ns(spec.load.warmup_s);
            let end_ns = window_start + s_to_ns(spec.load.duration_s);
            (
                Window {
                    start_ns: window_start,
                    end_ns,
                },
                end_ns + s_to_ns(spec.load.drain_s),
            )
        }
    };
    Schedule {
        start_ns,
        window,
        drain_end_ns,
    }
}

/// The broker's samples at the start and the end of the measured window, taken by a thread.
type WindowSampler = JoinHandle<Result<WindowSamples, String>>;

/// Samples the broker when the measured window opens and when it closes, so that the CPU it
/// spent carrying the steady offered rate is known apart from set-up, drain and teardown. The
/// thread ends by the window's end (bounded by --warmup + --duration).
fn sample_window(pid: u32, window: Window) -> WindowSampler {
    std::thread::spawn(move || {
        let at = |ns: u64| -> Result<(u64, Sample), String> {
            std::thread::sleep(Duration::from_nanos(ns.saturating_sub(now_ns())));
            Ok((now_ns(), proc_stats::sample(pid)?))
        };
        let (start_ns, start) = at(window.start_ns)?;
        let (end_ns, end) = at(window.end_ns)?;
        Ok(WindowSamples {
            seconds: ns_to_s(end_ns - start_ns),
            start,
            end,
        })
    })
}

impl Fleet {
    fn spawn(spec: &Spec, options: &RunOptions) -> std::io::Result<Fleet> {
        let exe = std::env::current_exe()?;
        let (tx, rx) = mpsc::channel();
        let mut fleet = Fleet {
            children: Vec::new(),
            stdins: Vec::new(),
            rx,
            workers: Vec::new(),
            display: Display::new(options.json_only),
            errors: ErrorLog::default(),
            interrupt_deadline_ns: None,
        };
        for assignment in partition(spec) {
            let w = assignment.worker as usize;
            let mut child = Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            let stdout = child.stdout.take().expect("stdout is piped");
            let ws = WorkerSpec {
                spec: spec.clone(),
                assignment,
            };
            let line = serde_json::to_string(&ws).expect("a worker spec serializes");
            writeln!(stdin, "{line}")?;
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let event = match serde_json::from_str::<FromWorker>(&line) {
                        Ok(msg) => Event::Msg(msg),
                        Err(_) => Event::Garbage(line),
                    };
                    if tx.send((w, event)).is_err() {
                        return;
                    }
                }
                let _ = tx.send((w, Event::Closed));
            });
            fleet.children.push(child);
            fleet.stdins.push(Some(stdin));
            fleet.workers.push(WorkerState {
                alive: true,
                ..Default::default()
            });
        }
        Ok(fleet)
    }

    /// Walks every worker through the phases. With `broker_pid`, returns the thread that samples
    /// the broker at the measured window's start and end.
    fn drive(&mut self, spec: &Spec, broker_pid: Option<u32>) -> Option<WindowSampler> {
        let setup_s = partition(spec)
            .iter()
            .map(|a| spec.setup_bound_s(a))
            .fold(0.0, f64::max);
        let ready_deadline = now_ns() + s_to_ns(setup_s + PHASE_SLACK_S);
        self.wait("setup", "readiness", ready_deadline, |w| w.ready);
        let schedule = schedule(spec, now_ns());
        self.send_all(&ToWorker::Go { schedule });
        let sampler = broker_pid.map(|pid| sample_window(pid, schedule.window));
        let slack = s_to_ns(PHASE_SLACK_S);
        self.wait(
            "running",
            "window counts",
            schedule.drain_end_ns + slack,
            |w| w.published.is_some(),
        );
        let counts: HashMap<u32, u64> = self
            .workers
            .iter()
            .filter_map(|w| w.published.as_ref())
            .flatten()
            .copied()
            .collect();
        let mut counts: Vec<(u32, u64)> = counts.into_iter().collect();
        counts.sort_unstable();
        self.send_all(&ToWorker::Expect { counts });
        let teardown_s = TEARDOWN_TIMEOUT_S + spec.sweep_bound_s();
        let end = schedule.drain_end_ns + s_to_ns(CLEAR_TIMEOUT_S + teardown_s) + slack;
        self.wait("draining", "results", end, |w| w.result.is_some());
        sampler
    }

    fn send_all(&mut self, cmd: &ToWorker) {
        let line = serde_json::to_string(cmd).expect("commands serialize");
        for (w, stdin) in self.stdins.iter_mut().enumerate() {
            if !self.workers[w].alive || self.workers[w].result.is_some() {
                continue;
            }
            if let Some(s) = stdin {
                if writeln!(s, "{line}").and_then(|()| s.flush()).is_err() {
                    self.errors.push(format!("worker {w}: command pipe closed"));
                }
            }
        }
    }

    /// Waits until every live worker satisfies `done` (or has finished, or died), or until
    /// `deadline_ns`; workers late at the deadline are killed. `phase` is shown on the progress
    /// line, `what` names the awaited report in errors.
    fn wait(
        &mut self,
        phase: &str,
        what: &str,
        deadline_ns: u64,
        done: impl Fn(&WorkerState) -> bool,
    ) {
        loop {
            let pending = self
                .workers
                .iter()
                .any(|w| w.alive && w.result.is_none() && !done(w));
            if !pending {
                return;
            }
            let now = now_ns();
            self.check_interrupt(now);
            let deadline = self
                .interrupt_deadline_ns
                .map_or(deadline_ns, |d| d.min(deadline_ns));
            if now >= deadline {
                self.kill_late(what, &done);
                return;
            }
            let wait_ns = (deadline - now).min(crate::progress::REFRESH_NS);
            match self.rx.recv_timeout(Duration::from_nanos(wait_ns)) {
                Ok((w, event)) => self.absorb(w, event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let total = self.progress();
            self.display.update(now_ns(), phase, total);
        }
    }

    fn check_interrupt(&mut self, now: u64) {
        if INTERRUPTED.load(Ordering::SeqCst) && self.interrupt_deadline_ns.is_none() {
            self.errors.push("interrupted: workers told to stop");
            self.interrupt_deadline_ns = Some(now + s_to_ns(INTERRUPT_GRACE_S));
            self.send_all(&ToWorker::Stop);
        }
    }

    fn kill_late(&mut self, what: &str, done: &impl Fn(&WorkerState) -> bool) {
        for (w, state) in self.workers.iter_mut().enumerate() {
            if state.alive && state.result.is_none() && !done(state) {
                self.errors
                    .push(format!("worker {w} did not report {what} in time; killed"));
                let _ = self.children[w].kill();
                state.alive = false;
            }
        }
    }

    fn absorb(&mut self, w: usize, event: Event) {
        let state = &mut self.workers[w];
        match event {
            Event::Msg(FromWorker::Progress(p)) => state.progress = p,
            Event::Msg(FromWorker::Ready) => state.ready = true,
            Event::Msg(FromWorker::Published { counts }) => state.published = Some(counts),
            Event::Msg(FromWorker::Result(partial)) => state.result = Some(*partial),
            Event::Garbage(line) => {
                let shown: String = line.chars().take(200).collect();
                self.errors.push(format!("worker {w} printed: {shown}"));
            }
            Event::Closed => {
                if state.result.is_none() {
                    self.errors
                        .push(format!("worker {w} exited without a result"));
                }
                state.alive = false;
            }
        }
    }

    fn progress(&self) -> Progress {
        let mut total = Progress::default();
        for w in &self.workers {
            total.open += w.progress.open;
            total.sent += w.progress.sent;
            total.received += w.progress.received;
            total.inflight += w.progress.inflight;
        }
        total
    }

    /// Collects results and reaps every worker (bounded).
    fn finish(&mut self) -> Vec<Partial> {
        self.display.clear();
        self.stdins.clear();
        let deadline = now_ns() + s_to_ns(EXIT_WAIT_S);
        for (w, child) in self.children.iter_mut().enumerate() {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() && self.workers[w].result.is_some() {
                            self.errors.push(format!("worker {w} exited with {status}"));
                        }
                        break;
                    }
                    Ok(None) if now_ns() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.workers
            .iter_mut()
            .filter_map(|w| w.result.take())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{build_args, PACE_SLACK, SWEEP_RATE_PER_CONNECT_RATE};

    fn spec(args: &[&str]) -> Spec {
        build_args(args).unwrap()
    }

    /// Proves the schedule's window follows warm-up and duration, and the drain follows it.
    #[test]
    fn schedules() {
        let s = schedule(
            &spec(&["fanout", "--warmup", "1", "--duration", "2", "--drain", "3"]),
            0,
        );
        let lead = s_to_ns(GO_LEAD_S);
        assert_eq!(s.start_ns, lead);
        assert_eq!(s.window.start_ns, lead + s_to_ns(1.0));
        assert_eq!(s.window.end_ns, lead + s_to_ns(3.0));
        assert_eq!(s.drain_end_ns, lead + s_to_ns(6.0));
        let c = schedule(&spec(&["conn", "--hold", "4", "--rate", "0"]), 0);
        assert_eq!(c.window.start_ns, c.start_ns);
        assert_eq!(c.drain_end_ns, c.window.end_ns + s_to_ns(PING_TIMEOUT_S));
        // Paced connections: the check's PINGREQs go out at four times the connect rate,
        // and the bound allows them a quarter more.
        let paced = schedule(&spec(&["conn", "-n", "2000", "--rate", "100"]), 0);
        let sweep_s = 2000.0 / (100.0 * SWEEP_RATE_PER_CONNECT_RATE) * PACE_SLACK;
        assert_eq!(
            paced.drain_end_ns,
            paced.window.end_ns + s_to_ns(sweep_s + PING_TIMEOUT_S)
        );
    }
}
