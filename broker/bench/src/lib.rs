//! `ironsight-bench`: the MQTT load generator of ironsight.
//!
//! # Layout
//!
//! - `cli`: the command line (one subcommand per scenario) — parsing only.
//! - `spec`: the checked run ([`spec::Spec`]) and its refusals.
//! - `workers`: the split of clients into worker processes, and whether a run fits the machine.
//! - `target`: loopback-only targets (or a private network namespace).
//! - `tls`: the TLS client configuration of `--tls`, checked in the parent, built in each worker.
//! - `plan`: each client's id, port, topics and accounting sink.
//! - `header`: the payload header (run, publisher, sequence, send time).
//! - `pacer`: rate schedules with time passed in.
//! - `seq`, `accounting`: loss, duplicates, stale and latency per publisher→subscriber pair.
//! - `latency`: HDR histograms and their V2 form between processes.
//! - `topic`: filter matching for the retained scenario's expected count.
//! - `protocol`: parent ↔ worker messages and the phase bounds both sides share.
//! - `parent`: starts workers, drives phases with deadlines, merges, prints.
//! - `worker`: one process's clients on one epoll loop.
//! - `plot`: PNG charts of a comparison run.
//! - `report`, `errors`, `progress`, `proc_stats`, `clock`: results and their surroundings.
//!
//! # Invariants a change must not break
//!
//! - **Only the window counts.** Expected, received, lost and latency cover only messages a
//!   publisher stamped inside the measured window (sequence numbers from
//!   [`header::WINDOW_SEQ_BASE`]); a message counts as received only once a subscriber has
//!   decoded it.
//! - **Every phase ends by itself.** Every wait, in the parent and in the workers, has a
//!   deadline derived from the options; what timed out is reported in `errors`.
//! - **One worker stays within its open-file limit** (20,000 on the development machines):
//!   [`spec::Machine::sockets_per_worker`] is checked before anything starts.
//! - **Loopback only**, unless inside a private network namespace ([`target`]).

pub mod accounting;
pub mod cli;
pub mod clock;
pub mod errors;
pub mod header;
pub mod latency;
pub mod pacer;
pub mod parent;
pub mod plan;
pub mod plot;
pub mod proc_stats;
pub mod progress;
pub mod protocol;
pub mod report;
pub mod seq;
pub mod spec;
pub mod target;
pub mod tls;
pub mod topic;
pub mod worker;
pub mod workers;

use std::process::ExitCode;

use clap::Parser;

/// Parses the command line and runs the scenario (or, as `worker`, one worker process).
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Worker => return worker::main(),
        cli::Command::Plot(args) => {
            return match plot::plot(&args.input, &args.out, &args.font) {
                Ok(written) => {
                    for path in written {
                        println!("{}", path.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ironsight-bench plot: {e}");
                    ExitCode::from(2)
                }
            };
        }
        _ => {}
    }
    let machine = spec::Machine::detect();
    match spec::build(cli.command, machine) {
        Ok((spec, options)) => {
            let warnings = spec::warnings(&spec, machine);
            parent::run(spec, options, warnings)
        }
        Err(e) => {
            eprintln!("ironsight-bench: {e}");
            ExitCode::from(2)
        }
    }
}
