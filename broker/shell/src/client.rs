//! Where the shell connects and as whom ([`Settings`], from one root-controlled file), and
//! the HTTP exchange with the admin endpoint ([`Client`]).
//!
//! The settings come from `/etc/ironsight/shell.json`, or from the file named by
//! `IRONSIGHT_SHELL_CONFIG`, and from nothing else: no variable names the URL or the
//! credentials, and the HTTP client is told to use no proxy (ureq would otherwise read
//! `HTTP_PROXY` and friends), so a login over SSH cannot send the admin password elsewhere.
//! The file must belong to root or to the user the shell runs as and be writable by nobody
//! else; the password file must belong to that user and be readable by nobody else.

use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::line::is_forbidden_char;
use crate::request::{Method, Request};
use crate::tune::TuneFiles;

pub const CONFIG_PATH_DEFAULT: &str = "/etc/ironsight/shell.json";
/// Names another settings file. Set it where root decides, as sshd's `SetEnv`; never list it
/// in sshd's `AcceptEnv`.
pub const CONFIG_ENV: &str = "IRONSIGHT_SHELL_CONFIG";
/// Amlen's admin endpoint default: port 9089 on the loopback interface.
pub const ADMIN_URL_DEFAULT: &str = "http://127.0.0.1:9089";

const CONFIG_BYTES_MAX: u64 = 64 * 1024;
const PASSWORD_BYTES_MAX: u64 = 1024;
const CONNECT_TIMEOUT_S: u64 = 5;
/// A restart or a policy applied to many connections may take a while to answer.
const REQUEST_TIMEOUT_S: u64 = 60;
/// Monitoring answers are at most a few hundred rows; a whole configuration with many users
/// is the largest answer.
const RESPONSE_BYTES_MAX: u64 = 16 * 1024 * 1024;

#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// `http://host:port`, without a trailing slash.
    pub admin_url: String,
    pub credentials: Option<Credentials>,
    /// What `tune show` reads.
    pub tune: TuneFiles,
    /// Where the settings came from, for messages.
    pub source: String,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    password: String,
}

// By hand, so that a debug print never shows the password.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("admin_url", &self.admin_url)
            .field("user", &self.credentials.as_ref().map(|c| &c.user))
            .field("tune", &self.tune)
            .field("source", &self.source)
            .finish()
    }
}

impl Settings {
    /// The settings from the file `IRONSIGHT_SHELL_CONFIG` names, else from the default
    /// file, else the built-in defaults (no such default file).
    pub fn load() -> Result<Settings, String> {
        match std::env::var_os(CONFIG_ENV) {
            Some(path) => Settings::from_file(Path::new(&path), true),
            None => Settings::from_file(Path::new(CONFIG_PATH_DEFAULT), false),
        }
    }

    /// `required`: a missing file is an error (it was named) rather than the defaults.
    pub fn from_file(path: &Path, required: bool) -> Result<Settings, String> {
        let shown = path.display();
        let file = match open_no_follow(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound && !required => {
                return Ok(Settings {
                    admin_url: ADMIN_URL_DEFAULT.to_string(),
                    credentials: None,
                    tune: TuneFiles::default(),
                    source: format!("built-in defaults ({shown} does not exist)"),
                })
            }
            Err(e) => return Err(format!("cannot open the shell settings {shown}: {e}")),
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read the shell settings {shown}: {e}"))?;
        check_settings_file(&meta).map_err(|why| format!("the shell settings {shown} {why}"))?;
        let text = read_bounded(file, CONFIG_BYTES_MAX)
            .map_err(|e| format!("cannot read the shell settings {shown}: {e}"))?;
        Settings::parse(&text, &shown.to_string())
    }

    fn parse(text: &str, source: &str) -> Result<Settings, String> {
        let fail = |why: String| format!("the shell settings {source}: {why}");
        let value: Value =
            serde_json::from_str(text).map_err(|e| fail(format!("not JSON: {e}")))?;
        let Value::Object(mut fields) = value else {
            return Err(fail("must be a JSON object".into()));
        };
        let mut string = |key: &str| -> Result<Option<String>, String> {
            match fields.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(fail(format!("{key} must be a string"))),
            }
        };
        let admin_url = string("AdminURL")?.unwrap_or_else(|| ADMIN_URL_DEFAULT.to_string());
        let user = string("User")?;
        let password_file = string("PasswordFile")?;
        let defaults = TuneFiles::default();
        let tune = TuneFiles {
            layout: string("LayoutFile")?.map_or(defaults.layout, PathBuf::from),
            sysctl: string("SysctlFile")?.map_or(defaults.sysctl, PathBuf::from),
        };
        if let Some(unknown) = fields.keys().next() {
            return Err(fail(format!(
                "{unknown} is not a setting (AdminURL, User, PasswordFile, LayoutFile, SysctlFile)"
            )));
        }
        let admin_url = check_url(&admin_url).map_err(|why| fail(format!("AdminURL {why}")))?;
        let credentials = match (user, password_file) {
            (None, None) => None,
            (Some(user), Some(file)) => Some(Credentials {
                password: read_password(Path::new(&file))
                    .map_err(|why| fail(format!("PasswordFile {file} {why}")))?,
                user: check_user(user).map_err(fail)?,
            }),
            _ => return Err(fail("User and PasswordFile go together".into())),
        };
        Ok(Settings {
            admin_url,
            credentials,
            tune,
            source: source.to_string(),
        })
    }
}

fn open_no_follow(path: &Path) -> std::io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn read_bounded(file: File, bytes_max: u64) -> Result<String, String> {
    let mut text = String::new();
    file.take(bytes_max + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > bytes_max {
        return Err(format!("longer than {bytes_max} bytes"));
    }
    Ok(text)
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid takes nothing, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// The settings file decides where the password goes: only root and the shell's own user may
/// be able to change it.
fn check_settings_file(meta: &Metadata) -> Result<(), String> {
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.uid() != 0 && meta.uid() != effective_uid() {
        return Err(format!(
            "belongs to uid {}: it must belong to root or to the shell's user",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "is writable by others (mode {:o}): chmod go-w it",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

fn read_password(path: &Path) -> Result<String, String> {
    if !path.is_absolute() {
        return Err("must be an absolute path".into());
    }
    let file = open_no_follow(path).map_err(|e| format!("cannot be opened: {e}"))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.uid() != effective_uid() || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "must belong to the shell's user (uid {}) and be readable by no one else \
             (chmod 600); it is uid {} mode {:o}",
            effective_uid(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    let text = read_bounded(file, PASSWORD_BYTES_MAX)?;
    let password = text
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err("is empty".into());
    }
    Ok(password.to_string())
}

fn check_user(user: String) -> Result<String, String> {
    if user.is_empty() || user.contains(':') || user.chars().any(is_forbidden_char) {
        return Err("User must be a name without ':' or control characters".into());
    }
    Ok(user)
}

/// `http://host[:port]` and nothing more: no user in the URL (the password comes from its
/// file), no path, query or fragment (the routes are the shell's).
fn check_url(url: &str) -> Result<String, String> {
    if url.starts_with("https://") {
        return Err(
            "is https: the shell speaks plain HTTP to the admin endpoint on this host until the \
             AdminEndpoint takes a SecurityProfile; use http://127.0.0.1:<port>"
                .into(),
        );
    }
    let Some(authority) = url.strip_prefix("http://") else {
        return Err(format!("must start with http://, not \"{url}\""));
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty()
        || authority.chars().any(|c| {
            matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control()
        })
    {
        return Err(format!("must be http://host:port, not \"{url}\""));
    }
    Ok(format!("http://{authority}"))
}

/// An answer from the admin endpoint: its HTTP status and body (any status: refusals carry
/// Amlen's code and message).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub struct Client {
    agent: ureq::Agent,
    admin_url: String,
    authorization: Option<String>,
}

impl Client {
    pub fn new(settings: &Settings) -> Client {
        // No proxy and no redirects: the request, and the password with it, goes to the
        // configured URL and nowhere else. Error statuses are answers (Amlen's refusals).
        let agent = ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(CONNECT_TIMEOUT_S)))
            .timeout_global(Some(Duration::from_secs(REQUEST_TIMEOUT_S)))
            .user_agent(concat!("ironsight-shell/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let authorization = settings.credentials.as_ref().map(|c| {
            let pair = format!("{}:{}", c.user, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Client {
            agent,
            admin_url: settings.admin_url.clone(),
            authorization,
        }
    }

    pub fn send(&self, request: &Request) -> Result<Answer, String> {
        let url = format!("{}{}", self.admin_url, request.path_and_query);
        let result = match request.method {
            Method::Get => self.with_auth(self.agent.get(&url)).call(),
            Method::Delete => self.with_auth(self.agent.delete(&url)).call(),
            Method::Post => {
                let body = request
                    .body
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_default();
                self.with_auth(self.agent.post(&url))
                    .header("Content-Type", "application/json")
                    .send(body)
            }
        };
        let mut response = result.map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_vec()
            .map_err(|e| format!("reading the answer of {}: {e}", self.admin_url))?;
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    fn with_auth<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }

    fn unreachable(&self, error: ureq::Error) -> String {
        let reason = match &error {
            ureq::Error::Io(e) => match e.kind() {
                ErrorKind::ConnectionRefused => "connection refused".to_string(),
                ErrorKind::TimedOut => "timed out".to_string(),
                _ => e.to_string(),
            },
            ureq::Error::Timeout(_) => {
                format!("no answer within {REQUEST_TIMEOUT_S} s ({error})")
            }
            ureq::Error::HostNotFound => "host not found".to_string(),
            other => other.to_string(),
        };
        format!(
            "cannot reach the admin endpoint at {}: {reason}",
            self.admin_url
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// A fresh directory for one test's files (unique per test and process).
    fn test_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ironsight-shell-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_missing_default_file_gives_the_defaults_a_named_one_an_error() {
        let dir = test_dir("missing");
        let settings = Settings::from_file(&dir.join("none.json"), false).unwrap();
        assert_eq!(settings.admin_url, ADMIN_URL_DEFAULT);
        assert!(settings.credentials.is_none());
        let e = Settings::from_file(&dir.join("none.json"), true).unwrap_err();
        assert!(e.contains("cannot open"), "{e}");
    }

    #[test]
    fn a_full_settings_file() {
        let dir = test_dir("full");
        let password = dir.join("password");
        write(&password, "s3cret\n", 0o600);
        let config = dir.join("shell.json");
        write(
            &config,
            &format!(
                r#"{{"AdminURL": "http://127.0.0.1:19089/", "User": "admin",
                    "PasswordFile": "{}"}}"#,
                password.display()
            ),
            0o644,
        );
        let settings = Settings::from_file(&config, true).unwrap();
        assert_eq!(settings.admin_url, "http://127.0.0.1:19089");
        let credentials = settings.credentials.clone().unwrap();
        assert_eq!(credentials.user, "admin");
        assert_eq!(credentials.password, "s3cret");
        assert!(!format!("{settings:?}").contains("s3cret"));
        let client = Client::new(&settings);
        // base64("admin:s3cret")
        assert_eq!(
            client.authorization.as_deref(),
            Some("Basic YWRtaW46czNjcmV0")
        );
    }

    #[test]
    fn files_others_can_change_or_read_are_refused() {
        let dir = test_dir("modes");
        let config = dir.join("shell.json");
        write(&config, "{}", 0o666);
        let e = Settings::from_file(&config, true).unwrap_err();
        assert!(e.contains("writable by others"), "{e}");
        let password = dir.join("password");
        write(&password, "pw", 0o640);
        write(
            &config,
            &format!(
                r#"{{"User": "a", "PasswordFile": "{}"}}"#,
                password.display()
            ),
            0o600,
        );
        let e = Settings::from_file(&config, true).unwrap_err();
        assert!(e.contains("readable by no one else"), "{e}");
        // A symbolic link is not followed: it could point anywhere.
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&config, &link).unwrap();
        let e = Settings::from_file(&link, true).unwrap_err();
        assert!(e.contains("cannot open"), "{e}");
    }

    #[test]
    fn bad_settings_are_named() {
        let dir = test_dir("bad");
        let config = dir.join("shell.json");
        for (text, expected) in [
            ("[]", "must be a JSON object"),
            ("{", "not JSON"),
            (r#"{"Url": "http://x"}"#, "Url is not a setting"),
            (r#"{"AdminURL": 9089}"#, "AdminURL must be a string"),
            (r#"{"AdminURL": "https://h:9089"}"#, "AdminURL is https"),
            (r#"{"AdminURL": "ftp://h"}"#, "must start with http://"),
            (
                r#"{"AdminURL": "http://u:p@h:1"}"#,
                "must be http://host:port",
            ),
            (
                r#"{"AdminURL": "http://h:1/ima"}"#,
                "must be http://host:port",
            ),
            (r#"{"User": "admin"}"#, "go together"),
            (r#"{"User": "a", "PasswordFile": "rel"}"#, "absolute path"),
        ] {
            write(&config, text, 0o600);
            let e = Settings::from_file(&config, true).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn an_unreachable_endpoint_is_named_with_the_reason() {
        // A port just released: nothing listens there.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let settings = Settings {
            admin_url: format!("http://127.0.0.1:{port}"),
            credentials: None,
            tune: TuneFiles::default(),
            source: "test".into(),
        };
        let request = Request {
            method: Method::Get,
            path_and_query: "/ima/v1/service/status".into(),
            body: None,
        };
        let e = Client::new(&settings).send(&request).unwrap_err();
        assert_eq!(
            e,
            format!(
                "cannot reach the admin endpoint at http://127.0.0.1:{port}: connection refused"
            )
        );
    }

    /// The request on the wire, seen by a one-shot HTTP server on a loopback socket: method,
    /// route, basic credentials, JSON body; and a refusal comes back as an answer, not an
    /// error.
    #[test]
    fn a_post_carries_credentials_and_json() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let length: usize = head
                .iter()
                .find_map(|h| {
                    h.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.parse().unwrap())
                })
                .unwrap();
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer = r#"{"Version":"v1","Code":"CWLNA0138","Message":"bad"}"#;
            write!(
                &stream,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
            (head, String::from_utf8(body).unwrap())
        });
        let settings = Settings {
            admin_url: format!("http://127.0.0.1:{port}"),
            credentials: Some(Credentials {
                user: "admin".into(),
                password: "pw".into(),
            }),
            tune: TuneFiles::default(),
            source: "test".into(),
        };
        let request = Request {
            method: Method::Post,
            path_and_query: "/ima/v1/configuration".into(),
            body: Some(serde_json::json!({"MessageHub": {"H": {}}})),
        };
        let answer = Client::new(&settings).send(&request).unwrap();
        assert_eq!(answer.status, 400);
        assert!(!answer.ok());
        assert!(answer.body.contains("CWLNA0138"));
        let (head, body) = server.join().unwrap();
        assert_eq!(head[0], "POST /ima/v1/configuration HTTP/1.1");
        let has = |h: &str| head.iter().any(|l| l.eq_ignore_ascii_case(h));
        assert!(has("authorization: Basic YWRtaW46cHc="), "{head:?}");
        assert!(has("content-type: application/json"), "{head:?}");
        assert_eq!(body, r#"{"MessageHub":{"H":{}}}"#);
    }
}
