//! The configuration of the running broker, and changing it without a restart.
//!
//! [`LiveConfig::apply`] takes a whole new configuration (already checked, as a file's is:
//! SIGHUP reads the file again, the REST API posts objects) and makes the running broker run
//! by it, connections kept: it compares the two object by object ([`changes`]), keeps what
//! only a start builds as it runs and says so, reads the TLS files again, binds the sockets of
//! endpoints added or moved, and publishes one new [`generation::Generation`] that every shard
//! takes up on its next tick: new settings for every later decision, its connected clients
//! judged again where their policies changed (`ironsight_core::shard::reconfigure`), listeners
//! opened and closed. It returns once every shard has, or after [`APPLY_WAIT`].
//!
//! Endpoints keep their numbers for the life of the process: connections, the retained
//! messages' publishers and the auth service know an endpoint by its number, so an endpoint
//! removed keeps its number (disabled) and one added gets the next.
//!
//! A change that cannot be applied at all (a TLS file that does not load, a port taken)
//! changes nothing and says why, naming the object and attribute.

pub mod changes;
pub mod generation;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironsight_config::{Config, Listener, ListenerOverride};
use ironsight_core::settings::{EndpointSettings, Settings};

use crate::transport::{tls, EndpointTransport};
use changes::Demands;
use generation::{Generation, Generations, ListenerGroup, ShardApplied};

/// How long [`LiveConfig::apply`] waits for every shard to take a new generation up. Shards
/// look every 50 ms; one busy for longer takes it up when it gets to it.
pub const APPLY_WAIT: Duration = Duration::from_secs(5);

/// What a new configuration did: one line per change applied, one per change that waits for
/// a restart (with why, and that the configuration file already holds it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub applied: Vec<String>,
    pub restart_needed: Vec<String>,
}

/// The running configuration, shared by everything that may change it (SIGHUP, the REST API).
pub struct LiveConfig {
    shards: usize,
    generations: Arc<Generations>,
    /// Held for a whole apply: changes are applied one at a time, in the order they come.
    running: Mutex<Running>,
}

struct Running {
    /// The configuration in force: the last one applied, less what waits for a restart.
    config: Config,
    /// Each endpoint number's endpoint name; only ever grows.
    endpoints: Vec<String>,
    /// `--listen` addresses, by endpoint name: they replace its Interface and Port.
    overrides: BTreeMap<String, Vec<SocketAddr>>,
    /// What the auth service knows each endpoint to ask of its clients.
    demands_at_start: BTreeMap<String, Demands>,
    next_group: u64,
}

impl LiveConfig {
    /// The broker's first generation from `config`: its endpoints numbered, their sockets
    /// bound (a port in use fails the start, naming the endpoint).
    pub fn start(
        config: Config,
        overrides: &[ListenerOverride],
        shards: usize,
    ) -> Result<Arc<LiveConfig>, String> {
        let contexts = tls::context::build(&config).map_err(|e| e.to_string())?;
        let resolved = config.listeners(overrides).map_err(|e| e.to_string())?;
        let mut by_name: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
        for listener in &resolved[..overrides.len()] {
            by_name
                .entry(listener.name.clone())
                .or_default()
                .push(listener.addr);
        }
        let mut running = Running {
            endpoints: config.enabled().map(|(name, _)| name.clone()).collect(),
            overrides: by_name,
            demands_at_start: changes::demands_at_start(&config),
            next_group: 0,
            config,
        };
        let mut lines = Vec::new();
        let listeners = running.listeners(&[], shards, &mut lines)?;
        for line in lines {
            tracing::info!("{line}");
        }
        let first = Generation {
            number: 0,
            settings: Arc::new(running.config.settings()),
            endpoints: EndpointTransport::all(&running.config, &contexts),
            listeners,
        };
        Ok(Arc::new(LiveConfig {
            shards,
            generations: Generations::new(first, shards),
            running: Mutex::new(running),
        }))
    }

    /// What the shards take their generations from.
    pub fn generations(&self) -> Arc<Generations> {
        self.generations.clone()
    }

    /// The configuration in force.
    pub fn running(&self) -> Config {
        self.lock().config.clone()
    }

    /// Whether `new` could be applied, without applying it: its TLS files load and no two
    /// endpoints would listen on one port. (Whether a port is free is known only by binding
    /// it, which [`LiveConfig::apply`] does first.) For the REST API, before it writes the
    /// configuration file.
    pub fn check(&self, new: &Config) -> Result<(), String> {
        let running = self.lock();
        let plan = changes::plan(&running.config, new, &running.demands_at_start);
        tls::context::build(&plan.effective).map_err(|e| e.to_string())?;
        let mut numbers = running.endpoints.clone();
        number_endpoints(&mut numbers, &plan.effective);
        wanted_addresses(&numbers, &plan.effective, &running.overrides).map(drop)
    }

    /// Applies `new`, a whole configuration already checked, to the running broker (see the
    /// module's note). `Err` when nothing could be applied; otherwise what was, and what waits
    /// for a restart. Blocks until every shard has taken it up (at most [`APPLY_WAIT`]): call
    /// it from a thread that may block, never from a shard.
    pub fn apply(&self, new: &Config) -> Result<ApplyOutcome, String> {
        let started = Instant::now();
        let mut running = self.lock();
        let plan = changes::plan(&running.config, new, &running.demands_at_start);
        let contexts = tls::context::build(&plan.effective).map_err(|e| e.to_string())?;
        let current = self.generations.current();
        let before = running.endpoints.len();
        number_endpoints(&mut running.endpoints, &plan.effective);
        let mut applied = plan.changed;
        let listeners = {
            let config = std::mem::replace(&mut running.config, plan.effective);
            let bound = running.listeners(&current.listeners, self.shards, &mut applied);
            if bound.is_err() {
                running.config = config;
                running.endpoints.truncate(before);
            }
            bound?
        };
        let generation = Generation {
            number: current.number + 1,
            settings: Arc::new(running.settings(&current.settings)),
            endpoints: running.transports(&current.endpoints, &contexts),
            listeners,
        };
        let number = generation.number;
        self.generations.publish(generation);
        drop(current);
        if !contexts.is_empty() {
            tracing::info!(
                profiles = contexts.len(),
                "TLS contexts reloaded; new connections use them"
            );
        }
        if applied.is_empty() {
            applied.push("no object changed".into());
        }
        let shards = self.generations.wait_applied(number, APPLY_WAIT);
        applied.push(summary(&shards, started.elapsed()));
        for line in &applied {
            tracing::info!(change = %line, "configuration change applied");
        }
        for line in &plan.restart_needed {
            tracing::warn!(change = %line, "configuration change not applied until a restart");
        }
        log_applied(
            number,
            &shards,
            started.elapsed(),
            plan.restart_needed.len(),
        );
        Ok(ApplyOutcome {
            applied,
            restart_needed: plan.restart_needed,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running
            .lock()
            .expect("never poisoned: no panics hold it")
    }
}

impl Running {
    /// The listeners the configuration in force asks for: a group kept where an endpoint's
    /// address did not change, a new one bound where it did or the endpoint is new. Lines for
    /// what changed go to `lines`. Nothing is kept of a failed bind: the new groups' sockets
    /// close as they drop.
    fn listeners(
        &mut self,
        current: &[Arc<ListenerGroup>],
        shards: usize,
        lines: &mut Vec<String>,
    ) -> Result<Vec<Arc<ListenerGroup>>, String> {
        let wanted = self.wanted_addresses()?;
        let mut groups = Vec::with_capacity(wanted.len());
        for listener in &wanted {
            let kept = current
                .iter()
                .find(|g| g.endpoint == listener.endpoint && g.asked == listener.addr);
            if let Some(group) = kept {
                groups.push(group.clone());
                continue;
            }
            let ours = current
                .iter()
                .any(|g| g.addr.port() == listener.addr.port() && listener.addr.port() != 0);
            self.next_group += 1;
            let group = ListenerGroup::bind(self.next_group, listener, shards, ours)
                .map_err(|e| e.to_string())?;
            lines.push(format!(
                "Endpoint \"{}\": listening on {}",
                listener.name, group.addr
            ));
            groups.push(Arc::new(group));
        }
        for old in current {
            if !groups.iter().any(|g| g.id == old.id) {
                let name = &self.endpoints[usize::from(old.endpoint)];
                lines.push(format!(
                    "Endpoint \"{name}\": no longer listening on {}",
                    old.addr
                ));
            }
        }
        Ok(groups)
    }

    fn wanted_addresses(&self) -> Result<Vec<Listener>, String> {
        wanted_addresses(&self.endpoints, &self.config, &self.overrides)
    }

    /// The core's settings by endpoint number: an endpoint no longer enabled keeps its last
    /// settings, marked disabled.
    fn settings(&self, previous: &Settings) -> Settings {
        let endpoints = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(number, name)| match self.enabled(name) {
                Some(e) => self.config.endpoint_settings(name, e),
                None => EndpointSettings {
                    enabled: false,
                    ..previous.endpoints[number].clone()
                },
            })
            .collect();
        Settings {
            broker: self.config.broker_settings(),
            endpoints,
        }
    }

    /// What each endpoint accepts, by number; one no longer enabled keeps what it had (it
    /// takes no connection).
    fn transports(
        &self,
        previous: &[EndpointTransport],
        contexts: &tls::context::TlsContexts,
    ) -> Vec<EndpointTransport> {
        self.endpoints
            .iter()
            .enumerate()
            .map(|(number, name)| match self.enabled(name) {
                Some(e) => EndpointTransport::of(e, contexts),
                None => previous[number].clone(),
            })
            .collect()
    }

    fn enabled(&self, name: &str) -> Option<&ironsight_config::objects::Endpoint> {
        self.config.endpoints.get(name).filter(|e| e.enabled)
    }
}

/// Gives each enabled endpoint of `config` that has none a number: the next.
fn number_endpoints(numbers: &mut Vec<String>, config: &Config) {
    for (name, _) in config.enabled() {
        if !numbers.contains(name) {
            numbers.push(name.clone());
        }
    }
}

/// Every address the enabled endpoints of `config` listen on (`--listen` before Interface and
/// Port), by their `numbers`, refusing two endpoints on one port.
fn wanted_addresses(
    numbers: &[String],
    config: &Config,
    overrides: &BTreeMap<String, Vec<SocketAddr>>,
) -> Result<Vec<Listener>, String> {
    let mut wanted: Vec<Listener> = Vec::new();
    for (number, name) in numbers.iter().enumerate() {
        let Some(e) = config.endpoints.get(name).filter(|e| e.enabled) else {
            continue;
        };
        let addrs = match overrides.get(name) {
            Some(addrs) => addrs.clone(),
            None => vec![Config::endpoint_addr(name, e).map_err(|e| e.to_string())?],
        };
        for addr in addrs {
            let clash = wanted.iter().find(|w| {
                let (a, b) = (w.addr, addr);
                a.port() == b.port()
                    && a.port() != 0
                    && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
            });
            if let Some(other) = clash {
                return Err(format!(
                    "Endpoint \"{name}\", attribute Port: {addr} overlaps {} of Endpoint \"{}\"",
                    other.addr, other.name
                ));
            }
            wanted.push(Listener {
                endpoint: u16::try_from(number).map_err(|_| "too many endpoints")?,
                name: name.clone(),
                addr,
            });
        }
    }
    Ok(wanted)
}

/// One line on what the shards did.
fn summary(shards: &[Option<ShardApplied>], took: Duration) -> String {
    let done: Vec<&ShardApplied> = shards.iter().flatten().collect();
    let sum = |f: fn(&ShardApplied) -> usize| done.iter().map(|a| f(a)).sum::<usize>();
    let mut line = format!(
        "{} of {} shards applied it in {} ms: {} connected clients checked again, {} disconnected \
         (no longer allowed), {} subscriptions removed, {} connections closed with their endpoint",
        done.len(),
        shards.len(),
        took.as_millis(),
        sum(|a| a.done.checked),
        sum(|a| a.done.revoked),
        sum(|a| a.done.subscriptions_removed),
        sum(|a| a.done.closed),
    );
    if done.len() < shards.len() {
        line.push_str(&format!(
            "; the others had not within {} s and take it up when they get to it",
            APPLY_WAIT.as_secs()
        ));
    }
    line
}

fn log_applied(number: u64, shards: &[Option<ShardApplied>], took: Duration, waiting: usize) {
    let done: Vec<&ShardApplied> = shards.iter().flatten().collect();
    let slowest_shard_ms = done
        .iter()
        .map(|a| a.took.as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    tracing::info!(
        generation = number,
        took_ms = took.as_secs_f64() * 1000.0,
        slowest_shard_ms,
        shards_applied = done.len(),
        shards = shards.len(),
        checked = done.iter().map(|a| a.done.checked).sum::<usize>(),
        disconnected = done.iter().map(|a| a.done.revoked).sum::<usize>(),
        subscriptions_removed = done
            .iter()
            .map(|a| a.done.subscriptions_removed)
            .sum::<usize>(),
        closed = done.iter().map(|a| a.done.closed).sum::<usize>(),
        waiting_for_restart = waiting,
        "configuration applied"
    );
}

#[cfg(test)]
mod tests;
