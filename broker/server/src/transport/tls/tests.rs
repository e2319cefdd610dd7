//! The TLS session against rustls's own client: every suite of TLS 1.2 and 1.3, records split
//! at any byte, key updates both ways, client certificates, and what ends a session. rustls's
//! client is the reference the hand-kept record layer must agree with.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use ironsight_config::Config;
use ironsight_core::outbuf::OutBuf;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    CipherSuite, ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion,
};

use super::*;

/// A CA, a server certificate for `localhost` and a client certificate with CN `device-7`,
/// written to a fresh directory with a configuration naming them.
struct Pki {
    dir: PathBuf,
    ca: CertificateDer<'static>,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivateKeyDer<'static>,
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("ironsight-tls-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(vec![]).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(vec![]).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "device-7");
        client_params.serial_number = Some(rcgen::SerialNumber::from(7u64));
        let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca: ca.der().clone(),
            ca_cert: ca,
            ca_key,
            client_chain: vec![client.der().clone()],
            client_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client_key.serialize_der())),
        }
    }

    /// Writes crl.pem, a revocation list of the CA naming these serial numbers.
    fn revoke(&self, serials: &[u64]) {
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2100, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|&serial| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(serial),
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&self.ca_cert, &self.ca_key)
        .unwrap();
        std::fs::write(self.dir.join("crl.pem"), crl.pem().unwrap()).unwrap();
    }

    /// The TLS context of a security profile with these attributes.
    fn context(&self, profile: serde_json::Value) -> Arc<TlsContext> {
        let mut doc: serde_json::Value =
            serde_json::from_str(ironsight_config::DEFAULT_CONFIG).unwrap();
        doc["CertificateProfile"] =
            serde_json::json!({"Server": {"Certificate": "server.pem", "Key": "server.key"}});
        let mut sp = serde_json::json!({"CertificateProfile": "Server"});
        for (k, v) in profile.as_object().unwrap() {
            sp[k] = v.clone();
        }
        doc["SecurityProfile"] = serde_json::json!({ "Tls": sp });
        doc["TrustedCertificate"] =
            serde_json::json!([{"SecurityProfileName": "Tls", "TrustedCertificate": "ca.pem"}]);
        doc["CRLProfile"] =
            serde_json::json!({"Revoked": {"CRLSource": "crl.pem", "RevalidateConnection": true}});
        let path = self.dir.join("config.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        let config = Config::load(&path).unwrap();
        context::build(&config).unwrap().remove("Tls").unwrap()
    }

    fn client(
        &self,
        version: &'static SupportedProtocolVersion,
        suite: Option<CipherSuite>,
        cert: bool,
    ) -> ClientConnection {
        let mut provider = aws_lc_rs::default_provider();
        if let Some(suite) = suite {
            provider.cipher_suites.retain(|s| s.suite() == suite);
        }
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots);
        let mut config = if cert {
            builder
                .with_client_auth_cert(self.client_chain.clone(), self.client_key.clone_key())
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        config.resumption = rustls::client::Resumption::disabled();
        ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server session and a rustls client, with the bytes between them.
struct Pair {
    server: Tls,
    client: ClientConnection,
    /// Bytes the server did not use yet (a partial record), as the layered transport keeps them.
    carry: Vec<u8>,
    wire: BytesMut,
    plaintext: Vec<u8>,
    established: Option<Established>,
}

impl Pair {
    fn new(context: &TlsContext, client: ClientConnection) -> Pair {
        Pair {
            server: Tls::new(context).unwrap(),
            client,
            carry: Vec::new(),
            wire: BytesMut::new(),
            plaintext: Vec::new(),
            established: None,
        }
    }

    /// Everything the client has to send reaches the server, `chunk` bytes per read.
    fn client_sends(&mut self, chunk: usize) -> Result<(), TlsError> {
        let mut bytes = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut bytes).unwrap();
        }
        for piece in bytes.chunks(chunk) {
            let mut data = std::mem::take(&mut self.carry);
            data.extend_from_slice(piece);
            let (plaintext, established) = (&mut self.plaintext, &mut self.established);
            let used = self
                .server
                .read::<TlsError>(&mut data, &mut self.wire, &mut |event| {
                    match event {
                        TlsEvent::Established(e) => *established = Some(e),
                        TlsEvent::Plaintext(p) => plaintext.extend_from_slice(p),
                    }
                    Ok(())
                })?;
            self.carry = data[used..].to_vec();
        }
        Ok(())
    }

    /// Everything the server wrote reaches the client; returns the client's plaintext.
    fn client_receives(&mut self) -> Result<Vec<u8>, rustls::Error> {
        let mut wire = &self.wire[..];
        let mut got = Vec::new();
        while !wire.is_empty() {
            self.client.read_tls(&mut wire).unwrap();
            self.client.process_new_packets()?;
            match self.client.reader().read_to_end(&mut got) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        self.wire.clear();
        Ok(got)
    }

    fn handshake(&mut self, chunk: usize) -> Result<(), TlsError> {
        for _ in 0..10 {
            self.client_sends(chunk)?;
            self.client_receives().map_err(TlsError::Handshake)?;
            if !self.client.is_handshaking() && self.server.is_open() && !self.client.wants_write()
            {
                return Ok(());
            }
        }
        panic!("the handshake did not complete");
    }

    /// The server seals `bytes` as the core's output would be.
    fn server_sends(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = OutBuf::default();
        out.tail().put_slice(bytes);
        while !out.is_empty() {
            self.server
                .seal_output(&mut out, 64 * 1024, &mut self.wire)
                .unwrap();
        }
        self.client_receives().unwrap()
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Proves every suite of both versions carries data both ways, over several records, with the
/// client's bytes arriving in pieces that split records anywhere, and the cipher contexts
/// dropped (as when a connection parks) between messages.
#[test]
fn every_suite_carries_data_both_ways() {
    use CipherSuite::*;
    let pki = Pki::new("suites");
    let context = pki.context(serde_json::json!({}));
    let cases: [(&SupportedProtocolVersion, CipherSuite); 6] = [
        (&rustls::version::TLS13, TLS13_AES_128_GCM_SHA256),
        (&rustls::version::TLS13, TLS13_AES_256_GCM_SHA384),
        (&rustls::version::TLS13, TLS13_CHACHA20_POLY1305_SHA256),
        (
            &rustls::version::TLS12,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            &rustls::version::TLS12,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            &rustls::version::TLS12,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ];
    for (version, suite) in cases {
        for chunk in [1, 7, 1000, usize::MAX] {
            let mut pair = Pair::new(&context, pki.client(version, Some(suite), false));
            pair.handshake(chunk).unwrap();
            assert_eq!(
                pair.client.negotiated_cipher_suite().unwrap().suite(),
                suite
            );
            let up = pattern(40_000);
            pair.client.writer().write_all(&up).unwrap();
            pair.client_sends(chunk).unwrap();
            assert_eq!(pair.plaintext, up, "{suite:?} by {chunk}");
            pair.server.release();
            let down = pattern(50_000);
            assert_eq!(pair.server_sends(&down), down, "{suite:?}");
            pair.client.writer().write_all(b"after").unwrap();
            pair.client_sends(chunk).unwrap();
            assert!(pair.plaintext.ends_with(b"after"));
        }
    }
}

/// Proves the key updates: the client's (which asks for ours) and the server's own, each
/// followed by data both ways that only the new keys open.
#[test]
fn key_updates_move_both_directions_to_new_keys() {
    let pki = Pki::new("keyupdate");
    let context = pki.context(serde_json::json!({}));
    for suite in [
        CipherSuite::TLS13_AES_128_GCM_SHA256,
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ] {
        let mut pair = Pair::new(
            &context,
            pki.client(&rustls::version::TLS13, Some(suite), false),
        );
        pair.handshake(usize::MAX).unwrap();
        for round in 0..3 {
            pair.client.refresh_traffic_keys().unwrap();
            pair.client.writer().write_all(b"ping").unwrap();
            pair.client_sends(usize::MAX).unwrap();
            assert!(pair.plaintext.ends_with(b"ping"), "round {round}");
            assert_eq!(pair.server_sends(b"pong"), b"pong", "round {round}");
            let State::Open(records) = &mut pair.server.state else {
                panic!()
            };
            records.update_tx(&mut pair.wire, false);
            assert_eq!(pair.server_sends(b"again"), b"again");
            pair.client.writer().write_all(b"fine").unwrap();
            pair.client_sends(usize::MAX).unwrap();
            assert!(pair.plaintext.ends_with(b"fine"));
        }
    }
}

/// Proves a key at its confidentiality limit is replaced in the middle of a batch of records
/// (TLS 1.3: a KeyUpdate goes out first, and the client reads on), and that a TLS 1.2 key at
/// its limit ends the session instead of sealing one record too many.
#[test]
fn a_key_at_its_limit_is_replaced_or_ends_the_session() {
    let pki = Pki::new("limit");
    let context = pki.context(serde_json::json!({}));
    let mut pair = Pair::new(&context, pki.client(&rustls::version::TLS13, None, false));
    pair.handshake(usize::MAX).unwrap();
    let State::Open(records) = &mut pair.server.state else {
        panic!()
    };
    records.set_tx_limit(5);
    let down = pattern(200_000); // a dozen records, three keys' worth
    assert_eq!(pair.server_sends(&down), down);
    let mut pair = Pair::new(&context, pki.client(&rustls::version::TLS12, None, false));
    pair.handshake(usize::MAX).unwrap();
    let State::Open(records) = &mut pair.server.state else {
        panic!()
    };
    records.set_tx_limit(5);
    let mut out = OutBuf::default();
    out.tail().put_slice(&pattern(200_000));
    let mut result = Ok(());
    while result.is_ok() && !out.is_empty() {
        result = pair.server.seal_output(&mut out, 64 * 1024, &mut pair.wire);
    }
    assert!(
        matches!(result, Err(TlsError::Record(RecordError::KeyExhausted))),
        "{result:?}"
    );
}

#[test]
fn a_tampered_record_ends_the_session_with_an_alert() {
    let pki = Pki::new("tamper");
    let context = pki.context(serde_json::json!({}));
    let mut pair = Pair::new(&context, pki.client(&rustls::version::TLS13, None, false));
    pair.handshake(usize::MAX).unwrap();
    pair.client.writer().write_all(b"hello").unwrap();
    let mut bytes = Vec::new();
    pair.client.write_tls(&mut bytes).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let result = pair
        .server
        .read::<TlsError>(&mut bytes, &mut pair.wire, &mut |_| Ok(()));
    assert!(
        matches!(result, Err(TlsError::Record(RecordError::BadMac))),
        "{result:?}"
    );
    let error = pair.client_receives().unwrap_err();
    assert!(error.to_string().contains("BadRecordMac"), "{error}");
}

#[test]
fn close_notify_ends_the_session_cleanly() {
    let pki = Pki::new("close");
    let context = pki.context(serde_json::json!({}));
    let mut pair = Pair::new(&context, pki.client(&rustls::version::TLS12, None, false));
    pair.handshake(usize::MAX).unwrap();
    pair.client.send_close_notify();
    assert!(matches!(
        pair.client_sends(usize::MAX),
        Err(TlsError::PeerClosed)
    ));
    let mut pair = Pair::new(&context, pki.client(&rustls::version::TLS13, None, false));
    pair.handshake(usize::MAX).unwrap();
    pair.server.goodbye(&mut pair.wire);
    pair.client_receives().unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        pair.client.reader().read_to_end(&mut rest).unwrap(),
        0,
        "clean EOF"
    );
}

/// Proves a client certificate is verified, and its CN and issuer/serial kept; a client
/// without one is refused where one is required and let in where it is optional.
#[test]
fn client_certificates() {
    let pki = Pki::new("mtls");
    let required = pki.context(serde_json::json!({"UseClientCertificate": true}));
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut pair = Pair::new(&required, pki.client(version, None, true));
        pair.handshake(usize::MAX).unwrap();
        let cert = pair.established.take().unwrap().certificate.unwrap();
        assert_eq!(&*cert.common_name, "device-7");
        assert!(!cert.revocation.serial.is_empty());
        let mut pair = Pair::new(&required, pki.client(version, None, false));
        let error = pair.handshake(usize::MAX).unwrap_err();
        assert!(
            matches!(
                error,
                TlsError::Handshake(rustls::Error::NoCertificatesPresented)
            ),
            "{error}"
        );
    }
    let optional = pki.context(
        serde_json::json!({"UseClientCertificate": true, "RequireClientCertificate": false}),
    );
    let mut pair = Pair::new(&optional, pki.client(&rustls::version::TLS13, None, false));
    pair.handshake(usize::MAX).unwrap();
    assert!(pair.established.take().unwrap().certificate.is_none());
}

/// Proves a revoked client certificate is refused at the handshake, a good one is not, and the
/// revocation set for live connections names the certificate as the handshake saw it.
#[test]
fn revoked_client_certificates_are_refused() {
    let pki = Pki::new("crl");
    let profile = serde_json::json!({"UseClientCertificate": true, "CRLProfile": "Revoked"});
    pki.revoke(&[3]);
    let context = pki.context(profile.clone());
    let mut pair = Pair::new(&context, pki.client(&rustls::version::TLS13, None, true));
    pair.handshake(usize::MAX).unwrap();
    let key = pair
        .established
        .take()
        .unwrap()
        .certificate
        .unwrap()
        .revocation;
    assert!(!context.revalidate.as_ref().unwrap().contains(&key));
    pki.revoke(&[3, 7]);
    let context = pki.context(profile);
    assert!(
        context.revalidate.as_ref().unwrap().contains(&key),
        "the live check finds it"
    );
    let mut pair = Pair::new(&context, pki.client(&rustls::version::TLS13, None, true));
    let error = pair.handshake(usize::MAX).unwrap_err();
    assert!(
        matches!(
            error,
            TlsError::Handshake(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        ),
        "{error}"
    );
}

/// Regression: a record announcing a ClientHello longer than the record (nine bytes, sent by
/// anyone before authenticating) made the error path call rustls again with an empty buffer,
/// which panicked inside rustls and aborted the broker.
#[test]
fn short_hostile_client_hellos_are_refused_without_a_panic() {
    let pki = Pki::new("hostile");
    let context = pki.context(serde_json::json!({}));
    for bytes in [
        &b"\x16\x03\x01\x00\x04\x01\x01\x11\x70"[..],
        b"\x16\x03\x01\x00\x05hello",
    ] {
        let mut server = Tls::new(&context).unwrap();
        let mut data = bytes.to_vec();
        let mut wire = BytesMut::new();
        let result = server.read::<TlsError>(&mut data, &mut wire, &mut |_| Ok(()));
        assert!(
            matches!(result, Err(TlsError::Handshake(_))),
            "{bytes:?}: {result:?}"
        );
    }
}

#[test]
fn minimum_version_is_enforced() {
    let pki = Pki::new("minimum");
    let context = pki.context(serde_json::json!({"MinimumProtocolMethod": "TLSv1.3"}));
    let mut pair = Pair::new(&context, pki.client(&rustls::version::TLS12, None, false));
    let error = pair.handshake(usize::MAX).unwrap_err();
    assert!(
        matches!(
            error,
            TlsError::Handshake(rustls::Error::PeerIncompatible(_))
        ),
        "{error}"
    );
}

/// Proves a handshake that never ends cannot make the server hold more than its bound.
#[test]
fn an_endless_handshake_is_refused_at_the_bound() {
    let pki = Pki::new("endless");
    let context = pki.context(serde_json::json!({}));
    let mut server = Tls::new(&context).unwrap();
    // A handshake record header announcing 16 KiB, then a ClientHello header announcing 64 KiB
    // spread over records that never complete it.
    let mut carry: Vec<u8> = Vec::new();
    let mut wire = BytesMut::new();
    let mut result = Ok(0);
    for _ in 0..8 {
        let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
        if carry.is_empty() {
            record.extend_from_slice(&[0x01, 0x00, 0xFF, 0xFF]);
            record.resize(5 + 0x4000, 0);
        } else {
            record.resize(5 + 0x4000, 0);
        }
        let mut data = std::mem::take(&mut carry);
        data.extend_from_slice(&record);
        result = server.read::<TlsError>(&mut data, &mut wire, &mut |_| Ok(()));
        match result {
            Ok(used) => carry = data[used..].to_vec(),
            Err(_) => break,
        }
        assert!(carry.len() <= HANDSHAKE_BYTES_MAX);
    }
    assert!(result.is_err(), "refused before 128 KiB were held");
}
