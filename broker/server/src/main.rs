//! `ironsight`: the broker binary. With no arguments it runs the built-in demo endpoint (port
//! 1883, anonymous clients), like MessageSight's DemoEndpoint.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ironsight_config::{Config, ListenerOverride};
use ironsight_server::cores::CoreSpec;
use ironsight_server::runtime::{self, Options};
use ironsight_server::store::OnCorruption;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What `--help` says after the options.
const AFTER_HELP: &str = "\
Without --config, ironsight runs its built-in demo configuration: MessageSight's DemoEndpoint,
port 1883 on every interface, anonymous clients allowed to publish and subscribe anywhere.

Environment:
  IRONSIGHT_LOG   what to log: error, warn, info (the default), debug or trace, or
                  per module, e.g. IRONSIGHT_LOG=info,ironsight_core=debug. Logs go to stderr.

Signals:
  SIGTERM, SIGINT  stop: v5 clients are told (DISCONNECT 0x8B), sessions end with the process
                   unless the durable store keeps them.
  SIGHUP           read the configuration file again, with the certificates, keys and lists it
                   names, and apply it without dropping connections; what only a restart can
                   change is logged. A file that does not parse changes nothing.

Exit status:
  0  stopped by SIGTERM or SIGINT, or --check-config found the configuration good
  2  refused to start or stopped on an error: an option it does not know, a configuration
     that does not parse, a port in use, a damaged journal, a journal that cannot be written
     (the log says which)";

/// ironsight: a thread-per-core MQTT 3.1, 3.1.1 and 5.0 broker in the image of IBM MessageSight
/// (Eclipse Amlen): its configuration objects, policies and behaviour, one shard per CPU core.
#[derive(Parser, Debug)]
#[command(name = "ironsight", version, long_about = None, after_help = AFTER_HELP)]
struct Args {
    /// Configuration file: MessageSight's objects as JSON (Endpoint, MessageHub,
    /// ConnectionPolicy, TopicPolicy, Broker, Store, ...). Without it, the built-in demo configuration.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on ADDR:PORT instead of the endpoint's Interface and Port (repeatable; NAME=
    /// picks the endpoint when several are enabled). Port 0 picks a free port.
    #[arg(long, value_name = "[NAME=]ADDR:PORT")]
    listen: Vec<ListenerOverride>,
    /// Shards: a number of cores, or a CPU list such as 0,2-3. Default: every CPU available.
    /// From the environment too (IRONSIGHT_CORES): the appliance's CPU layout file
    /// (kernel-tuning/ironsight-tune) names the shards' CPUs there; the option wins over it.
    #[arg(long, value_name = "N|LIST", env = "IRONSIGHT_CORES")]
    cores: Option<CoreSpec>,
    /// Shards to run, spread round robin over those CPUs. Default: one per CPU. More shards
    /// than CPUs costs speed; it exists to test many-shard behaviour on a small machine.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Check the configuration, print it with every default filled in, and exit.
    #[arg(long)]
    check_config: bool,
    /// When the durable store's journal is damaged before its end (the start refuses, naming
    /// the file and offset): keep everything before the damage, and drop the rest of that
    /// shard's journal. Messages and sessions recorded after the damage are lost.
    #[arg(long)]
    recover_truncate: bool,
    /// Set the REST API administrator's password in the --config file (its SCRAM-SHA-256
    /// verifier: the password itself is not kept), read from standard input, and exit.
    #[arg(long, requires = "config")]
    set_admin_password: bool,
    /// With --set-admin-password: the administrator's user id (AdminUserID; default: admin).
    #[arg(long, value_name = "USER_ID", requires = "set_admin_password")]
    admin_user: Option<String>,
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IRONSIGHT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if args.set_admin_password {
        return set_admin_password(&args);
    }
    let config = match &args.config {
        None => Config::builtin(),
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(e) => return fail(e),
        },
    };
    if args.check_config {
        let json = serde_json::to_string_pretty(&config).expect("configuration serializes");
        println!("{json}");
        let store = &config.store;
        if store.enable_disk_persistence {
            eprintln!(
                "ironsight: durable store in {}, journal segments of {} MiB",
                config.file(&store.disk_persist_path).display(),
                store.persist_file_size_mb
            );
        } else {
            eprintln!("ironsight: no durable store (Store.EnableDiskPersistence is false): state ends with the process");
        }
        // The files the configuration names (certificates, keys, CAs, CRLs) are checked too.
        let checked = config
            .listeners(&args.listen)
            .and_then(|_| ironsight_server::transport::tls::context::build(&config));
        return match checked {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(e.to_string()),
        };
    }
    match runtime::run(Options {
        config,
        config_path: args.config.clone(),
        listen: args.listen,
        cores: args.cores,
        shards: args.shards,
        on_corruption: if args.recover_truncate {
            OnCorruption::Truncate
        } else {
            OnCorruption::Stop
        },
    }) {
        Ok(runtime::Stopped::Stop) => ExitCode::SUCCESS,
        Ok(runtime::Stopped::Restart) => restart(),
        Err(e) => fail(e),
    }
}

/// `--set-admin-password`: the password from standard input, its verifier into the file.
fn set_admin_password(args: &Args) -> ExitCode {
    let path = args.config.as_ref().expect("clap requires --config");
    let password = match ironsight_auth::prompt::password(false) {
        Ok(password) => password,
        Err(e) => return fail(e),
    };
    match ironsight_admin::set_admin_password(path, args.admin_user.as_deref(), &password) {
        Ok(()) => {
            eprintln!(
                "ironsight: the administrator's password is set in {}",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// The exit status when a restart was asked for but the broker could not start itself again:
/// a supervisor (systemd's `Restart=on-failure`) starts it.
const RESTART_FAILED: u8 = 3;

/// The admin API's restart: the broker, stopped cleanly, executes itself again with the same
/// arguments, in the same process (same pid, so a supervisor sees no exit).
fn restart() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let program = args.next();
    let exe = std::env::current_exe()
        .ok()
        .or_else(|| program.map(PathBuf::from));
    let Some(exe) = exe else {
        eprintln!("ironsight: cannot restart: the program's path is unknown");
        return ExitCode::from(RESTART_FAILED);
    };
    tracing::info!("restarting");
    let error = std::process::Command::new(&exe).args(args).exec();
    eprintln!("ironsight: cannot restart {}: {error}", exe.display());
    ExitCode::from(RESTART_FAILED)
}

/// A broker holding a million mostly idle connections wants its memory dense: khugepaged would
/// otherwise fold the allocator's sparse pages into 2 MiB pages and grow the resident set by a
/// few hundred bytes per connection, with nothing allocated.
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag on this process.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        eprintln!("ironsight: cannot disable transparent huge pages; memory use may be higher");
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("ironsight: {message}");
    ExitCode::from(2)
}
