//! The shards' side of the admin API (`ironsight_admin`): what they publish for it and the
//! requests they answer, and the stop and restart it asks for.
//!
//! Each shard has a [`Slot`]: a snapshot of its counters that it replaces on its one-second
//! tick (a mutex the shard takes once a second and the API takes to copy it, never on the
//! message path), and an inbox of requests that the shard looks at on its stop-poll (an atomic
//! load every 50 ms; the mutex only when something waits) and answers over each request's own
//! channel.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ironsight_admin::api::{Apply, ApplyOutcome};
use ironsight_admin::shards::{EndpointSnapshot, Query, Reply, Request, ShardSnapshot, Shards};
use ironsight_config::{Config, ConfigError};

use crate::live_config::LiveConfig;
use crate::shard_io::ShardIo;
use crate::transport::tls;

/// Requests one shard's inbox holds; more are dropped, and the API answers 503 at once (its
/// channel closes). The API serves at most `ironsight_admin::server::CONNECTIONS_MAX`
/// connections, each waiting for one request at a time.
const INBOX_MAX: usize = 256;

/// The link between the admin API and every shard.
pub struct Control {
    slots: Vec<Slot>,
    stop: Arc<AtomicBool>,
    restart: AtomicBool,
}

struct Slot {
    snapshot: Mutex<ShardSnapshot>,
    inbox: Mutex<Vec<Request>>,
    /// Set when the inbox may hold something: a shard with nothing to do loads only this.
    pending: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these (a panic aborts the broker anyway).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Control {
    pub fn new(shards: usize, stop: Arc<AtomicBool>) -> Arc<Control> {
        let slots = (0..shards)
            .map(|_| Slot {
                snapshot: Mutex::new(ShardSnapshot::default()),
                inbox: Mutex::new(Vec::new()),
                pending: AtomicBool::new(false),
            })
            .collect();
        Arc::new(Control {
            slots,
            stop,
            restart: AtomicBool::new(false),
        })
    }

    /// Whether the stop was asked for as a restart.
    pub fn restart_requested(&self) -> bool {
        self.restart.load(Ordering::Acquire)
    }

    /// The shard's tick: its counters for the API.
    pub fn publish(&self, io: &ShardIo, thread_id: i32) {
        let core = io.core();
        let traffic = io.traffic();
        let endpoints = core
            .settings()
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let bytes = traffic.get(i).copied().unwrap_or_default();
                EndpointSnapshot {
                    name: e.name.clone(),
                    stats: core.stats.endpoints.get(i).cloned().unwrap_or_default(),
                    bytes_read: bytes.read,
                    bytes_written: bytes.written,
                }
            })
            .collect();
        let snapshot = ShardSnapshot {
            stats: core.stats.clone(),
            endpoints,
            connections: core.connection_count() as u64,
            sessions: core.session_count() as u64,
            thread_id,
            at: Some(Instant::now()),
        };
        drop(core);
        *lock(&self.slots[usize::from(io.id)].snapshot) = snapshot;
    }

    /// The shard's stop-poll: answers what waits in its inbox.
    pub fn serve(&self, io: &Rc<ShardIo>) {
        let slot = &self.slots[usize::from(io.id)];
        if !slot.pending.swap(false, Ordering::Acquire) {
            return;
        }
        let requests = std::mem::take(&mut *lock(&slot.inbox));
        for request in requests {
            let reply = answer(io, &request.query);
            request.answer(reply);
        }
    }
}

/// A shard's answer to one query.
fn answer(io: &Rc<ShardIo>, query: &Query) -> Reply {
    let now = Instant::now();
    match query {
        Query::Connections {
            filter,
            order,
            limit,
        } => {
            let core = io.core();
            Reply::Connections(
                core.connections(now, filter, *order, *limit, |conn| io.socket_bytes(conn)),
            )
        }
        Query::Subscriptions {
            filter,
            order,
            limit,
        } => Reply::Subscriptions(io.core().subscriptions(filter, *order, *limit)),
        Query::Clients {
            client_id,
            connected,
            limit,
        } => Reply::Clients(io.core().clients(client_id, *connected, *limit)),
        Query::Gauges => Reply::Gauges(io.core().gauges()),
        Query::Close(filter) => {
            let closed = io.core().close_connections(now, filter);
            io.flush_soon();
            Reply::Closed(closed)
        }
        Query::DeleteSession(client_id) => {
            let deleted = io.core().delete_session(now, client_id);
            io.flush_soon();
            Reply::Deleted(deleted)
        }
    }
}

impl Shards for Control {
    fn count(&self) -> usize {
        self.slots.len()
    }

    fn snapshots(&self) -> Vec<ShardSnapshot> {
        self.slots
            .iter()
            .map(|slot| lock(&slot.snapshot).clone())
            .collect()
    }

    fn ask(&self, shard: usize, request: Request) {
        let Some(slot) = self.slots.get(shard) else {
            return;
        };
        let mut inbox = lock(&slot.inbox);
        if inbox.len() < INBOX_MAX {
            inbox.push(request);
            slot.pending.store(true, Ordering::Release);
        }
    }

    fn stop(&self, restart: bool) {
        if restart {
            self.restart.store(true, Ordering::Release);
        }
        self.stop.store(true, Ordering::Release);
    }
}

/// The API's changes reach the running broker by the path SIGHUP takes (`live_config`).
impl Apply for LiveConfig {
    /// The files a start would read (certificates, keys, CAs, revocation lists), read now, so
    /// that a change naming a file that is not there is refused before it is written.
    fn check(&self, new: &Config) -> Result<(), ConfigError> {
        tls::context::build(new).map(drop)
    }

    fn apply(&self, new: &Config) -> Result<ApplyOutcome, String> {
        let done = LiveConfig::apply(self, new)?;
        Ok(ApplyOutcome {
            applied: done.applied,
            restart_needed: done.restart_needed,
        })
    }

    fn generation(&self) -> u64 {
        self.generations().number()
    }
}

/// The AdminEndpoint's HTTPS settings: its SecurityProfile's certificate and TLS versions, as
/// the MQTT endpoints have them, for a stock rustls connection (the MQTT endpoints' contexts
/// hand their keys to ironsight's own record layer; the API's keep theirs in rustls).
pub fn admin_tls(
    config: &Config,
    contexts: &tls::context::TlsContexts,
) -> Option<Arc<rustls::ServerConfig>> {
    let profile = &config.admin.endpoint.as_ref()?.security_profile;
    let context = contexts.get(profile)?;
    let mut server = (*context.server).clone();
    server.enable_secret_extraction = false;
    server.key_log = Arc::new(rustls::NoKeyLog);
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(server))
}
