//! CONNECT: client id ownership, session create / resume / takeover, CONNACK.

use std::hash::BuildHasher;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::Instant;

use ironsight_codec::{
    Bytes, ConnAck, ConnAckProperties, Connect, Packet, ProtocolVersion, QoS, ReasonCode,
};

use super::authorize::subject_of;
use super::lifecycle::CloseKind;
use super::{Handoff, Shard};
use crate::auth::Principal;
use crate::conn::{ClientLimits, ConnId, ConnState, Identity};
use crate::policy::{self, Subject};
use crate::queue::QueueBehavior;
use crate::session::{Session, SessionIdx, Will, EXPIRY_NEVER};
use crate::topic;

/// What the admitting ConnectionPolicy (and the client's TopicPolicy) grant a connection.
struct Admission {
    session_expiry_max_s: u32,
    allow_persistent: bool,
    queue_max: u32,
    queue_behavior: QueueBehavior,
    /// The will's time-to-live cap, from the TopicPolicy that allows it.
    will_ttl_max_s: Option<u32>,
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
        let (client_id, assigned) = match self.choose_client_id(&connect) {
            Ok(choice) => choice,
            Err(reason) => return self.refuse(conn, now, reason),
        };
        let owner = self.owner_of(&client_id);
        if owner != self.id {
            self.pending_handoff = Some((conn, owner, frame));
            self.conns[conn as usize].state = ConnState::HandedOff;
            return;
        }
        let principal = match self.authenticate(conn, &connect) {
            Ok(principal) => principal,
            Err(reason) => return self.refuse(conn, now, reason),
        };
        if let Err(reason) = self.check_will(&connect) {
            return self.refuse(conn, now, reason);
        }
        let grant = self
            .admit(conn, &connect, &client_id, principal.as_deref())
            .and_then(|admission| self.grant(conn, &connect, &client_id, assigned, admission));
        let grant = match grant {
            Ok(grant) => grant,
            Err(reason) => return self.refuse(conn, now, reason),
        };
        let existing = self.find_session(&client_id);
        if existing.is_none() && self.sessions.len() >= self.settings.broker.sessions_max {
            tracing::warn!(
                sessions = self.sessions.len(),
                "session limit reached; refusing CONNECT"
            );
            return self.refuse(conn, now, ReasonCode::ServerUnavailable);
        }
        let (session, present) = self.attach_session(now, existing, client_id, connect.clean_start);
        self.sessions[session as usize].principal = principal;
        self.accept(conn, now, session, present, connect, grant);
    }

    /// The one place a CONNECT's credentials are judged. No Authentication Method is supported
    /// yet, so a client that names one is refused with Bad authentication method, never
    /// accepted as if it had not asked ([MQTT-4.12.0-1]); a client that names none may not send
    /// AUTH later ([MQTT-4.12.0-7], `Violation::AuthWithoutMethod`). Supported methods, and
    /// the AUTH exchange they need, are added here. Who the client is (`None`: nobody known)
    /// is what the policies' `UserID`, `GroupID` and their variables use.
    fn authenticate(
        &self,
        conn: ConnId,
        connect: &Connect,
    ) -> Result<Option<Arc<Principal>>, ReasonCode> {
        match &connect.properties.authentication_method {
            None => Ok(self.test_user(connect)),
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

    /// The user a test's CONNECT names, as if authenticated (see `Shard::test_users`).
    #[cfg(test)]
    fn test_user(&self, connect: &Connect) -> Option<Arc<Principal>> {
        let name = connect.username.as_deref()?;
        self.test_users
            .iter()
            .find(|p| &*p.user_id == name)
            .cloned()
    }

    #[cfg(not(test))]
    fn test_user(&self, _connect: &Connect) -> Option<Arc<Principal>> {
        None
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
    ) -> Result<Grant, ReasonCode> {
        let (keepalive_s, server_keepalive) = self.keepalive(conn, connect)?;
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
            return Err(ReasonCode::ImplementationSpecificError);
        }
        Ok(Grant {
            admission,
            expiry_s,
            keepalive_s,
            connack,
        })
    }

    /// The endpoint's first ConnectionPolicy whose filters all match the client decides; none
    /// is Not Authorized, as is asking for what the policy forbids (a durable session, QoS > 0
    /// will) or a will on a topic no TopicPolicy lets the client publish to.
    fn admit(
        &self,
        conn: ConnId,
        connect: &Connect,
        client_id: &str,
        principal: Option<&Principal>,
    ) -> Result<Admission, ReasonCode> {
        let endpoint = self.endpoint(conn);
        let s = subject_of(&self.conns[conn as usize], client_id, principal);
        let Some(rule) = policy::connection_rule(&endpoint.connection_rules, &s) else {
            let why = policy::explain_connection(&endpoint.connection_rules, &s);
            tracing::debug!(conn, client_id, %why, "no connection policy admits the client");
            return Err(ReasonCode::NotAuthorized);
        };
        let durable = match connect.protocol {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval_s.unwrap_or(0) > 0,
            _ => !connect.clean_start,
        };
        let persistent_will = connect
            .will
            .as_ref()
            .is_some_and(|w| w.qos != QoS::AtMostOnce);
        if (durable && !rule.allow_durable) || (persistent_will && !rule.allow_persistent) {
            tracing::debug!(conn, client_id, policy = %rule.name, "connection policy forbids a durable session or a QoS > 0 will");
            return Err(ReasonCode::NotAuthorized);
        }
        let will_ttl_max_s = self.authorize_will(conn, connect, &s)?;
        let queue = policy::session_rule(&endpoint.topic_rules, &s);
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

    /// A will is authorised like any publish, retained or not, by who connects now: a will on
    /// a topic the client may not publish to (`$SYS` included) refuses the CONNECT, Not
    /// Authorized (v5 0x87, v3 return code 5), rather than be published later where it must not.
    /// Returns the time-to-live cap of the policy that allows it.
    fn authorize_will(
        &self,
        conn: ConnId,
        connect: &Connect,
        s: &Subject,
    ) -> Result<Option<u32>, ReasonCode> {
        let Some(will) = &connect.will else {
            return Ok(None);
        };
        self.authorize_publish(conn, s, &will.topic)
            .map_err(|()| ReasonCode::NotAuthorized)
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
        c.session = Some(session);
        c.keepalive_s = keepalive_s;
        c.allow_persistent = admission.allow_persistent;
        c.session_expiry_max_s = admission.session_expiry_max_s;
        tracing::debug!(
            conn,
            peer = %c.peer,
            secure = c.secure,
            common_name = c.certificate.as_ref().map(|cert| &*cert.common_name),
            client_id = %self.sessions[session as usize].client_id,
            present,
            "connected"
        );

        if present {
            self.recheck_session(conn, session, now);
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
    fn refuse(&mut self, conn: ConnId, now: Instant, reason: ReasonCode) {
        tracing::debug!(conn, ?reason, "CONNECT refused");
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

    fn create_session(&mut self, client_id: Box<str>) -> SessionIdx {
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
