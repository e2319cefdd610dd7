//! The TLS 1.3 traffic secrets a handshake derives, taken from rustls as it logs them.
//!
//! After the handshake the record layer is ironsight's ([`super::records`]), and a TLS 1.3
//! KeyUpdate derives the next keys from the current traffic secret, which rustls hands out only
//! through its key log. rustls calls the key log synchronously, on the shard's thread, while it
//! processes the handshake records of one connection; so the secrets it logs land in this
//! thread's slot, and the handshake takes them out right after each call
//! ([`take`]). They are checked against the keys rustls extracts at the end, which proves they
//! belong to that connection (`Keys::match_secret`).

use std::cell::RefCell;

use super::records::Secret;

/// The key log labels of the first application traffic secrets (RFC 8446 7.1; NSS key log).
const CLIENT: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER: &str = "SERVER_TRAFFIC_SECRET_0";

#[derive(Default)]
pub struct TrafficSecrets {
    pub client: Option<Secret>,
    pub server: Option<Secret>,
}

thread_local! {
    static LOGGED: RefCell<TrafficSecrets> = RefCell::default();
}

/// The secrets logged on this thread since the last call.
pub fn take() -> TrafficSecrets {
    LOGGED.with(|logged| std::mem::take(&mut *logged.borrow_mut()))
}

#[derive(Debug)]
pub struct CaptureTrafficSecrets;

impl rustls::KeyLog for CaptureTrafficSecrets {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        LOGGED.with(|logged| {
            let mut logged = logged.borrow_mut();
            match label {
                CLIENT => logged.client = Secret::new(secret),
                SERVER => logged.server = Secret::new(secret),
                _ => {}
            }
        });
    }

    fn will_log(&self, label: &str) -> bool {
        label == CLIENT || label == SERVER
    }
}
