//! The gateway's state and what it does with each message: a registration updates the
//! registry; a notification finds the client's device, passes the rate limit (or waits in it)
//! and joins the push queue; the queue's pushes go out at most `MaxConcurrentPushes` at a
//! time; what comes of each is counted, and a failure is written to the dead-letter log.
//!
//! The MQTT task never waits here: everything it calls takes a short lock and returns, so a
//! slow push service cannot stall the connection's keep-alive. A full queue is a dead letter.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};

use crate::counters::Counters;
use crate::deadletter::DeadLetter;
use crate::deliver::Services;
use crate::notification::Notification;
use crate::ratelimit::{Admit, RateLimiter};
use crate::registry::{self, Pattern, Registry};
use crate::service::{Outcome, Push};

pub struct Gateway {
    notification_topic: String,
    registration: Pattern,
    registry: Mutex<Registry>,
    limiter: Mutex<RateLimiter>,
    dead_letter: Mutex<DeadLetter>,
    services: Services,
    pub counters: Counters,
    queue: mpsc::Sender<Push>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic aborts the process (the release profile), so a poisoned lock is not seen there;
    // in tests the state is still consistent at every unlock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `Gateway::new` gives back besides the gateway: the queue's other end, for `pushes`.
pub struct Queue(mpsc::Receiver<Push>);

impl Gateway {
    pub fn new(
        notification_topic: String,
        registration: Pattern,
        registry: Registry,
        limiter: RateLimiter,
        dead_letter: DeadLetter,
        services: Services,
        queue_max: usize,
    ) -> (Arc<Gateway>, Queue) {
        let (queue, receiver) = mpsc::channel(queue_max);
        let gateway = Gateway {
            notification_topic,
            registration,
            registry: Mutex::new(registry),
            limiter: Mutex::new(limiter),
            dead_letter: Mutex::new(dead_letter),
            services,
            counters: Counters::default(),
            queue,
        };
        (Arc::new(gateway), Queue(receiver))
    }

    /// The filters the MQTT connection subscribes to.
    pub fn filters(&self) -> Vec<String> {
        vec![self.notification_topic.clone(), self.registration.filter()]
    }

    /// A message from the broker.
    pub fn on_message(&self, topic: &str, payload: &[u8]) {
        if topic == self.notification_topic {
            self.notified(payload, Instant::now());
        } else if let Some((user_id, client_id)) = self.registration.ids(topic) {
            self.registered(user_id, client_id, payload);
        } else {
            tracing::debug!(%topic, "message on a topic the gateway does not use");
        }
    }

    fn registered(&self, user_id: &str, client_id: &str, payload: &[u8]) {
        if payload.is_empty() {
            if lock(&self.registry).remove(client_id, None) {
                lock(&self.limiter).forget(client_id);
                tracing::info!(%client_id, %user_id, "device unregistered");
            }
            return;
        }
        let registered = registry::parse(user_id, payload)
            .and_then(|device| lock(&self.registry).register(client_id, device));
        match registered {
            Ok(()) => {
                Counters::one(&self.counters.registrations);
                tracing::info!(%client_id, %user_id, "device registered");
            }
            Err(error) => {
                Counters::one(&self.counters.registrations_refused);
                tracing::warn!(%client_id, %user_id, %error, "registration refused");
            }
        }
    }

    fn notified(&self, payload: &[u8], now: Instant) {
        Counters::one(&self.counters.notifications_received);
        let notification = match Notification::parse(payload) {
            Ok(n) => n,
            Err(error) => {
                Counters::one(&self.counters.notifications_malformed);
                tracing::warn!(%error, "malformed disconnected-client notification");
                return;
            }
        };
        // Only registered devices enter the rate limiter, so MaxDevices bounds it too.
        if self.push(&notification).is_none() {
            return;
        }
        let admitted = lock(&self.limiter).admit(notification, now);
        match admitted {
            Admit::Now(n) => self.enqueue(n),
            Admit::Held => Counters::one(&self.counters.pushes_rate_limited),
        }
    }

    /// The push for `n`, if its client has a device registered by the same user.
    fn push(&self, n: &Notification) -> Option<Push> {
        let device = lock(&self.registry).get(&n.client_id).cloned();
        match device {
            Some(device) if device.user_id == n.user_id => Some(Push {
                client_id: n.client_id.clone(),
                device,
                notification: n.clone(),
            }),
            _ => {
                Counters::one(&self.counters.notifications_unregistered);
                tracing::debug!(client_id = %n.client_id, user_id = %n.user_id,
                    "notification for a client with no device registered by its user");
                None
            }
        }
    }

    fn enqueue(&self, n: Notification) {
        let Some(push) = self.push(&n) else { return };
        if let Err(
            mpsc::error::TrySendError::Full(push) | mpsc::error::TrySendError::Closed(push),
        ) = self.queue.try_send(push)
        {
            self.failed(&push, "the push queue is full (MaxQueuedNotifications)", 0);
        }
    }

    /// Once a second: held notifications whose interval passed are queued, and the registry
    /// is saved if it changed.
    pub fn tick(&self, now: Instant) {
        let due = lock(&self.limiter).due(now);
        for n in due {
            self.enqueue(n);
        }
        self.save();
    }

    /// Writes the registry's file if it changed, outside its lock: the MQTT task registers
    /// and looks up devices meanwhile. Called from the tick only, so writes never overlap.
    fn save(&self) {
        let (snapshot, path) = {
            let mut registry = lock(&self.registry);
            (registry.snapshot(), registry.path().to_owned())
        };
        let Some(bytes) = snapshot else { return };
        // A large file takes a while to write and flush: tell the runtime this worker blocks.
        if let Err(error) = tokio::task::block_in_place(|| registry::write_file(&path, &bytes)) {
            lock(&self.registry).changed();
            tracing::error!(%error, path = %path.display(), "cannot save the registered tokens");
        }
    }

    pub fn devices(&self) -> usize {
        lock(&self.registry).count()
    }

    /// Sends one push and deals with what came of it.
    async fn deliver(&self, push: Push) {
        let (outcome, attempts) = self.services.deliver(&push).await;
        Counters::add(
            &self.counters.pushes_retried,
            u64::from(attempts.saturating_sub(1)),
        );
        match outcome {
            Outcome::Sent => {
                Counters::one(&self.counters.pushes_sent);
                tracing::debug!(client_id = %push.client_id, platform = push.device.platform.name(),
                    attempts, "push sent");
            }
            Outcome::InvalidToken(reason) => {
                if lock(&self.registry).remove(&push.client_id, Some(&push.device.token)) {
                    lock(&self.limiter).forget(&push.client_id);
                    Counters::one(&self.counters.invalid_tokens_removed);
                    tracing::info!(client_id = %push.client_id, %reason, "invalid token removed");
                }
                self.failed(&push, &reason, attempts);
            }
            Outcome::Retry { reason, .. } => {
                self.failed(&push, &format!("{attempts} attempts: {reason}"), attempts)
            }
            Outcome::Failed(reason) => self.failed(&push, &reason, attempts),
        }
    }

    fn failed(&self, push: &Push, reason: &str, attempts: u32) {
        Counters::one(&self.counters.pushes_failed);
        tracing::warn!(client_id = %push.client_id, platform = push.device.platform.name(),
            %reason, "push not delivered");
        if let Err(error) = lock(&self.dead_letter).record(push, reason, attempts) {
            tracing::error!(%error, "cannot write the dead-letter log");
        }
    }

    /// Takes pushes off the queue and sends them, as many at a time as `permits` allows (the
    /// caller waits for the last ones by taking every permit).
    pub fn pushes(
        self: &Arc<Self>,
        queue: Queue,
        permits: Arc<Semaphore>,
    ) -> tokio::task::JoinHandle<()> {
        let gateway = self.clone();
        let Queue(mut receiver) = queue;
        tokio::spawn(async move {
            while let Some(push) = receiver.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let gateway = gateway.clone();
                tokio::spawn(async move {
                    gateway.deliver(push).await;
                    drop(permit);
                });
            }
        })
    }

    /// The counters line, logged.
    pub fn log_counters(&self, when: &str) {
        tracing::info!(
            devices = self.devices(),
            "counters ({when}): {}",
            self.counters
        );
    }
}

/// The interval of the gateway's tick.
pub const TICK: Duration = Duration::from_secs(1);
