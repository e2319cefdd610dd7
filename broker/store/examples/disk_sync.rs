//! The disk's sync figures for a directory, as one JSON line: what every durable benchmark
//! prints beside its results (`ironsight_store::disk_probe`). `fdatasync_*` are of appends
//! (the file grows), `overwrite_*` of writes over zeros the file already held (as into a
//! prewritten segment).
//!
//! `cargo run --release -p ironsight-store --example disk_sync -- <dir> [syncs]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ironsight_store::disk_probe::{probe_sync, Writes, PROBE_APPEND_BYTES};

/// Enough syncs for a stable 99th percentile; a slow disk stops at the time limit instead.
const SYNCS_DEFAULT: usize = 1000;
const TIME_LIMIT: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(dir), syncs) = (args.next().map(PathBuf::from), args.next()) else {
        eprintln!("usage: disk_sync <dir> [syncs, default {SYNCS_DEFAULT}]");
        return ExitCode::FAILURE;
    };
    let syncs = match syncs.map(|s| s.parse::<usize>()) {
        None => SYNCS_DEFAULT,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("syncs: a positive whole number");
            return ExitCode::FAILURE;
        }
    };
    let probes = probe_sync(&dir, syncs, TIME_LIMIT, Writes::Append).and_then(|append| {
        Ok((
            append,
            probe_sync(&dir, syncs, TIME_LIMIT, Writes::Overwrite)?,
        ))
    });
    match probes {
        Ok((probe, overwrite)) => {
            let line = serde_json::json!({
                "dir": dir,
                "append_bytes": PROBE_APPEND_BYTES,
                "syncs": probe.syncs,
                "fdatasync_median_ms": ms(probe.median),
                "fdatasync_p99_ms": ms(probe.p99),
                "syncs_per_s": (probe.syncs_per_s * 10.0).round() / 10.0,
                "overwrite_median_ms": ms(overwrite.median),
                "overwrite_p99_ms": ms(overwrite.p99),
            });
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}: {error}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
