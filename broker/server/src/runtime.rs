//! Starting the broker: listeners bound, the durable store read (when configured), one pinned
//! glommio executor per core restoring its part, a full mesh of channels between them, the
//! configuration taken up again whenever it changes (SIGHUP, the admin API), the admin endpoint
//! beside them (`control`, `ironsight_admin`), and a clean stop on SIGTERM or SIGINT (or the
//! API's stop and restart).

use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use ironsight_auth::{AuthService, TokenProfiles};
use ironsight_config::{Config, ListenerOverride};
use ironsight_core::interest::InterestBoard;
use ironsight_core::message::SharedMessage;
use ironsight_core::recovery::RecoveredSession;
use ironsight_core::shard::SnapshotCursor;
use ironsight_core::Shard;

use crate::accept::Listening;
use crate::control::{self, Control};
use crate::cores::{self, CoreSpec};
use crate::journal::{self, JournalWriter};
use crate::link::Envelope;
use crate::live_config::generation::{Generations, ShardApplied};
use crate::live_config::LiveConfig;
use crate::notify;
use crate::reload;
use crate::resource_statistics::Publisher;
use crate::shard_io::ShardIo;
use crate::store::{self, OnCorruption};
use crate::transport::park::{Parking, TokenReader};
use crate::transport::tls;
use crate::verdicts::Verdicts;

/// Messages a channel between two shards holds before the sender's overflow takes over.
const CHANNEL_CAPACITY: usize = 1024;
/// glommio's buffer for file I/O, which the broker does not do; the default (10 MiB) would only
/// cost memory.
const IO_MEMORY: usize = 512 * 1024;
/// Entries of each io_uring glommio opens. Every socket read in flight is a poll that the kernel
/// keeps in a hash table with 2^(log2(2 * depth) - 5) buckets, at most 256, which it searches
/// to cancel one (a connection parking or closing). At glommio's default depth (128) that is 8
/// buckets for thousands of connections, and the search was the broker's largest cost in a
/// connection storm (22% of its CPU, `io_poll_find`); 4096 gives the 256 buckets (and costs
/// about 1 MiB of ring memory per shard).
const RING_DEPTH: usize = 4096;
/// How often a shard looks at the stop flag, and for a new generation of the configuration.
const STOP_POLL: Duration = Duration::from_millis(50);
const TICK: Duration = Duration::from_secs(1);

pub struct Options {
    pub config: Config,
    /// Where `config` was read from: read again on SIGHUP, and where the admin API writes its
    /// changes; `None`: the built-in configuration.
    pub config_path: Option<PathBuf>,
    pub listen: Vec<ListenerOverride>,
    pub cores: Option<CoreSpec>,
    /// Shards over those cores (default: one per core).
    pub shards: Option<usize>,
    /// What to do with a journal damaged before its end (`--recover-truncate`).
    pub on_corruption: OnCorruption,
}

/// How the broker stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM, SIGINT, or the admin API's stop.
    Stop,
    /// The admin API's restart: the caller starts the broker again.
    Restart,
}

/// Runs the broker until SIGTERM or SIGINT, or the admin API stops or restarts it.
pub fn run(options: Options) -> Result<Stopped, String> {
    let cpus = cores::spread(cores::resolve(options.cores.as_ref())?, options.shards)?;
    let shards = cpus.len();
    let live = LiveConfig::start(options.config.clone(), &options.listen, shards)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    let tokens = TokenProfiles::load(&options.config).map_err(|e| e.to_string())?;
    reload::start(
        live.clone(),
        options.config_path.clone(),
        tokens.clone(),
        stop.clone(),
    )?;
    let (auth, mut wake_ends) = start_auth(&options.config, &tokens, shards)?;
    let control = Control::new(shards, stop.clone());
    let (store, mut durable_starts) = open_store(&options, shards)?;
    tracing::info!(shards, cpus = ?cpus, "starting");
    let mesh = MeshBuilder::full(shards, CHANNEL_CAPACITY);
    let board = InterestBoard::new(shards as u16);
    let started_at = Instant::now();
    let (started, ready) = std::sync::mpsc::channel::<()>();
    let mut handles = Vec::with_capacity(shards);
    for (index, cpu) in cpus.into_iter().enumerate() {
        let start = ShardStart {
            index,
            mesh: mesh.clone(),
            board: board.clone(),
            generations: live.generations(),
            auth: auth.clone(),
            verdicts_wake: wake_ends.next(),
            durable: durable_starts.next(),
            control: control.clone(),
            started: started.clone(),
        };
        let stop = stop.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("ironsight-{index}"))
            .io_memory(IO_MEMORY)
            .ring_depth(RING_DEPTH)
            .spawn(move || async move {
                let result = shard_main(start, stop.clone()).await;
                if let Err(error) = &result {
                    // The others cannot work without it (its clients' sessions live nowhere else).
                    tracing::error!(shard = index, %error, "shard failed; stopping the broker");
                    stop.store(true, Ordering::Relaxed);
                }
                result
            })
            .map_err(|e| format!("cannot start the executor for CPU {cpu}: {e}"))?;
        handles.push(handle);
    }
    drop(started);
    // Held until the broker stops: the data directory's lock goes with it.
    let _store = store
        .map(|store| store.commit_when_snapshotted(shards))
        .transpose()?;
    // The kernel completes TCP handshakes into the listening sockets' backlogs from the moment
    // they are bound, long before every shard runs: an open port is not a broker that answers.
    // "ready" is: every shard accepts. (A shard that fails first drops its sender, and stops
    // the others, which drop theirs.)
    if ready.iter().take(shards).count() == shards {
        let start_ms = started_at.elapsed().as_millis() as u64;
        tracing::info!(shards, start_ms, "ready");
        if let Err(error) = notify::ready(&format!("ready: {shards} shards")) {
            tracing::warn!(%error, "cannot tell systemd the broker is ready (NOTIFY_SOCKET)");
        }
    }
    drop(ready);
    // Held until the broker stops; a failure to start it stops the broker.
    let admin = start_admin(&options, &live, &control).inspect_err(|_| {
        stop.store(true, Ordering::Relaxed);
    });
    let mut failed = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(e) => failed = Some(format!("a shard stopped abnormally: {e}")),
        }
    }
    // The API stops with the broker (requests in flight get a second); one that could not start
    // is why the broker stopped.
    drop(admin?);
    tracing::info!("stopped");
    match failed {
        Some(e) => Err(e),
        None if control.restart_requested() => Ok(Stopped::Restart),
        None => Ok(Stopped::Stop),
    }
}

/// The admin endpoint, when the configuration enables one (`ironsight_admin`).
fn start_admin(
    options: &Options,
    live: &Arc<LiveConfig>,
    control: &Arc<Control>,
) -> Result<Option<ironsight_admin::Running>, String> {
    // The admin endpoint keeps the TLS settings it started with (an AdminEndpoint change
    // needs a restart): its own contexts, built once.
    let contexts = tls::context::build(&options.config).map_err(|e| e.to_string())?;
    ironsight_admin::start(ironsight_admin::Options {
        config: Arc::new(options.config.clone()),
        path: options.config_path.clone(),
        tls: control::admin_tls(&options.config, &contexts),
        apply: live.clone(),
        shards: control.clone(),
    })
}

/// What one shard starts from.
struct ShardStart {
    index: usize,
    mesh: MeshBuilder<Envelope, glommio::channels::channel_mesh::Full>,
    /// Where shards post interest changes to each other (see `ironsight_core::interest`).
    board: Arc<InterestBoard>,
    /// The configuration as shards run it: its first generation at start, and any later.
    generations: Arc<Generations>,
    /// The auth service and where its verdicts wait, when an endpoint authenticates.
    auth: Option<(Arc<AuthService>, Arc<Verdicts>)>,
    /// This shard's end of its verdicts wake socket.
    verdicts_wake: Option<StdUnixStream>,
    /// With the durable store: what the shard restores and where it writes.
    durable: Option<DurableStart>,
    /// Where the admin API's requests wait and the shard's counters go.
    control: Arc<Control>,
    /// Told once the shard accepts connections.
    started: std::sync::mpsc::Sender<()>,
}

/// The auth service, when any endpoint authenticates its clients, with an inbox for its
/// verdicts per shard; and each shard's end of its wake socket.
type AuthStart = (
    Option<(Arc<AuthService>, Arc<Verdicts>)>,
    std::vec::IntoIter<StdUnixStream>,
);

fn start_auth(config: &Config, tokens: &TokenProfiles, shards: usize) -> Result<AuthStart, String> {
    // Anonymous endpoints only (the demo): no runtime, and no users file or key set to load.
    if !config.enabled().any(|(_, e)| config.authenticates(e)) {
        return Ok((None, Vec::new().into_iter()));
    }
    let checker = ironsight_auth::checker(config, tokens)?;
    let (verdicts, ends) =
        Verdicts::new(shards).map_err(|e| format!("cannot link the auth service: {e}"))?;
    let inboxes = verdicts.clone();
    let service = AuthService::start(checker, Arc::new(move |answer| inboxes.post(answer)))
        .map_err(|e| format!("cannot start the auth service: {e}"))?;
    Ok((Some((Arc::new(service), verdicts)), ends.into_iter()))
}

/// The store opened and read, with each shard's part of what it held.
struct StoreStart {
    opened: store::Opened,
    /// Each shard says when its snapshot is durable...
    snapshotted: std::sync::mpsc::Receiver<()>,
    /// ...and is told to go on once the new generation is committed.
    go: Vec<std::sync::mpsc::Sender<()>>,
}

/// What one shard restores, and how it takes part in committing the new generation.
struct DurableStart {
    dir: PathBuf,
    sessions: Vec<RecoveredSession>,
    retained: Arc<Vec<SharedMessage>>,
    message_n_max: u64,
    /// `Store.PersistFileSizeMB`, in bytes.
    segment_bytes: u64,
    /// Shared by every shard: which of them find the disk full.
    full: Arc<journal::FullShards>,
    snapshotted: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<()>,
}

/// Opens the durable store when the configuration asks for it, and splits what it recovered
/// by the shard that owns each client id now.
fn open_store(
    options: &Options,
    shards: usize,
) -> Result<(Option<StoreStart>, std::vec::IntoIter<DurableStart>), String> {
    if !options.config.store.enable_disk_persistence {
        return Ok((None, Vec::new().into_iter()));
    }
    let (opened, recovered) = store::open(&options.config, options.on_corruption)?;
    let mut sessions: Vec<Vec<RecoveredSession>> = (0..shards).map(|_| Vec::new()).collect();
    for session in recovered.sessions {
        let owner = ironsight_core::shard::owner_of(&session.client_id, shards as u16);
        sessions[usize::from(owner)].push(session);
    }
    let retained = Arc::new(recovered.retained);
    let full = Arc::new(journal::FullShards::default());
    let (snapshotted_tx, snapshotted) = std::sync::mpsc::channel();
    let mut go = Vec::with_capacity(shards);
    let mut starts = Vec::with_capacity(shards);
    for sessions in sessions {
        let (go_tx, go_rx) = std::sync::mpsc::channel();
        go.push(go_tx);
        starts.push(DurableStart {
            dir: opened.generation_dir(),
            sessions,
            retained: retained.clone(),
            message_n_max: recovered.message_n_max,
            segment_bytes: options.config.store.persist_file_size_mb << 20,
            full: full.clone(),
            snapshotted: snapshotted_tx.clone(),
            go: go_rx,
        });
    }
    let start = StoreStart {
        opened,
        snapshotted,
        go,
    };
    Ok((Some(start), starts.into_iter()))
}

impl StoreStart {
    /// Waits for every shard's snapshot to be durable, commits the new generation, and lets the
    /// shards open their listeners. A shard that fails first drops its sender, so the wait
    /// ends, and the broker stops without committing: the old generation stays the one a
    /// restart reads.
    fn commit_when_snapshotted(self, shards: usize) -> Result<store::Opened, String> {
        if self.snapshotted.iter().take(shards).count() < shards {
            return Err("a shard failed before its snapshot was durable".into());
        }
        self.opened.commit()?;
        for go in self.go {
            let _ = go.send(());
        }
        Ok(self.opened)
    }
}

/// Takes up what the store recovered for this shard, writes the shard's snapshot into the new
/// generation, and waits until every shard's is durable and the generation committed. Returns
/// the journal's writer, for the shard's journal task.
async fn restore(core: &mut Shard, start: DurableStart) -> Result<JournalWriter, String> {
    let (journal, mut writer) = journal::open(
        &start.dir,
        core.id,
        core.shard_count,
        start.segment_bytes,
        start.full,
    )
    .await
    .map_err(|e| format!("cannot open shard {}'s journal: {e}", core.id))?;
    core.set_journal(Box::new(journal));
    let now = Instant::now();
    for session in start.sessions {
        core.restore(now, session);
    }
    for msg in start.retained.iter() {
        core.restore_retained(msg);
    }
    core.resume_message_ids(start.message_n_max);
    let mut cursor = SnapshotCursor::default();
    loop {
        let done = core.snapshot_slice(&mut cursor, journal::SNAPSHOT_SLICE);
        if done || writer.gathered_bytes() >= journal::START_SNAPSHOT_BATCH_BYTES {
            let durable = writer
                .write()
                .await
                .map_err(|e| format!("cannot write shard {}'s snapshot: {e}", core.id))?;
            core.durable(durable);
        }
        if done {
            break;
        }
    }
    writer.snapshot_written();
    let _ = start.snapshotted.send(());
    // Blocking this thread is fine: nothing runs on this shard until its listeners open.
    start
        .go
        .recv()
        .map_err(|_| "the store's new generation was not committed".to_string())?;
    Ok(writer)
}

/// The shard's journal task (`journal::JournalWriter::run`). A journal that cannot be written
/// stops the broker (`failure` says why): nothing could be acknowledged any more, and what was
/// is on disk.
async fn journal_task(
    io: Rc<ShardIo>,
    writer: JournalWriter,
    stop: Arc<AtomicBool>,
    failure: Rc<std::cell::RefCell<Option<String>>>,
) {
    let error = writer.run(io.clone()).await;
    tracing::error!(shard = io.id, %error, "the journal cannot be written; stopping");
    *failure.borrow_mut() = Some(format!("shard {}'s journal: {error}", io.id));
    stop.store(true, Ordering::Relaxed);
}

async fn shard_main(start: ShardStart, stop: Arc<AtomicBool>) -> Result<(), String> {
    let ShardStart {
        index,
        mesh,
        board,
        generations,
        auth,
        verdicts_wake,
        durable,
        control,
        started,
    } = start;
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|_| "cannot join the shard mesh".to_string())?;
    let id = senders.peer_id() as u16;
    let first = generations.current();
    if first.endpoints.iter().any(|ep| ep.tls.is_some()) {
        // aws-lc seeds this thread's random generator on first use, which takes tens of
        // milliseconds: here, rather than in the first client's handshake.
        let _ = aws_lc_rs::rand::fill(&mut [0u8; 1]);
    }
    let mut core = Shard::new(id, board, first.settings.clone());
    let journal_writer = match durable {
        Some(durable) => Some(restore(&mut core, durable).await?),
        None => None,
    };
    let (parking, tokens) =
        Parking::start(index).map_err(|e| format!("cannot start parking for shard {id}: {e}"))?;
    let (service, verdicts) = auth.unzip();
    let io = ShardIo::new(core, senders, parking, first.endpoints.clone(), service);
    let failure = Rc::new(std::cell::RefCell::new(None));
    if let Some(writer) = journal_writer {
        let task = journal_task(io.clone(), writer, stop.clone(), failure.clone());
        glommio::spawn_local(task).detach();
    }
    if let (Some(verdicts), Some(wake)) = (verdicts, verdicts_wake) {
        // SAFETY: the socket's fd moves into glommio's stream, once.
        let wake = unsafe { glommio::net::UnixStream::from_raw_fd(wake.into_raw_fd()) };
        glommio::spawn_local(verdicts_loop(io.clone(), verdicts, wake)).detach();
    }
    let mut listening = Listening::new(index);
    listening.open_wanted(&io, &first.listeners);
    for (_, receiver) in receivers.streams() {
        let io = io.clone();
        glommio::spawn_local(async move {
            while let Some(envelope) = receiver.recv().await {
                io.from_shard(envelope);
            }
        })
        .detach();
    }
    glommio::spawn_local(io.clone().drain_overflow()).detach();
    let flusher = io.clone();
    glommio::spawn_local(futures_lite::future::poll_fn(move |cx| {
        flusher.poll_flusher(cx)
    }))
    .detach();
    glommio::spawn_local(unpark_loop(io.clone(), tokens)).detach();
    glommio::spawn_local(io.clone().slices()).detach();
    let _ = started.send(());
    drop(started);
    // SAFETY: gettid has no arguments and cannot fail.
    let thread_id = unsafe { libc::gettid() };
    control.publish(&io, thread_id);

    let mut next_tick = Instant::now() + TICK;
    // Shard 0 publishes the $SYS/ResourceStatistics topics for the whole broker.
    let mut statistics = (id == 0).then(|| Publisher::new(Instant::now()));
    let mut generation = first.number;
    drop(first);
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(STOP_POLL).await;
        if generations.number() != generation {
            generation = take_up(&io, &generations, &mut listening, index);
        }
        control.serve(&io);
        if Instant::now() >= next_tick {
            next_tick += TICK;
            io.tick();
            control.publish(&io, thread_id);
            if let Some(statistics) = &mut statistics {
                statistics.tick(&io, &control, &generations.current());
            }
        }
    }
    // Stop listening first: no new client during the shutdown, and the port is free at once
    // (io_uring would otherwise keep the socket for a moment after the process exits).
    listening.close_all();
    io.shutdown();
    tracing::info!(shard = id, stats = ?io.core().stats, "shard stopped");
    let failed = failure.borrow_mut().take();
    failed.map_or(Ok(()), Err)
}

/// Takes up the latest generation of the configuration: listeners no longer wanted stop
/// first (no connection arrives on an endpoint while it closes), then the core and the
/// transports change, then new listeners open. Returns the generation's number.
fn take_up(
    io: &Rc<ShardIo>,
    generations: &Generations,
    listening: &mut Listening,
    shard: usize,
) -> u64 {
    let started = Instant::now();
    let generation = generations.current();
    listening.close_unwanted(&generation.listeners);
    let done = io.reconfigure(&generation);
    listening.open_wanted(io, &generation.listeners);
    let took = started.elapsed();
    tracing::info!(
        shard,
        generation = generation.number,
        took_ms = took.as_secs_f64() * 1000.0,
        checked = done.checked,
        disconnected = done.revoked,
        subscriptions_removed = done.subscriptions_removed,
        messages_dropped = done.messages_dropped,
        closed = done.closed,
        "shard took up the configuration"
    );
    generations.applied(
        shard,
        ShardApplied {
            generation: generation.number,
            took,
            done,
        },
    );
    generation.number
}

/// Takes the auth service's verdicts for this shard whenever it is woken.
async fn verdicts_loop(
    io: Rc<ShardIo>,
    verdicts: Arc<Verdicts>,
    mut wake: glommio::net::UnixStream,
) {
    let mut bytes = [0u8; 64];
    let mut answers = Vec::new();
    loop {
        match wake.read(&mut bytes).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                verdicts.take(usize::from(io.id), &mut answers);
                io.verdicts(std::mem::take(&mut answers));
            }
        }
    }
}

/// Reads the parking relay's tokens and gives those connections a task again.
async fn unpark_loop(io: Rc<ShardIo>, mut tokens: glommio::net::UnixStream) {
    let mut reader = TokenReader::default();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match tokens.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => reader.feed(&buf[..n], |token| io.unpark(token)),
        }
    }
}
