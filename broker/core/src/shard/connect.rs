//! CONNECT: client id ownership, session create / resume / takeover, CONNACK.

use std::hash::BuildHasher;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::Instant;

use ironsight_codec::{
    Auth, AuthProperties, ByteString, Bytes, ConnAck, ConnAckProperties, Connect, Packet,
    ProtocolVersion, QoS, ReasonCode,
};

use super::authorize::subject_of;
use super::lifecycle::CloseKind;
use super::{Handoff, RefusedFor, Shard};
use crate::auth::{AuthAnswer, AuthRequest, Principal};
use crate::conn::{ClientLimits, ConnId, ConnState, Granted, Identity};
use crate::policy::{self, Subject};
use crate::queue::QueueBehavior;
use crate::session::{Session, SessionIdx, Will, EXPIRY_NEVER};
use crate::topic;

/// A CONNECT on its owner shard, held while it waits for its authentication.
pub(super) struct PendingConnect {
    /// Tells the verdict on this CONNECT from one on an earlier connection in the same slot.
    ticket: u64,
    /// Rounds of enhanced authentication so far (0: the CONNECT's).
    step: u16,
    /// An AUTH went to the client; its answer is awaited (input flows meanwhile).
    awaiting_client: bool,
    connect: Connect,
    pub(super) client_id: Box<str>,
    /// Whether the broker chose the client id.
    assigned: bool,
}

/// Whether two holders of a client id are the same user: both anonymous, or both
/// authenticated with one user id. A session is never handed from one user to another, nor
/// between an anonymous client and a user, since either may be an impostor of the other.
fn same_user(a: Option<&Principal>, b: Option<&Principal>) -> bool {
    a.map(|p| &p.user_id) == b.map(|p| &p.user_id)
}

/// What the admitting ConnectionPolicy (and the client's TopicPolicy) grant a connection.
pub(super) struct Admission {
    pub(super) session_expiry_max_s: u32,
    pub(super) allow_persistent: bool,
    pub(super) queue_max: u32,
    pub(super) queue_behavior: QueueBehavior,
    /// The will's time-to-live cap, from the TopicPolicy that allows it.
    pub(super) will_ttl_max_s: Option<u32>,
}

/// Everything the broker grants a connection it accepts, decided before a session is touched, so
/// that a CONNECT the broker cannot answer within the client's limits is refused cleanly.
struct Grant {
    admission: Admission,
    /// The Session Expiry Interval in force.
    expiry_s: u32,
    keepalive_s: u16,
    /// The CONNACK to send, Session Present still to be set.
    connack: ConnAck,
}

/// The largest control packet other than CONNACK, SUBACK and UNSUBACK that the broker sends once
/// Reason Strings and User Properties are left out: a v5 PUBACK, PUBREC, PUBREL or PUBCOMP with
/// a reason code (5 bytes), a DISCONNECT with one (3), PINGRESP (2). A v5 client must accept at
/// least this much and the whole CONNACK, or it is refused; then every such packet fits its
/// Maximum Packet Size ([MQTT-3.1.2-24]) and only the acknowledgements of SUBSCRIBE and
/// UNSUBSCRIBE, which grow with the request, are checked one by one.
pub(super) const CONTROL_PACKET_MAX: u32 = 5;

/// What a v5 client declared in CONNECT about what it accepts; v3 clients get the defaults.
fn client_limits(connect: &Connect) -> ClientLimits {
    let props = &connect.properties;
    ClientLimits {
        receive_max: props.receive_maximum.map_or(u16::MAX, NonZeroU16::get),
        packet_size_max: props.maximum_packet_size.map_or(u32::MAX, NonZeroU32::get),
        topic_alias_max: props.topic_alias_maximum.unwrap_or(0),
    }
}

/// A CONNACK refusing the connection (the codec maps the reason to a v3 return code).
pub(super) fn connack_error(reason: ReasonCode) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code: reason,
        properties: ConnAckProperties::default(),
    })
}

impl Shard {
    pub(super) fn on_connect(
        &mut self,
        conn: ConnId,
        now: Instant,
        connect: Connect,
        frame: Bytes,
    ) {
        let c = &mut self.conns[conn as usize];
        c.protocol = connect.protocol;
        // Known from here on, so that even a refusal stays within what the client accepts.
        c.client = client_limits(&connect);
        c.problem_info = connect
            .properties
            .request_problem_information
            .unwrap_or(true);
        if !self.endpoint(conn).enabled {
            // Accepted, or handed over by a shard that had not yet applied the configuration
            // that disabled its endpoint.
            let cause = "its endpoint was disabled";
            let id = Some(&*connect.client_id);
            return self.refuse(conn, now, ReasonCode::ServerUnavailable, cause, id);
        }
        let (client_id, assigned) = match self.choose_client_id(&connect) {
            Ok(choice) => choice,
            Err(reason) => {
                let cause = "a client id that is not valid (too long, or empty where not allowed)";
                let id = Some(&*connect.client_id);
                return self.refuse(conn, now, reason, cause, id);
            }
        };
        let owner = self.owner_of(&client_id);
        if owner != self.id {
            self.pending_handoff = Some((conn, owner, frame));
            self.conns[conn as usize].state = ConnState::HandedOff;
            return;
        }
        let pending = PendingConnect {
            ticket: 0,
            step: 0,
            awaiting_client: false,
            connect,
            client_id,
            assigned,
        };
        if self.endpoint(conn).authenticate {
            let data = pending.connect.properties.authentication_data.clone();
            return self.ask_verdict(conn, now, pending, data);
        }
        if let Err(reason) = self.check_method(conn, &pending.connect) {
            let cause = "an authentication method the broker does not support";
            return self.refuse(conn, now, reason, cause, Some(&pending.client_id));
        }
        self.connect_as(conn, now, pending, None, None);
    }

    /// Hands the CONNECT to the auth service (`Event::Authenticate`) and holds it, reading
    /// nothing more from the client, until [`Shard::authenticated`] or the tick's deadline.
    /// Beyond `pending_authentications_max` waiting CONNECTs the client is told the server is
    /// busy at once: a directory that stalls must not make a shard hold every CONNECT of a
    /// storm.
    fn ask_verdict(
        &mut self,
        conn: ConnId,
        now: Instant,
        mut pending: PendingConnect,
        data: Option<Bytes>,
    ) {
        if self.authenticating.len() >= self.settings.broker.pending_authentications_max {
            self.stats.authentications_shed += 1;
            tracing::debug!(conn, "too many CONNECTs wait for authentication");
            let cause =
                "too many CONNECTs wait for authentication (Broker.MaxPendingAuthentications)";
            return self.refuse(
                conn,
                now,
                ReasonCode::ServerBusy,
                cause,
                Some(&pending.client_id),
            );
        }
        self.next_ticket += 1;
        pending.ticket = self.next_ticket;
        let c = &mut self.conns[conn as usize];
        c.state = ConnState::Authenticating;
        c.paused = true;
        let request = self.auth_request(conn, &pending, data);
        self.authenticating.insert(conn, Box::new(pending));
        self.events
            .push(super::Event::Authenticate(Box::new(request)));
    }

    /// The request for one round of `pending`'s authentication, with that round's data.
    fn auth_request(
        &self,
        conn: ConnId,
        pending: &PendingConnect,
        data: Option<Bytes>,
    ) -> AuthRequest {
        let c = &self.conns[conn as usize];
        let connect = &pending.connect;
        AuthRequest {
            shard: self.id,
            conn,
            ticket: pending.ticket,
            endpoint: c.endpoint,
            client_id: pending.client_id.clone(),
            user_name: connect.username.clone(),
            password: connect.password.clone(),
            peer: c.peer.ip,
            common_name: c.certificate.as_ref().map(|cert| cert.common_name.clone()),
            method: connect.properties.authentication_method.clone(),
            data,
            step: pending.step,
        }
    }

    /// The auth service's answer on `conn`'s CONNECT (asked with `ticket`). An answer for a
    /// connection that closed meanwhile, or whose slot holds a newer connection, is dropped.
    /// A connection that may send again (its CONNACK came, or an AUTH asking it for the next
    /// round) is added to `resumed`; what it sent after its CONNECT is processed now.
    pub fn authenticated(
        &mut self,
        conn: ConnId,
        ticket: u64,
        now: Instant,
        answer: AuthAnswer,
        resumed: &mut Vec<ConnId>,
    ) {
        let Some(pending) = self
            .authenticating
            .get_mut(&conn)
            .filter(|p| p.ticket == ticket && !p.awaiting_client)
        else {
            return;
        };
        let c = &mut self.conns[conn as usize];
        assert_eq!(
            c.state,
            ConnState::Authenticating,
            "a pending CONNECT's connection is authenticating"
        );
        c.paused = false;
        let (verdict, data) = match answer {
            AuthAnswer::Continue(data) => {
                pending.awaiting_client = true;
                let method = pending.connect.properties.authentication_method.clone();
                return self.continue_authentication(conn, now, method, data, resumed);
            }
            AuthAnswer::Done { verdict, data } => (verdict, data),
        };
        let pending = *self.authenticating.remove(&conn).expect("found above");
        match verdict {
            Err(refusal) => {
                self.stats.authentications_refused += 1;
                let id = Some(&*pending.client_id);
                self.refuse(conn, now, refusal.reason(), refusal.cause(), id);
            }
            Ok(principal) => {
                self.stats.authentications_accepted += 1;
                let mark = self.output_mark(conn);
                self.connect_as(conn, now, pending, Some(principal), data);
                self.hold_output(conn, mark);
                if self.conns[conn as usize].state == ConnState::Connected {
                    self.drain_inbuf(conn, now);
                    resumed.push(conn);
                }
            }
        }
    }

    /// Sends AUTH "continue authentication" with the method's data and lets the client
    /// answer. Only a method the client named can continue; the auth service asking
    /// otherwise is a bug, answered as an implementation error rather than trusted.
    fn continue_authentication(
        &mut self,
        conn: ConnId,
        now: Instant,
        method: Option<ByteString>,
        data: Bytes,
        resumed: &mut Vec<ConnId>,
    ) {
        let Some(method) = method else {
            tracing::error!(
                conn,
                "the auth service continued a CONNECT without a method"
            );
            let cause = "the auth service continued a CONNECT without a method";
            return self.refuse(
                conn,
                now,
                ReasonCode::ImplementationSpecificError,
                cause,
                None,
            );
        };
        let auth = Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some(method),
                authentication_data: Some(data),
                ..AuthProperties::default()
            },
        });
        if !self.try_send(conn, &auth) {
            let cause = "an AUTH packet over the client's Maximum Packet Size";
            return self.refuse(
                conn,
                now,
                ReasonCode::ImplementationSpecificError,
                cause,
                None,
            );
        }
        self.drain_inbuf(conn, now);
        resumed.push(conn);
    }

    /// A packet from a client in the middle of enhanced authentication: only AUTH "continue
    /// authentication" with the CONNECT's method goes on ([MQTT-4.12.0-5]); DISCONNECT ends
    /// the attempt; anything else is a protocol error, refused in the CONNACK.
    pub(super) fn on_auth_step(&mut self, conn: ConnId, now: Instant, frame: Bytes) {
        let Some(pending) = self
            .authenticating
            .get_mut(&conn)
            .filter(|p| p.awaiting_client)
        else {
            let cause = "a packet while its authentication was being decided";
            return self.refuse(conn, now, ReasonCode::ProtocolError, cause, None);
        };
        let method = &pending.connect.properties.authentication_method;
        match Packet::decode(frame, ProtocolVersion::V5) {
            Ok(Packet::Auth(auth))
                if auth.reason_code == ReasonCode::ContinueAuthentication
                    && auth.properties.authentication_method == *method =>
            {
                pending.awaiting_client = false;
                pending.step += 1;
                let pending = self.authenticating.remove(&conn).expect("found above");
                self.conns[conn as usize].paused = true;
                let request =
                    self.auth_request(conn, &pending, auth.properties.authentication_data);
                self.authenticating.insert(conn, pending);
                self.events
                    .push(super::Event::Authenticate(Box::new(request)));
            }
            Ok(Packet::Disconnect(_)) => {
                self.conns[conn as usize].peer_disconnected = true;
                self.close(conn, now, CloseKind::Clean);
            }
            Ok(other) => {
                tracing::debug!(
                    conn,
                    packet = other.name(),
                    "not AUTH during enhanced authentication"
                );
                let cause = "not AUTH during enhanced authentication";
                self.refuse(conn, now, ReasonCode::ProtocolError, cause, None);
            }
            Err(error) => self.decode_failed(conn, now, error, &[]),
        }
    }

    /// A CONNECT whose client is known (`principal`, or `None` on an endpoint without
    /// authentication): policies, the session, CONNACK.
    fn connect_as(
        &mut self,
        conn: ConnId,
        now: Instant,
        pending: PendingConnect,
        principal: Option<Arc<Principal>>,
        auth_data: Option<Bytes>,
    ) {
        let PendingConnect {
            connect,
            client_id,
            assigned,
            ..
        } = pending;
        if let Err(reason) = self.check_will(&connect) {
            let cause = "a will topic that is not valid";
            return self.refuse(conn, now, reason, cause, Some(&client_id));
        }
        let grant = self
            .admit(conn, &connect, &client_id, principal.as_deref())
            .and_then(|admission| {
                self.grant(conn, &connect, &client_id, assigned, admission, auth_data)
            });
        let grant = match grant {
            Ok(grant) => grant,
            Err((reason, cause)) => return self.refuse(conn, now, reason, cause, Some(&client_id)),
        };
        let existing = self.find_session(&client_id);
        if let Some(session) = existing {
            let holder = self.sessions[session as usize].principal.as_deref();
            if !same_user(holder, principal.as_deref()) {
                tracing::info!(
                    conn,
                    client_id = &*client_id,
                    user = principal.as_ref().map(|p| &*p.user_id),
                    "another user holds the client id's session"
                );
                let cause = "another user holds the client id's session";
                return self.refuse(
                    conn,
                    now,
                    ReasonCode::NotAuthorized,
                    cause,
                    Some(&client_id),
                );
            }
        }
        if existing.is_none() && self.sessions.len() >= self.settings.broker.sessions_max {
            tracing::warn!(
                sessions = self.sessions.len(),
                "session limit reached; refusing CONNECT"
            );
            let cause = "the shard holds Broker.MaxSessionsPerCore sessions";
            return self.refuse(
                conn,
                now,
                ReasonCode::ServerUnavailable,
                cause,
                Some(&client_id),
            );
        }
        let (session, present) = self.attach_session(now, existing, client_id, connect.clean_start);
        self.sessions[session as usize].principal = principal;
        self.accept(conn, now, session, present, connect, grant);
    }

    /// Whether a CONNECT names an Authentication Method the broker supports. None is
    /// supported yet, so a client that names one is refused with Bad authentication method,
    /// never accepted as if it had not asked ([MQTT-4.12.0-1]); a client that names none may not
    /// send AUTH later ([MQTT-4.12.0-7], `Violation::AuthWithoutMethod`). Supported methods,
    /// and the AUTH exchange they need, are added here.
    fn check_method(&self, conn: ConnId, connect: &Connect) -> Result<(), ReasonCode> {
        match &connect.properties.authentication_method {
            None => Ok(()),
            Some(method) => {
                tracing::debug!(conn, %method, "authentication method not supported");
                Err(ReasonCode::BadAuthenticationMethod)
            }
        }
    }

    /// The keep alive in force and the Server Keep Alive to announce. A v5 client gets
    /// `ServerKeepAlive` when it is set; otherwise, under a `MaxKeepAlive` cap, one that asks
    /// for more than the cap, or for none (0), gets the cap, as Mosquitto's `max_keepalive`
    /// does ([MQTT-3.2.2-21]: the client must use it). A v3 client cannot be told another
    /// value: asking beyond the cap refuses it (return code 2, as Mosquitto's source answers).
    fn keepalive(&self, conn: ConnId, connect: &Connect) -> Result<(u16, Option<u16>), ReasonCode> {
        let broker = &self.settings.broker;
        let asked = connect.keep_alive_s;
        let v5 = connect.protocol.is_v5();
        if let (true, Some(forced)) = (v5, broker.server_keepalive_s) {
            return Ok((forced, Some(forced)));
        }
        match broker.keepalive_max_s {
            Some(max) if asked == 0 || asked > max => {
                if v5 {
                    return Ok((max, Some(max)));
                }
                tracing::debug!(conn, asked, max, "v3 keep alive beyond MaxKeepAlive");
                Err(ReasonCode::ClientIdentifierNotValid)
            }
            _ => Ok((asked, None)),
        }
    }

    /// Decides what an admitted client gets, and refuses a v5 client whose Maximum Packet Size
    /// cannot hold its CONNACK or the broker's other fixed control packets
    /// ([`CONTROL_PACKET_MAX`]): nothing may be sent beyond it ([MQTT-3.1.2-24]), and the
    /// properties of this CONNACK are not ones a client may go without. Such a CONNECT is valid
    /// but not accepted by this server: Implementation specific error ([MQTT-3.1.4-2]).
    fn grant(
        &self,
        conn: ConnId,
        connect: &Connect,
        client_id: &str,
        assigned: bool,
        admission: Admission,
        auth_data: Option<Bytes>,
    ) -> Result<Grant, (ReasonCode, &'static str)> {
        let (keepalive_s, server_keepalive) = self
            .keepalive(conn, connect)
            .map_err(|reason| (reason, "a keep alive beyond Broker.MaxKeepAlive (MQTT 3)"))?;
        let broker = &self.settings.broker;
        let v5 = connect.protocol.is_v5();
        let requested_expiry = match (v5, connect.clean_start) {
            (true, _) => connect.properties.session_expiry_interval_s.unwrap_or(0),
            (false, true) => 0,
            (false, false) => EXPIRY_NEVER,
        };
        let expiry_s = requested_expiry.min(admission.session_expiry_max_s);
        let properties = ConnAckProperties {
            session_expiry_interval_s: (v5 && expiry_s != requested_expiry).then_some(expiry_s),
            receive_maximum: NonZeroU16::new(broker.inflight_max).filter(|m| m.get() != u16::MAX),
            maximum_packet_size: NonZeroU32::new(self.endpoint(conn).packet_size_max),
            assigned_client_identifier: (assigned && v5).then(|| client_id.into()),
            topic_alias_maximum: Some(broker.topic_aliases_max).filter(|&m| m > 0),
            server_keep_alive_s: server_keepalive,
            // After enhanced authentication the CONNACK names the method, with its last data.
            authentication_method: connect.properties.authentication_method.clone(),
            authentication_data: auth_data,
            ..ConnAckProperties::default()
        };
        let connack = ConnAck {
            session_present: false,
            reason_code: ReasonCode::Success,
            properties,
        };
        let needed = connack
            .encoded_len(connect.protocol)
            .max(CONTROL_PACKET_MAX as usize);
        let accepted = self.conns[conn as usize].client.packet_size_max as usize;
        if needed > accepted {
            tracing::debug!(
                conn,
                needed,
                accepted,
                "Maximum Packet Size below the CONNACK"
            );
            let cause = "a Maximum Packet Size below the CONNACK";
            return Err((ReasonCode::ImplementationSpecificError, cause));
        }
        Ok(Grant {
            admission,
            expiry_s,
            keepalive_s,
            connack,
        })
    }

    /// Whether the CONNECT's client is admitted ([`Shard::admission`]). A durable session
    /// cannot be promised while the journal cannot grow (`shard/durability.rs`): v5 0x97
    /// Quota exceeded, v3 3 (server unavailable).
    fn admit(
        &self,
        conn: ConnId,
        connect: &Connect,
        client_id: &str,
        principal: Option<&Principal>,
    ) -> Result<Admission, (ReasonCode, &'static str)> {
        let durable = match connect.protocol {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval_s.unwrap_or(0) > 0,
            _ => !connect.clean_start,
        };
        if durable && self.journal.full() {
            tracing::debug!(
                conn,
                client_id,
                "durable session refused: the store is full"
            );
            return Err((ReasonCode::QuotaExceeded, "the durable store is full"));
        }
        let will = connect.will.as_ref().map(|w| (&*w.topic, w.qos));
        let s = subject_of(&self.conns[conn as usize], client_id, principal);
        self.admission(conn, &s, durable, will)
            .map_err(|cause| (ReasonCode::NotAuthorized, cause))
    }

    /// The endpoint's first ConnectionPolicy whose filters all match the client decides; none
    /// refuses it, as does asking for what the policy forbids (a durable session, a QoS > 0
    /// will) or a will on a topic no TopicPolicy lets the client publish to. Asked at CONNECT,
    /// and again of connected clients when the policies change (`shard/reconfigure.rs`).
    /// `Err` says which rule refused.
    pub(super) fn admission(
        &self,
        conn: ConnId,
        s: &Subject,
        durable: bool,
        will: Option<(&str, QoS)>,
    ) -> Result<Admission, &'static str> {
        let endpoint = self.endpoint(conn);
        let Some(rule) = policy::connection_rule(&endpoint.connection_rules, s) else {
            let why = policy::explain_connection(&endpoint.connection_rules, s);
            tracing::debug!(conn, client_id = s.client_id, %why, "no connection policy admits the client");
            return Err("no ConnectionPolicy admits the client");
        };
        if durable && !rule.allow_durable {
            tracing::debug!(conn, client_id = s.client_id, policy = %rule.name, "connection policy forbids a durable session");
            return Err("its ConnectionPolicy forbids a durable session (AllowDurable)");
        }
        if will.is_some_and(|(_, qos)| qos != QoS::AtMostOnce) && !rule.allow_persistent {
            tracing::debug!(conn, client_id = s.client_id, policy = %rule.name, "connection policy forbids a QoS > 0 will");
            return Err("its ConnectionPolicy forbids a QoS 1/2 will (AllowPersistentMessages)");
        }
        let will_ttl_max_s = match will {
            // A will is authorised like any publish, retained or not, by who connects now:
            // rather than be published later where it must not.
            Some((topic, _)) => self
                .authorize_publish(conn, s, topic)
                .map_err(|()| "no TopicPolicy allows its will's topic")?,
            None => None,
        };
        let queue = policy::session_rule(&endpoint.topic_rules, s);
        Ok(Admission {
            session_expiry_max_s: rule.session_expiry_max_s,
            allow_persistent: rule.allow_persistent,
            queue_max: queue.map_or(5000, |r| r.queue_messages_max),
            queue_behavior: queue.map_or(QueueBehavior::RejectNewMessages, |r| r.queue_behavior),
            will_ttl_max_s,
        })
    }

    /// The client id to use, and whether the broker assigned it.
    fn choose_client_id(&mut self, connect: &Connect) -> Result<(Box<str>, bool), ReasonCode> {
        let id = &*connect.client_id;
        if id.len() > self.settings.broker.client_id_len_max {
            return Err(ReasonCode::ClientIdentifierNotValid);
        }
        if !id.is_empty() {
            return Ok((id.into(), false));
        }
        // [MQTT-3.1.3-8] a v3.1.1 client with an empty id must ask for a clean session; 3.1 has no
        // empty ids at all. v5 clients get an id assigned ([MQTT-3.2.2-16]).
        let allowed = match connect.protocol {
            ProtocolVersion::V5 => true,
            ProtocolVersion::V3_1_1 => connect.clean_start,
            ProtocolVersion::V3_1 => false,
        };
        if !allowed {
            return Err(ReasonCode::ClientIdentifierNotValid);
        }
        Ok((self.assign_client_id(), true))
    }

    /// A fresh client id that this shard owns, so the connection need not move.
    fn assign_client_id(&mut self) -> Box<str> {
        loop {
            self.next_assigned_id += 1;
            let id = format!("ironsight-{:x}-{:x}", self.id, self.next_assigned_id);
            if self.owner_of(&id) == self.id && self.find_session(&id).is_none() {
                return id.into();
            }
        }
    }

    fn check_will(&self, connect: &Connect) -> Result<(), ReasonCode> {
        let Some(will) = &connect.will else {
            return Ok(());
        };
        let broker = &self.settings.broker;
        if topic::has_wildcard(&will.topic)
            || will.topic.is_empty()
            || !topic::topic_within_limits(
                &will.topic,
                broker.topic_len_max,
                broker.topic_levels_max,
            )
        {
            return Err(ReasonCode::TopicNameInvalid);
        }
        Ok(())
    }

    /// Takes the session of `client_id` over or starts a new one. Returns it and Session Present.
    fn attach_session(
        &mut self,
        now: Instant,
        existing: Option<SessionIdx>,
        client_id: Box<str>,
        clean_start: bool,
    ) -> (SessionIdx, bool) {
        if let Some(session) = existing {
            if let Some(old) = self.sessions[session as usize].conn {
                // [MQTT-3.1.4-3] the session is taken over: the old connection is told and closed.
                self.take_over(old, now);
            }
            if !clean_start {
                return (session, true);
            }
            self.end_session(session, now);
        }
        (self.create_session(client_id), false)
    }

    fn accept(
        &mut self,
        conn: ConnId,
        now: Instant,
        session: SessionIdx,
        present: bool,
        connect: Connect,
        grant: Grant,
    ) {
        let Grant {
            admission,
            expiry_s,
            keepalive_s,
            mut connack,
        } = grant;
        let s = &mut self.sessions[session as usize];
        s.conn = Some(conn);
        s.expiry_s = expiry_s;
        s.expires_at = None;
        let retained_will = connect.will.as_ref().is_some_and(|w| w.retain);
        let publisher = retained_will.then(|| self.publisher(conn, session));
        let s = &mut self.sessions[session as usize];
        s.will = connect.will.map(|w| {
            let mut properties = w.properties;
            if let Some(ttl) = admission.will_ttl_max_s {
                let asked = properties.message_expiry_interval_s.unwrap_or(u32::MAX);
                properties.message_expiry_interval_s = Some(asked.min(ttl));
            }
            Box::new(Will {
                topic: w.topic,
                payload: w.payload,
                qos: w.qos,
                retain: w.retain,
                delay_s: w.delay_interval_s.unwrap_or(0),
                properties,
                publish_at: None,
                publisher,
            })
        });
        s.queue_max = admission.queue_max;
        s.queue_behavior = admission.queue_behavior;

        let c = &mut self.conns[conn as usize];
        c.state = ConnState::Connected;
        c.was_connected = true;
        c.session = Some(session);
        c.keepalive_s = keepalive_s;
        c.granted = Granted {
            receive_max: self.settings.broker.inflight_max,
            topic_alias_max: self.settings.broker.topic_aliases_max,
        };
        c.allow_persistent = admission.allow_persistent;
        c.session_expiry_max_s = admission.session_expiry_max_s;
        tracing::debug!(
            conn,
            peer = %c.peer,
            secure = c.secure,
            common_name = c.certificate.as_ref().map(|cert| &*cert.common_name),
            user = self.sessions[session as usize].principal.as_ref().map(|p| &*p.user_id),
            client_id = %self.sessions[session as usize].client_id,
            present,
            "connected"
        );

        if present {
            let (removed, dropped) = self.recheck_session(conn, session, now);
            let client_id = &self.sessions[session as usize].client_id;
            for filter in removed {
                tracing::info!(conn, %client_id, %filter, "resumed session: subscription removed, no longer allowed");
            }
            if dropped > 0 {
                tracing::info!(conn, %client_id, dropped, "resumed session: messages it may no longer receive dropped");
            }
        }
        self.journal_session(session);
        connack.session_present = present;
        self.send(conn, &Packet::ConnAck(connack));
        if present {
            self.resend_inflight(session, now);
        }
        self.pump(session, now);
    }

    /// Refuses a CONNECT: CONNACK with the reason, then close ([MQTT-3.2.2-7]).
    /// The CONNACK is left out when even it exceeds the client's Maximum Packet Size
    /// ([MQTT-3.1.4-2] makes it optional).
    /// `cause` says which rule refused it, for the log, with the client id when it is known.
    pub(super) fn refuse(
        &mut self,
        conn: ConnId,
        now: Instant,
        reason: ReasonCode,
        cause: &'static str,
        client_id: Option<&str>,
    ) {
        tracing::debug!(conn, ?reason, cause, "CONNECT refused");
        self.refused(conn, client_id, RefusedFor::Connect(reason, cause));
        self.try_send(conn, &connack_error(reason));
        self.close(conn, now, CloseKind::ServerInitiated);
    }

    pub(super) fn find_session(&self, client_id: &str) -> Option<SessionIdx> {
        let hash = self.hasher.hash_one(client_id);
        self.by_client_id
            .find(hash, |&idx| {
                &*self.sessions[idx as usize].client_id == client_id
            })
            .copied()
    }

    pub(super) fn create_session(&mut self, client_id: Box<str>) -> SessionIdx {
        let hash = self.hasher.hash_one(&*client_id);
        let generation = self.generation();
        let idx = self.sessions.insert(Session::new(client_id, generation)) as SessionIdx;
        let (sessions, hasher) = (&self.sessions, &self.hasher);
        self.by_client_id.insert_unique(hash, idx, |&i| {
            hasher.hash_one(&*sessions[i as usize].client_id)
        });
        idx
    }

    pub(super) fn forget_session(&mut self, session: SessionIdx) {
        let client_id = self.sessions[session as usize].client_id.clone();
        let hash = self.hasher.hash_one(&*client_id);
        if let Ok(entry) = self.by_client_id.find_entry(hash, |&i| i == session) {
            entry.remove();
        }
        self.sessions.remove(session as usize);
    }

    /// Moves a connection whose client id another shard owns. Called after the input pass that
    /// read its CONNECT, with whatever the client sent after it.
    pub(super) fn finish_handoff(&mut self, rest: &[u8]) {
        let Some((conn, to, connect)) = self.pending_handoff.take() else {
            return;
        };
        let c = self.conns.remove(conn as usize);
        self.stats.connections_closed += 1;
        self.stats.endpoint(c.endpoint).active -= 1;
        let handoff = Box::new(Handoff {
            endpoint: c.endpoint,
            identity: Identity {
                peer: c.peer.into(),
                secure: c.secure,
                certificate: c.certificate,
            },
            connect,
            rest: Bytes::copy_from_slice(rest),
        });
        self.events
            .push(super::Event::Handoff { conn, to, handoff });
    }
}
