//! The gateway's MQTT connection: an ordinary authenticated MQTT 3.1.1 client written over the
//! workspace's own codec (CONNECT, SUBSCRIBE, PUBLISH in, PUBACK, PINGREQ), on tokio.
//!
//! It connects with a clean session (the broker lets only a clean-session consumer subscribe
//! to `$SYS/DisconnectedClientNotification`, and a notification is worth nothing late),
//! subscribes at QoS 1 to its filters, hands every message to the gateway and acknowledges
//! it, and pings every KeepAlive. A lost or refused connection is tried again after 1 s,
//! doubling up to ReconnectMaxDelay; a connection that got its SUBACK starts the wait at 1 s
//! again.

use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ironsight_codec::{
    ByteString, Connect, ConnectProperties, DecodeError, Disconnect, Framer, Packet,
    ProtocolVersion, PubResponse, QoS, ReasonCode, Subscribe, SubscribeFilter, SubscribeProperties,
    SubscriptionOptions,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

use crate::config::Mqtt;

const VERSION: ProtocolVersion = ProtocolVersion::V3_1_1;
/// The largest packet read from the broker (a notification is at most 256 KiB).
const PACKET_BYTES_MAX: u32 = 1024 * 1024;
/// Bounds on connecting (TCP, TLS, CONNACK) and on the SUBACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_CHUNK: usize = 16 * 1024;
const SUBSCRIBE_ID: NonZeroU16 = NonZeroU16::MIN;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the broker refused the connection: {0:?}")]
    Refused(ReasonCode),
    #[error("the broker refused the subscription to {0} (its policies must let this user subscribe there)")]
    SubscribeRefused(String),
    #[error("the broker closed the connection")]
    Closed,
    #[error("unexpected packet from the broker: {0}")]
    Unexpected(&'static str),
    #[error("bad packet from the broker: {0}")]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A byte stream to the broker, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects, subscribes to `filters` and hands each message (topic, payload) to `on_message`,
/// again and again until `stop` turns true; then says DISCONNECT and returns.
pub async fn run(
    config: &Mqtt,
    tls: Option<Arc<rustls::ClientConfig>>,
    filters: &[String],
    on_message: &mut (dyn FnMut(&str, &[u8]) + Send),
    mut stop: watch::Receiver<bool>,
) {
    let first_wait = Duration::from_secs(1);
    let max_wait = Duration::from_secs(config.reconnect_max_delay);
    let mut wait = first_wait;
    while !*stop.borrow() {
        let mut subscribed = false;
        let ended = session(
            config,
            tls.clone(),
            filters,
            on_message,
            &mut subscribed,
            &mut stop,
        )
        .await;
        if subscribed {
            wait = first_wait;
        }
        match ended {
            Ok(()) => return,
            Err(e) => tracing::warn!(host = %config.host, port = config.port, error = %e,
                retry_in = ?wait, "MQTT connection to the broker ended"),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = (wait * 2).min(max_wait);
    }
}

async fn connect(
    config: &Mqtt,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Box<dyn Io>, MqttError> {
    let address = format!("{}:{}", config.host, config.port);
    let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(&address))
        .await
        .map_err(|_| MqttError::Timeout(CONNECT_TIMEOUT))?
        .map_err(|e| MqttError::Connect(address.clone(), e))?;
    tcp.set_nodelay(true)?;
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = config.server_name.as_deref().unwrap_or(&config.host);
    let name = rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| MqttError::Tls(format!("server name {name:?}: {e}")))?;
    let stream = timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .map_err(|_| MqttError::Timeout(CONNECT_TIMEOUT))?
    .map_err(|e| MqttError::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}

/// One connection, from CONNECT until it fails (`Err`) or `stop` turns true (`Ok`, after a
/// DISCONNECT).
async fn session(
    config: &Mqtt,
    tls: Option<Arc<rustls::ClientConfig>>,
    filters: &[String],
    on_message: &mut (dyn FnMut(&str, &[u8]) + Send),
    subscribed: &mut bool,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), MqttError> {
    let mut io = tokio::select! {
        io = connect(config, tls) => io?,
        _ = stop.changed() => return Ok(()),
    };
    let mut conn = Conn {
        framer: Framer::new(PACKET_BYTES_MAX),
        input: BytesMut::with_capacity(READ_CHUNK),
        output: BytesMut::new(),
    };
    conn.send(&mut io, connect_packet(config)).await?;
    match timeout(CONNECT_TIMEOUT, conn.next(&mut io)).await {
        Err(_) => return Err(MqttError::Timeout(CONNECT_TIMEOUT)),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Packet::ConnAck(ack))) if ack.reason_code == ReasonCode::Success => {}
        Ok(Ok(Packet::ConnAck(ack))) => return Err(MqttError::Refused(ack.reason_code)),
        Ok(Ok(_)) => return Err(MqttError::Unexpected("before CONNACK")),
    }
    conn.send(&mut io, subscribe_packet(filters)).await?;
    let keep_alive = Duration::from_secs(config.keep_alive.into());
    let mut ping = tokio::time::interval_at(Instant::now() + keep_alive, keep_alive);
    let suback_by = Instant::now() + CONNECT_TIMEOUT;
    let mut heard = Instant::now();
    loop {
        let packet = tokio::select! {
            packet = conn.next(&mut io) => packet?,
            _ = ping.tick() => {
                // The broker closes a connection silent for 1.5 keep-alives; so does the gateway.
                if heard.elapsed() > keep_alive * 3 / 2 {
                    return Err(MqttError::Timeout(keep_alive * 3 / 2));
                }
                conn.send(&mut io, Packet::PingReq).await?;
                continue;
            }
            _ = tokio::time::sleep_until(suback_by), if !*subscribed => {
                return Err(MqttError::Timeout(CONNECT_TIMEOUT));
            }
            _ = stop.changed() => {
                // A polite goodbye, bounded: the broker then drops the clean session at once.
                let goodbye = conn.send(&mut io, Packet::Disconnect(Disconnect::normal()));
                let _ = timeout(Duration::from_secs(1), goodbye).await;
                return Ok(());
            }
        };
        heard = Instant::now();
        match packet {
            Packet::Publish(publish) => {
                on_message(&publish.topic, &publish.payload);
                if let Some(id) = publish.packet_id {
                    let ack = PubResponse::success(id);
                    let ack = if publish.qos == QoS::ExactlyOnce {
                        Packet::PubRec(ack)
                    } else {
                        Packet::PubAck(ack)
                    };
                    conn.send(&mut io, ack).await?;
                }
            }
            Packet::PubRel(rel) => {
                conn.send(
                    &mut io,
                    Packet::PubComp(PubResponse::success(rel.packet_id)),
                )
                .await?
            }
            Packet::SubAck(ack) if ack.packet_id == SUBSCRIBE_ID => {
                if let Some(i) = ack.reason_codes.iter().position(|c| {
                    !matches!(
                        c,
                        ReasonCode::Success | ReasonCode::GrantedQoS1 | ReasonCode::GrantedQoS2
                    )
                }) {
                    let filter = filters.get(i).cloned().unwrap_or_default();
                    return Err(MqttError::SubscribeRefused(filter));
                }
                if !*subscribed {
                    tracing::info!(filters = ?filters, "connected to the broker and subscribed");
                }
                *subscribed = true;
            }
            Packet::PingResp => {}
            Packet::Disconnect(_) => return Err(MqttError::Closed),
            _ => {
                return Err(MqttError::Unexpected(
                    "not a packet a broker sends this client",
                ))
            }
        }
    }
}

fn connect_packet(config: &Mqtt) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: VERSION,
        clean_start: true,
        keep_alive_s: config.keep_alive,
        client_id: ByteString::from(config.client_id.as_str()),
        will: None,
        username: config.user_name.as_deref().map(ByteString::from),
        password: config
            .password
            .as_ref()
            .map(|p| Bytes::copy_from_slice(p.as_bytes())),
        properties: ConnectProperties::default(),
    }))
}

fn subscribe_packet(filters: &[String]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: SUBSCRIBE_ID,
        filters: filters
            .iter()
            .map(|f| SubscribeFilter {
                filter: ByteString::from(f.as_str()),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            })
            .collect(),
        properties: SubscribeProperties::default(),
    })
}

/// A connection's buffers and framing.
struct Conn {
    framer: Framer,
    input: BytesMut,
    output: BytesMut,
}

impl Conn {
    async fn send(&mut self, io: &mut Box<dyn Io>, packet: Packet) -> Result<(), MqttError> {
        self.output.clear();
        packet.encode(VERSION, &mut self.output);
        io.write_all(&self.output).await?;
        io.flush().await?;
        Ok(())
    }

    /// The next packet. Cancel-safe (it is raced against timers): bytes read stay in `input`
    /// and `read_buf` loses nothing when dropped before it completes.
    async fn next(&mut self, io: &mut Box<dyn Io>) -> Result<Packet, MqttError> {
        loop {
            if let Some(frame) = self.framer.next_frame(&mut self.input)? {
                return Ok(Packet::decode(frame, VERSION)?);
            }
            self.input.reserve(READ_CHUNK);
            if io.read_buf(&mut self.input).await? == 0 {
                return Err(MqttError::Closed);
            }
        }
    }
}
