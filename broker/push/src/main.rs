//! `ironsight-push`: the push gateway binary. Reads its configuration, connects to the broker
//! and runs until SIGTERM or SIGINT.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ironsight_push::config::Config;

const AFTER_HELP: &str = "\
Environment:
  IRONSIGHT_PUSH_LOG   what to log: error, warn, info (the default), debug or trace. Logs go
                       to stderr; they never hold tokens, keys or message content.

Signals:
  SIGTERM, SIGINT  stop: pushes in flight get 5 s to finish, the tokens are saved and the
                   counters logged.

Exit status:
  0  stopped by a signal
  2  the configuration, a key or the token file could not be used (the log says which)";

/// ironsight-push: wakes sleeping phones. Subscribes to the broker's disconnected-client
/// notifications and sends each client's device an APNs, FCM or webhook push.
#[derive(Parser, Debug)]
#[command(name = "ironsight-push", version, long_about = None, after_help = AFTER_HELP)]
struct Args {
    /// The gateway's configuration file (JSON; see docs/push.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IRONSIGHT_PUSH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // Two threads: the gateway waits on the network, and a push's TLS handshake should not
    // hold up the MQTT connection's keep-alive.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            stopped().await;
            tracing::info!("stopping");
            let _ = stop_tx.send(true);
        });
        ironsight_push::run(config, stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
    }
}

/// SIGTERM or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
