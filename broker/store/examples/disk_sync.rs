//! The disk's sync figures for a directory, as one JSON line: what every durable benchmark
//! prints beside its results (`ironsight_store::disk_probe`). `fdatasync_*` are of appends
//! (the file grows), `overwrite_*` of writes over zeros the file already held (as into a
//! prewritten segment). With `--group-commit`, also `group_commit`: the disk alone doing the
//! journal's group commit, `RATE` records of `RECORD_BYTES` a second for `SECONDS`.
//!
//! `cargo run --release -p ironsight-store --example disk_sync -- <dir> [syncs]
//!     [--group-commit RATE SECONDS RECORD_BYTES]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use ironsight_store::disk_probe::{
    probe_group_commit, probe_sync, GroupCommitProbe, Writes, PROBE_APPEND_BYTES,
};

/// Enough syncs for a stable 99th percentile; a slow disk stops at the time limit instead.
const SYNCS_DEFAULT: usize = 1000;
const TIME_LIMIT: Duration = Duration::from_secs(20);
const USAGE: &str = "usage: disk_sync <dir> [syncs, default 1000] \
                     [--group-commit RATE SECONDS RECORD_BYTES]";

/// A paced group commit to measure: records a second, for how long, bytes each.
struct GroupCommit {
    rate: f64,
    duration: Duration,
    record_bytes: usize,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, syncs, group_commit) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("{error}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let probes = probe_sync(&dir, syncs, TIME_LIMIT, Writes::Append).and_then(|append| {
        let overwrite = probe_sync(&dir, syncs, TIME_LIMIT, Writes::Overwrite)?;
        let paced = group_commit
            .as_ref()
            .map(|g| probe_group_commit(&dir, g.rate, g.duration, g.record_bytes))
            .transpose()?;
        Ok((append, overwrite, paced))
    });
    match probes {
        Ok((probe, overwrite, paced)) => {
            let mut line = serde_json::json!({
                "dir": dir,
                "append_bytes": PROBE_APPEND_BYTES,
                "syncs": probe.syncs,
                "fdatasync_median_ms": ms(probe.median),
                "fdatasync_p99_ms": ms(probe.p99),
                "syncs_per_s": (probe.syncs_per_s * 10.0).round() / 10.0,
                "overwrite_syncs": overwrite.syncs,
                "overwrite_median_ms": ms(overwrite.median),
                "overwrite_p99_ms": ms(overwrite.p99),
            });
            if let (
                Some(g),
                Some(GroupCommitProbe {
                    records,
                    writes,
                    p50,
                    p99,
                }),
            ) = (&group_commit, paced)
            {
                line["group_commit"] = serde_json::json!({
                    "rate": g.rate,
                    "seconds": g.duration.as_secs_f64(),
                    "record_bytes": g.record_bytes,
                    "records": records,
                    "writes": writes,
                    "p50_ms": ms(p50),
                    "p99_ms": ms(p99),
                });
            }
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}: {error}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// The directory, the syncs, and the group commit asked for.
fn parse(args: &[String]) -> Result<(PathBuf, usize, Option<GroupCommit>), String> {
    let (positional, group_commit) = match args.iter().position(|a| a == "--group-commit") {
        Some(at) => {
            let [rate, seconds, record_bytes] = &args[at + 1..] else {
                return Err("--group-commit takes RATE SECONDS RECORD_BYTES".into());
            };
            let group_commit = GroupCommit {
                rate: positive::<f64>("RATE", rate)?,
                duration: Duration::from_secs_f64(positive::<f64>("SECONDS", seconds)?),
                record_bytes: positive::<usize>("RECORD_BYTES", record_bytes)?,
            };
            (&args[..at], Some(group_commit))
        }
        None => (args, None),
    };
    let (dir, syncs) = match positional {
        [dir] => (dir, SYNCS_DEFAULT),
        [dir, syncs] => (dir, positive::<usize>("syncs", syncs)?),
        _ => return Err("a directory, and at most a number of syncs, before any option".into()),
    };
    Ok((PathBuf::from(dir), syncs, group_commit))
}

/// `text` as a number above zero, or an error naming `what`.
fn positive<T: FromStr + PartialOrd + Default>(what: &str, text: &str) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(format!("{what}: a number above zero, not {text:?}")),
    }
}

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
