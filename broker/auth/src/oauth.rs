//! MessageSight's OAuthProfile: the CONNECT password is an access token, and an authorization
//! server says whether it is good and whose it is.
//!
//! One check is at most two HTTP(S) requests on the auth service's runtime: the token to
//! `ResourceURL` (accepted on 2xx unless a JSON answer says `"active": false`, as RFC 7662
//! introspection answers; refused on 400, 401 and 403), then, when `UserInfoURL` names
//! another URL, the token to it for the user id (`UserInfoKey`) and the groups
//! (`GroupInfoKey`); otherwise they are read from ResourceURL's answer. The token travels as
//! `TokenSendMethod` says: URL parameter or form field named `AuthKey`, or a Bearer header.
//!
//! Bounds: one deadline (`Timeout`) for both requests, after which the client hears "server
//! unavailable", as it does for an unreachable server, a redirect (never followed: a token
//! must reach only the configured URL), a 5xx, or an answer over [`RESPONSE_BYTES_MAX`];
//! at most [`IN_FLIGHT_MAX`] requests at a time; and a cache of verified tokens, keyed by
//! the token's SHA-256 (the cache holds no token), each kept `CacheTimeout` at most and never
//! past the `exp` or `expires_in` the server gave.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ironsight_config::tokens::{CheckServerCert, OAuthProfile, TokenSendMethod};
use ironsight_config::{Config, ConfigError};
use ironsight_core::auth::{AuthVerdict, Principal, Refusal};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::check::{BoxFuture, TokenVerifier};
use crate::jwt::{name_ok, now_s, GROUPS_MAX, TOKEN_BYTES_MAX};

/// The largest answer read from the authorization server, in bytes: user info with a few
/// hundred groups fits; an answer that does not is a misbehaving server, not a token.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// Requests to the authorization server at one time; a connection storm beyond this waits
/// (within its deadline) instead of opening a connection per client.
pub const IN_FLIGHT_MAX: usize = 32;
/// Verified tokens remembered at once; when full, expired entries go, and if none has
/// expired a new token is verified but not remembered.
pub const CACHE_ENTRIES_MAX: usize = 100_000;
/// Idle connections kept to the authorization server, and for how long.
const POOL_IDLE_MAX: usize = IN_FLIGHT_MAX;
const POOL_IDLE: Duration = Duration::from_secs(30);

const _: () = assert!(TOKEN_BYTES_MAX < RESPONSE_BYTES_MAX);

/// An OAuthProfile, ready to use.
#[derive(Clone, Debug)]
pub struct OAuthSettings {
    pub resource_url: Uri,
    /// `None`: the user id and groups are read from ResourceURL's answer.
    pub user_info_url: Option<Uri>,
    /// `Authorization: Basic ...` of UserName and UserPassword.
    pub basic: Option<HeaderValue>,
    pub auth_key: String,
    pub send: TokenSendMethod,
    pub user_info_key: String,
    /// `None`: tokens bring no groups.
    pub group_info_key: Option<String>,
    pub group_delimiter: char,
    /// For both requests together.
    pub timeout: Duration,
    /// How long a verified token is remembered at most; zero: not at all.
    pub cache_for: Duration,
}

fn uri(name: &str, attribute: &str, text: &str) -> Result<Uri, ConfigError> {
    text.parse::<Uri>().map_err(|e| {
        ConfigError::attribute(
            "OAuthProfile",
            name,
            attribute,
            format!("is not a URL: {e}"),
        )
    })
}

impl OAuthSettings {
    pub fn from_profile(name: &str, p: &OAuthProfile) -> Result<OAuthSettings, ConfigError> {
        let resource_url = uri(name, "ResourceURL", &p.resource_url)?;
        let user_info_url = match p.user_info_url.as_str() {
            "" => None,
            // Amlen's own example points both at one URL: one request answers both.
            same if same == p.resource_url => None,
            other => Some(uri(name, "UserInfoURL", other)?),
        };
        let basic = match p.user_name.as_str() {
            "" => None,
            user => {
                let credentials = STANDARD.encode(format!("{user}:{}", p.user_password));
                let value =
                    HeaderValue::try_from(format!("Basic {credentials}")).map_err(|_| {
                        ConfigError::attribute(
                            "OAuthProfile",
                            name,
                            "UserName",
                            "is not a valid header",
                        )
                    })?;
                Some(value)
            }
        };
        Ok(OAuthSettings {
            resource_url,
            user_info_url,
            basic,
            auth_key: p.auth_key.clone(),
            send: p.token_send_method,
            user_info_key: p.user_info_key.clone(),
            group_info_key: Some(p.group_info_key.clone()).filter(|k| !k.is_empty()),
            group_delimiter: p.group_delimiter,
            timeout: Duration::from_secs(u64::from(p.timeout)),
            cache_for: Duration::from_secs(u64::from(p.cache_timeout)),
        })
    }
}

/// How often a full cache is swept for expired entries: a storm of new tokens into a full
/// cache of live ones must not scan all of it once per token.
const CACHE_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Verified tokens by the SHA-256 of the token, each with the instant it must be asked again.
#[derive(Default)]
struct TokenCache {
    entries: HashMap<[u8; 32], (Instant, Arc<Principal>)>,
    /// When a full cache may next be swept.
    next_sweep: Option<Instant>,
}

impl TokenCache {
    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Arc<Principal>> {
        match self.entries.get(key) {
            Some((until, principal)) if *until > now => Some(principal.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, key: [u8; 32], until: Instant, principal: Arc<Principal>, now: Instant) {
        if self.entries.len() >= CACHE_ENTRIES_MAX && self.next_sweep.is_none_or(|t| now >= t) {
            self.entries.retain(|_, (u, _)| *u > now);
            self.next_sweep = Some(now + CACHE_SWEEP_EVERY);
        }
        if self.entries.len() < CACHE_ENTRIES_MAX {
            self.entries.insert(key, (until, principal));
        }
    }
}

/// How long a verified token may be remembered: `cache_for`, cut to the token's expiry when
/// the server told it (`exp`, seconds since the epoch).
fn lifetime(cache_for: Duration, exp_s: Option<u64>, now_s: u64) -> Duration {
    match exp_s {
        Some(exp) => cache_for.min(Duration::from_secs(exp.saturating_sub(now_s))),
        None => cache_for,
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One OAuthProfile: its settings, its HTTP client (pooled connections), and its cache.
pub struct OAuthVerifier {
    name: String,
    settings: OAuthSettings,
    client: HttpsClient,
    in_flight: Semaphore,
    cache: Mutex<TokenCache>,
}

impl fmt::Debug for OAuthVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthVerifier")
            .field("name", &self.name)
            .field("resource_url", &self.settings.resource_url)
            .finish_non_exhaustive()
    }
}

/// What the authorization server answered, as far as a check cares.
type Answer = Option<Map<String, Value>>;

impl OAuthVerifier {
    /// A verifier whose TLS connections trust `roots` (rustls over aws-lc-rs, TLS 1.2 and
    /// 1.3). Needs no runtime to build; checks run on the auth service's.
    pub fn new(name: &str, settings: OAuthSettings, roots: rustls::RootCertStore) -> OAuthVerifier {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_IDLE_MAX)
            .pool_timer(TokioTimer::new())
            .build(connector);
        OAuthVerifier {
            name: name.into(),
            settings,
            client,
            in_flight: Semaphore::new(IN_FLIGHT_MAX),
            cache: Mutex::new(TokenCache::default()),
        }
    }

    /// The verifier of the OAuthProfile `name`: its URLs checked, and the CA certificates
    /// its CheckServerCert trusts read (KeyFileName relative to the configuration file).
    pub fn from_config(config: &Config, name: &str) -> Result<OAuthVerifier, ConfigError> {
        let error =
            |attribute: &str, m: String| ConfigError::attribute("OAuthProfile", name, attribute, m);
        let profile = config
            .oauth_profiles
            .get(name)
            .ok_or_else(|| error("ResourceURL", "no such OAuthProfile".into()))?;
        let settings = OAuthSettings::from_profile(name, profile)?;
        let mut roots = rustls::RootCertStore::empty();
        if profile.check_server_cert == CheckServerCert::PublicTrust {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if !profile.key_file_name.is_empty() {
            let path = config.file(&profile.key_file_name);
            let read = |e: &dyn fmt::Display| format!("cannot read {}: {e}", path.display());
            let certs = CertificateDer::pem_file_iter(&path)
                .map_err(|e| error("KeyFileName", read(&e)))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error("KeyFileName", read(&e)))?;
            if certs.is_empty() {
                return Err(error(
                    "KeyFileName",
                    format!("{} holds no certificate", path.display()),
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| error("KeyFileName", read(&e)))?;
            }
        }
        Ok(OAuthVerifier::new(name, settings, roots))
    }

    /// Whose `token` is, from the cache or the authorization server.
    pub async fn check(&self, token: &[u8]) -> AuthVerdict {
        let Some(token) = bearer(token) else {
            tracing::debug!(profile = %self.name, "token refused: not a bearer token's characters");
            return Err(Refusal::BadCredentials);
        };
        let key: [u8; 32] = digest::digest(&digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        if let Some(principal) = self.cache().get(&key, Instant::now()) {
            return Ok(principal);
        }
        let asked = tokio::time::timeout(self.settings.timeout, self.ask(token)).await;
        let (principal, exp) = asked.unwrap_or_else(|_| {
            tracing::warn!(profile = %self.name, timeout = ?self.settings.timeout,
                "authorization server did not answer in time");
            Err(Refusal::Unavailable)
        })?;
        let principal = Arc::new(principal);
        let keep = lifetime(self.settings.cache_for, exp, now_s());
        if !keep.is_zero() {
            let now = Instant::now();
            self.cache().insert(key, now + keep, principal.clone(), now);
        }
        Ok(principal)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the server(s); returns the principal and the token's expiry if told.
    async fn ask(&self, token: &str) -> Result<(Principal, Option<u64>), Refusal> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| Refusal::Unavailable)?;
        let s = &self.settings;
        let resource = self.request(&s.resource_url, token).await?;
        if let Some(answer) = &resource {
            if answer.get("active") == Some(&Value::Bool(false)) {
                tracing::info!(profile = %self.name, "token refused: inactive");
                return Err(Refusal::BadCredentials);
            }
        }
        let exp = resource.as_ref().and_then(expiry);
        if exp.is_some_and(|exp| exp <= now_s()) {
            tracing::info!(profile = %self.name, "token refused: expired");
            return Err(Refusal::BadCredentials);
        }
        let info = match &s.user_info_url {
            None => resource,
            Some(url) => self.request(url, token).await?,
        };
        let principal = info
            .as_ref()
            .and_then(|i| self.principal(i))
            .ok_or_else(|| {
                tracing::warn!(profile = %self.name, key = %s.user_info_key,
                "token refused: the answer names no usable user id or groups");
                Refusal::BadCredentials
            })?;
        Ok((principal, exp))
    }

    fn principal(&self, info: &Map<String, Value>) -> Option<Principal> {
        let s = &self.settings;
        let user = info
            .get(&s.user_info_key)?
            .as_str()
            .filter(|u| name_ok(u))?;
        let groups: Vec<Box<str>> = match s.group_info_key.as_ref().and_then(|k| info.get(k)) {
            None => Vec::new(),
            Some(Value::String(list)) => list
                .split(s.group_delimiter)
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(|g| name_ok(g).then(|| g.into()))
                .collect::<Option<_>>()?,
            Some(Value::Array(list)) => list
                .iter()
                .map(|g| g.as_str().filter(|g| name_ok(g)).map(Box::from))
                .collect::<Option<_>>()?,
            Some(_) => return None,
        };
        (groups.len() <= GROUPS_MAX).then(|| Principal::new(user, groups))
    }

    /// One request with the token, as TokenSendMethod says.
    async fn request(&self, url: &Uri, token: &str) -> Result<Answer, Refusal> {
        let s = &self.settings;
        let field = || {
            form_urlencoded::Serializer::new(String::new())
                .append_pair(&s.auth_key, token)
                .finish()
        };
        let (method, target, body, bearer) = match s.send {
            TokenSendMethod::UrlParam => {
                let sep = if url.query().is_some() { '&' } else { '?' };
                (
                    Method::GET,
                    format!("{url}{sep}{}", field()),
                    Bytes::new(),
                    false,
                )
            }
            TokenSendMethod::HttpHeader => (Method::GET, url.to_string(), Bytes::new(), true),
            TokenSendMethod::HttpPost => (Method::POST, url.to_string(), field().into(), false),
        };
        let mut request = Request::builder()
            .method(method.clone())
            .uri(target)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "ironsight");
        if method == Method::POST {
            request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        } else if let Some(basic) = &s.basic {
            request = request.header(AUTHORIZATION, basic.clone());
        }
        let request = request.body(Full::new(body)).map_err(|e| {
            tracing::error!(profile = %self.name, error = %e, "cannot build the request");
            Refusal::Unavailable
        })?;
        let response = self.client.request(request).await.map_err(|e| {
            tracing::warn!(profile = %self.name, %url, error = %e, "authorization server unreachable");
            Refusal::Unavailable
        })?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                tracing::info!(profile = %self.name, status = %response.status(), "token refused");
                return Err(Refusal::BadCredentials);
            }
            status => {
                tracing::warn!(profile = %self.name, %url, %status,
                    "authorization server answered neither yes nor no (redirects are not followed)");
                return Err(Refusal::Unavailable);
            }
        }
        let body = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| {
                tracing::warn!(profile = %self.name, %url, error = %e,
                    limit = RESPONSE_BYTES_MAX, "authorization server's answer unreadable or too large");
                Refusal::Unavailable
            })?
            .to_bytes();
        Ok(match serde_json::from_slice(&body) {
            Ok(Value::Object(answer)) => Some(answer),
            _ => None,
        })
    }
}

/// The token's expiry from an answer: RFC 7662's `exp`, or a token endpoint's `expires_in`.
fn expiry(answer: &Map<String, Value>) -> Option<u64> {
    if let Some(exp) = answer.get("exp").and_then(Value::as_u64) {
        return Some(exp);
    }
    let remaining = answer.get("expires_in").and_then(Value::as_u64)?;
    Some(now_s().saturating_add(remaining))
}

/// The token as text, if it can be one: printable ASCII without spaces (RFC 6750's b64token
/// and then some), bounded, so that it is a valid header value and nothing else is sent.
fn bearer(token: &[u8]) -> Option<&str> {
    let ok = !token.is_empty()
        && token.len() <= TOKEN_BYTES_MAX
        && token.iter().all(|b| b.is_ascii_graphic());
    ok.then(|| std::str::from_utf8(token).ok()).flatten()
}

impl TokenVerifier for OAuthVerifier {
    fn verify<'a>(&'a self, token: &'a [u8]) -> BoxFuture<'a, AuthVerdict> {
        Box::pin(self.check(token))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;
    use tokio::io::{
        AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
    };
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::jwt::tests::{config_with, TempDir};

    const BROKER: &str = "broker:s3cret";

    /// An authorization server written for the tests, on 127.0.0.1: it checks each request as
    /// strictly as a real one would (method, path, where the token is, the broker's Basic
    /// credentials when configured) and answers by the token's value. It counts requests.
    struct StandIn {
        url: String,
        requests: Arc<AtomicUsize>,
        task: JoinHandle<()>,
    }

    impl Drop for StandIn {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl StandIn {
        async fn start(send: TokenSendMethod, basic: bool) -> StandIn {
            StandIn::serving(send, basic, None).await
        }

        /// With `tls`, the stand-in speaks HTTPS with that server configuration.
        async fn serving(
            send: TokenSendMethod,
            basic: bool,
            tls: Option<Arc<rustls::ServerConfig>>,
        ) -> StandIn {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let scheme = if tls.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://{}", listener.local_addr().unwrap());
            let requests = Arc::new(AtomicUsize::new(0));
            let count = requests.clone();
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let count = count.clone();
                    let Some(tls) = &tls else {
                        tokio::spawn(serve(stream, send, basic, count));
                        continue;
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                    tokio::spawn(async move {
                        // A client that does not trust the certificate ends the handshake.
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream, send, basic, count).await;
                        }
                    });
                }
            });
            StandIn {
                url,
                requests,
                task,
            }
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    /// Serves the requests of one (kept-alive) connection.
    async fn serve(
        stream: impl AsyncRead + AsyncWrite + Unpin,
        send: TokenSendMethod,
        basic: bool,
        count: Arc<AtomicUsize>,
    ) {
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut words = line.split_whitespace();
            let (method, target) = (
                words.next().unwrap_or("").to_string(),
                words.next().unwrap_or("").to_string(),
            );
            let mut headers = BTreeMap::new();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).await.unwrap();
                let Some((name, value)) = header.trim_end().split_once(':') else {
                    break;
                };
                headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
            }
            let length = headers
                .get("content-length")
                .map_or(0, |l| l.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let (status, answer, delay) = answer(send, basic, &method, &target, &headers, &body);
            tokio::time::sleep(delay).await;
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                answer.len()
            );
            let stream = reader.get_mut();
            if stream.write_all(head.as_bytes()).await.is_err()
                || stream.write_all(answer.as_bytes()).await.is_err()
            {
                return;
            }
        }
    }

    /// The one `access_token` pair of a query or form body.
    fn only_token(form: &[u8]) -> Option<String> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(form).into_owned().collect();
        match &pairs[..] {
            [(key, token)] if key == "access_token" => Some(token.clone()),
            _ => None,
        }
    }

    fn answer(
        send: TokenSendMethod,
        basic: bool,
        method: &str,
        target: &str,
        headers: &BTreeMap<String, String>,
        body: &[u8],
    ) -> (u16, String, Duration) {
        let bad = (
            400,
            json!({"error": "invalid_request"}).to_string(),
            Duration::ZERO,
        );
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let authorization = headers.get("authorization").map(String::as_str);
        let broker = format!("Basic {}", STANDARD.encode(BROKER));
        let broker_ok = authorization == basic.then_some(broker.as_str());
        if !headers.contains_key("host") {
            return bad;
        }
        let token = match send {
            TokenSendMethod::UrlParam if method == "GET" && body.is_empty() && broker_ok => {
                only_token(query.as_bytes())
            }
            TokenSendMethod::HttpHeader if method == "GET" && query.is_empty() => authorization
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(String::from),
            TokenSendMethod::HttpPost
                if method == "POST"
                    && query.is_empty()
                    && broker_ok
                    && headers.get("content-type").map(String::as_str)
                        == Some("application/x-www-form-urlencoded") =>
            {
                only_token(body)
            }
            _ => None,
        };
        let Some(token) = token else {
            return bad;
        };
        let now = now_s();
        let ok = |v: Value| (200, v.to_string(), Duration::ZERO);
        let good = json!({"active": true, "client_id": "alice", "scope": "Group1, Group2,", "exp": now + 600});
        match (path, token.as_str()) {
            ("/userinfo", "good") => ok(json!({"sub": "alice", "groups": ["a", "b"]})),
            ("/introspect", "good") => ok(good),
            ("/introspect", "inactive") => ok(json!({"active": false})),
            ("/introspect", "expired") => {
                ok(json!({"active": true, "client_id": "alice", "exp": now - 5}))
            }
            ("/introspect", "nameless") => ok(json!({"active": true, "scope": "Group1"})),
            ("/introspect", "slow") => (200, good.to_string(), Duration::from_secs(3)),
            ("/introspect", "huge") => ok(json!({"active": true, "client_id": "alice",
                                                 "pad": "x".repeat(RESPONSE_BYTES_MAX)})),
            ("/introspect", "broken") => (503, String::new(), Duration::ZERO),
            ("/introspect", "moved") => (302, String::new(), Duration::ZERO),
            ("/introspect" | "/userinfo", _) => (
                401,
                json!({"error": "invalid_token"}).to_string(),
                Duration::ZERO,
            ),
            _ => (404, String::new(), Duration::ZERO),
        }
    }

    fn settings(url: &str, send: TokenSendMethod) -> OAuthSettings {
        OAuthSettings {
            resource_url: format!("{url}/introspect").parse().unwrap(),
            user_info_url: None,
            basic: None,
            auth_key: "access_token".into(),
            send,
            user_info_key: "client_id".into(),
            group_info_key: Some("scope".into()),
            group_delimiter: ',',
            timeout: Duration::from_secs(2),
            cache_for: Duration::from_secs(60),
        }
    }

    fn verifier(settings: OAuthSettings) -> OAuthVerifier {
        OAuthVerifier::new("OAuth", settings, rustls::RootCertStore::empty())
    }

    /// Proves a good token is accepted with each of Amlen's TokenSendMethods (the stand-in
    /// refuses a token sent any other way), with the broker's Basic credentials where
    /// configured, and that the user id and groups come from Amlen's keys in the answer.
    #[tokio::test]
    async fn accepted_with_each_send_method() {
        for (send, basic) in [
            (TokenSendMethod::UrlParam, false),
            (TokenSendMethod::UrlParam, true),
            (TokenSendMethod::HttpHeader, false),
            (TokenSendMethod::HttpPost, true),
        ] {
            let server = StandIn::start(send, basic).await;
            let mut s = settings(&server.url, send);
            s.basic = basic.then(|| {
                HeaderValue::try_from(format!("Basic {}", STANDARD.encode(BROKER))).unwrap()
            });
            let p = verifier(s).check(b"good").await.unwrap();
            assert_eq!(&*p.user_id, "alice", "{send:?}");
            assert_eq!(
                &*p.groups,
                &["Group1".into(), "Group2".into()] as &[Box<str>]
            );
            assert_eq!(server.requests(), 1);
            // The same settings without the broker's credentials are turned away by the server.
            if basic {
                let plain = verifier(settings(&server.url, send));
                assert_eq!(plain.check(b"good").await, Err(Refusal::BadCredentials));
            }
        }
    }

    /// Proves the token as a URL parameter is encoded: characters a token may hold (`+`,
    /// `/`, `=`, `&`) reach the server as sent, and a query already in ResourceURL is kept.
    #[tokio::test]
    async fn url_parameters_are_encoded() {
        let token = "a+b/c=d&e";
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/introspect?realm=x",
            listener.local_addr().unwrap()
        );
        let mut s = settings("http://unused", TokenSendMethod::UrlParam);
        s.resource_url = url.parse().unwrap();
        let v = verifier(s);
        let (result, target) = tokio::join!(v.check(token.as_bytes()), async {
            let (stream, _) = listener.accept().await.unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            let json = r#"{"active":true,"client_id":"bob"}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{json}",
                json.len()
            );
            reader.get_mut().write_all(reply.as_bytes()).await.unwrap();
            line
        });
        assert_eq!(&*result.unwrap().user_id, "bob");
        let target = target.split_whitespace().nth(1).unwrap().to_string();
        let query = target.strip_prefix("/introspect?").unwrap();
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            [
                ("realm".into(), "x".into()),
                ("access_token".into(), token.into())
            ]
        );
    }

    /// Proves what the server refuses (401, `"active": false`), a token past the `exp` the
    /// server gave, and an answer that names no user are bad credentials; so is a password
    /// that cannot be a bearer token, refused without asking the server.
    #[tokio::test]
    async fn refused_tokens_are_bad_credentials() {
        let server = StandIn::start(TokenSendMethod::HttpPost, false).await;
        let v = verifier(settings(&server.url, TokenSendMethod::HttpPost));
        for token in ["revoked", "inactive", "expired", "nameless"] {
            assert_eq!(
                v.check(token.as_bytes()).await,
                Err(Refusal::BadCredentials),
                "{token}"
            );
        }
        assert_eq!(server.requests(), 4);
        let long = vec![b'a'; TOKEN_BYTES_MAX + 1];
        for token in [&b"two words"[..], b"", b"caf\xc3\xa9", b"line\nfeed", &long] {
            assert_eq!(v.check(token).await, Err(Refusal::BadCredentials));
        }
        assert_eq!(server.requests(), 4, "refused without a request");
    }

    /// Proves a server that cannot say yes or no makes the client hear "unavailable", never
    /// "bad credentials": a 503, a redirect (not followed), an answer over the size cap, a
    /// slow server (within the profile's timeout, not the server's), and no server at all.
    #[tokio::test]
    async fn an_unusable_server_is_unavailable() {
        let server = StandIn::start(TokenSendMethod::HttpHeader, false).await;
        let mut s = settings(&server.url, TokenSendMethod::HttpHeader);
        s.timeout = Duration::from_millis(300);
        let v = verifier(s);
        for token in ["broken", "moved", "huge"] {
            assert_eq!(
                v.check(token.as_bytes()).await,
                Err(Refusal::Unavailable),
                "{token}"
            );
        }
        let started = Instant::now();
        assert_eq!(v.check(b"slow").await, Err(Refusal::Unavailable));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let gone = verifier(settings(&url, TokenSendMethod::HttpHeader));
        assert_eq!(gone.check(b"good").await, Err(Refusal::Unavailable));
        // And so the endpoint's check answers, whatever the user name.
        let demands = crate::check::Demands {
            token: Some(Arc::new(gone)),
            ..Default::default()
        };
        let checker = crate::Checker::new(vec![demands], None, Duration::from_secs(1));
        let request = ironsight_core::auth::AuthRequest {
            shard: 0,
            conn: 1,
            ticket: 1,
            endpoint: 0,
            client_id: "phone".into(),
            user_name: Some(crate::check::TOKEN_USER_NAME.into()),
            password: Some(Bytes::from_static(b"good")),
            peer: std::net::Ipv4Addr::LOCALHOST.into(),
            common_name: None,
            method: None,
            data: None,
            step: 0,
        };
        let answer = crate::check::tests::verdict(checker.check(&request).await);
        assert_eq!(answer, Err(Refusal::Unavailable));
    }

    /// Proves a verified token is asked once and then served from the cache (the stand-in
    /// counts), refusals are never cached, and CacheTimeout 0 asks every time; with a
    /// separate UserInfoURL the first check takes two requests, the next none.
    #[tokio::test]
    async fn verified_tokens_are_cached() {
        let server = StandIn::start(TokenSendMethod::HttpHeader, false).await;
        let v = verifier(settings(&server.url, TokenSendMethod::HttpHeader));
        let first = v.check(b"good").await.unwrap();
        let second = v.check(b"good").await.unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(server.requests(), 1);
        for _ in 0..2 {
            assert_eq!(v.check(b"revoked").await, Err(Refusal::BadCredentials));
        }
        assert_eq!(server.requests(), 3);
        let mut uncached = settings(&server.url, TokenSendMethod::HttpHeader);
        uncached.cache_for = Duration::ZERO;
        let u = verifier(uncached);
        u.check(b"good").await.unwrap();
        u.check(b"good").await.unwrap();
        assert_eq!(server.requests(), 5);
        let mut info = settings(&server.url, TokenSendMethod::HttpHeader);
        info.user_info_url = Some(format!("{}/userinfo", server.url).parse().unwrap());
        info.user_info_key = "sub".into();
        info.group_info_key = Some("groups".into());
        let i = verifier(info);
        let p = i.check(b"good").await.unwrap();
        assert_eq!(&*p.groups, &["a".into(), "b".into()] as &[Box<str>]);
        assert_eq!(server.requests(), 7);
        i.check(b"good").await.unwrap();
        assert_eq!(server.requests(), 7);
    }

    /// A CA, and a certificate it signs for 127.0.0.1, as a TLS server configuration.
    fn tls_server() -> (String, Arc<rustls::ServerConfig>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(vec![]).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        (ca.pem(), Arc::new(config))
    }

    /// Proves an HTTPS authorization server is trusted through the CA in KeyFileName
    /// (CheckServerCert TrustStore, read from the configuration's directory), and that one
    /// whose certificate chains to another CA gets no token: the check is "unavailable".
    #[tokio::test]
    async fn the_server_certificate_is_checked() {
        let (ca, tls) = tls_server();
        let (other_ca, _) = tls_server();
        let server = StandIn::serving(TokenSendMethod::HttpPost, false, Some(tls)).await;
        let dir = TempDir::new("oauth-tls");
        std::fs::write(dir.0.join("ca.pem"), ca).unwrap();
        std::fs::write(dir.0.join("other.pem"), other_ca).unwrap();
        let profile = |ca_file: &str| {
            json!({"Auth": {"ResourceURL": format!("{}/introspect", server.url),
                "UserInfoKey": "client_id", "GroupInfoKey": "scope", "KeyFileName": ca_file,
                "TokenSendMethod": "HTTPPost"}})
        };
        let config = config_with(&dir.0, "OAuthProfile", profile("ca.pem"));
        assert_eq!(
            config.oauth_profiles["Auth"].check_server_cert,
            CheckServerCert::TrustStore
        );
        let trusted = OAuthVerifier::from_config(&config, "Auth").unwrap();
        assert_eq!(&*trusted.check(b"good").await.unwrap().user_id, "alice");
        assert_eq!(
            trusted.check(b"revoked").await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(server.requests(), 2);
        let config = config_with(&dir.0, "OAuthProfile", profile("other.pem"));
        let untrusting = OAuthVerifier::from_config(&config, "Auth").unwrap();
        assert_eq!(untrusting.check(b"good").await, Err(Refusal::Unavailable));
        assert_eq!(server.requests(), 2, "the token was never sent");
    }

    /// Proves a cached token is kept CacheTimeout at most, never past its expiry, and that a
    /// full cache makes room from expired entries only.
    #[test]
    fn cache_lifetime_and_bound() {
        let minute = Duration::from_secs(60);
        assert_eq!(lifetime(minute, None, 1000), minute);
        assert_eq!(lifetime(minute, Some(1010), 1000), Duration::from_secs(10));
        assert_eq!(lifetime(minute, Some(5000), 1000), minute);
        assert_eq!(lifetime(minute, Some(900), 1000), Duration::ZERO);
        let now = Instant::now();
        let p = Arc::new(Principal::new("alice", []));
        let mut cache = TokenCache::default();
        cache.insert([1; 32], now + minute, p.clone(), now);
        assert!(cache.get(&[1; 32], now).is_some());
        assert!(cache.get(&[1; 32], now + minute).is_none(), "expired");
        assert!(cache.entries.is_empty(), "and dropped");
        for i in 0..CACHE_ENTRIES_MAX {
            let key: [u8; 32] = digest::digest(&digest::SHA256, &i.to_le_bytes())
                .as_ref()
                .try_into()
                .unwrap();
            let until = if i == 0 {
                now + Duration::from_secs(1)
            } else {
                now + minute
            };
            cache.insert(key, until, p.clone(), now);
        }
        cache.insert([2; 32], now + minute, p.clone(), now);
        assert!(cache.get(&[2; 32], now).is_none(), "full: not remembered");
        let later = now + Duration::from_secs(2);
        cache.insert([2; 32], later + minute, p, later);
        assert!(
            cache.get(&[2; 32], later).is_some(),
            "room made from the expired entry"
        );
        assert_eq!(cache.entries.len(), CACHE_ENTRIES_MAX);
    }

    /// Proves the profile's KeyFileName must hold CA certificates, read relative to the
    /// configuration file, and that an error names the profile and the attribute.
    #[test]
    fn server_certificates_are_read_from_key_file_name() {
        let dir = TempDir::new("oauth");
        let profile = json!({"Auth": {"ResourceURL": "https://id.example.com/introspect",
                                      "UserInfoKey": "sub", "KeyFileName": "ca.pem"}});
        let config = config_with(&dir.0, "OAuthProfile", profile);
        let e = OAuthVerifier::from_config(&config, "Auth")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("OAuthProfile \"Auth\", attribute KeyFileName: cannot read ")
                && e.contains("ca.pem"),
            "{e}"
        );
        std::fs::write(dir.0.join("ca.pem"), "not a certificate").unwrap();
        let e = OAuthVerifier::from_config(&config, "Auth")
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("ca.pem holds no certificate"), "{e}");
        let public = json!({"Auth": {"ResourceURL": "https://id.example.com/introspect",
                                     "UserInfoURL": "https://id.example.com/introspect",
                                     "UserInfoKey": "sub"}});
        let v = OAuthVerifier::from_config(&config_with(&dir.0, "OAuthProfile", public), "Auth")
            .unwrap();
        assert!(v.settings.user_info_url.is_none(), "one URL answers both");
    }
}
