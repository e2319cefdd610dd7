//! Device registrations: which push token wakes which MQTT client.
//!
//! The app publishes `{"platform":"apns"|"fcm"|"webhook","token":"..."}` on the registration
//! topic, whose levels name the user and the client (default
//! `APP/REGISTER/${UserID}/${ClientID}`); the broker's TopicPolicy lets a user publish there
//! only under their own user id and client id, so the gateway can believe the levels. An empty
//! payload removes the client's registration. Registrations are checked strictly (known fields
//! only, bounded sizes, a token's characters) and kept in a file written atomically (a
//! temporary file, fsync, rename), at most `MaxDevices` of them.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The largest registration payload, in bytes.
pub const REGISTRATION_BYTES_MAX: usize = 8 * 1024;
/// The longest token, in bytes (FCM's are about 160, APNs's 64 hex digits today; Apple says
/// not to rely on that length).
pub const TOKEN_BYTES_MAX: usize = 4096;
/// The longest user id or client id kept, in bytes (MQTT allows 65,535; MessageSight 1,024).
pub const ID_BYTES_MAX: usize = 1024;
/// The largest token file read back, in bytes: MaxDevices of the largest records would not
/// fit, but a file this large is not one this gateway wrote with a sane configuration.
const FILE_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

/// Which service a token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Apns,
    Fcm,
    Webhook,
}

impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Platform::Apns => "apns",
            Platform::Fcm => "fcm",
            Platform::Webhook => "webhook",
        }
    }
}

/// One device: its client's user, its service and its token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Device {
    #[serde(rename = "UserID")]
    pub user_id: String,
    pub platform: Platform,
    pub token: String,
}

/// The registration topic with its two variable levels found.
#[derive(Clone, Debug)]
pub struct Pattern {
    levels: Vec<Level>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Level {
    Literal(String),
    UserId,
    ClientId,
}

impl Pattern {
    /// `APP/REGISTER/${UserID}/${ClientID}`: literal levels without wildcards, and exactly one
    /// level `${UserID}` and one `${ClientID}`.
    pub fn parse(pattern: &str) -> Result<Pattern, String> {
        let levels: Vec<Level> = pattern
            .split('/')
            .map(|level| match level {
                "${UserID}" => Ok(Level::UserId),
                "${ClientID}" => Ok(Level::ClientId),
                _ if level.contains(['+', '#', '$', '\0']) => Err(format!(
                    "level {level:?}: only ${{UserID}} and ${{ClientID}} may vary, and no level may hold a wildcard"
                )),
                _ => Ok(Level::Literal(level.into())),
            })
            .collect::<Result<_, _>>()?;
        let count = |l: &Level| levels.iter().filter(|x| *x == l).count();
        if count(&Level::UserId) != 1 || count(&Level::ClientId) != 1 {
            return Err("needs exactly one level ${UserID} and one ${ClientID}".into());
        }
        Ok(Pattern { levels })
    }

    /// The filter the gateway subscribes to: the variable levels as `+`.
    pub fn filter(&self) -> String {
        let levels: Vec<&str> = self
            .levels
            .iter()
            .map(|l| match l {
                Level::Literal(s) => s.as_str(),
                Level::UserId | Level::ClientId => "+",
            })
            .collect();
        levels.join("/")
    }

    /// The user id and client id a topic names, or `None` when it does not match.
    pub fn ids<'t>(&self, topic: &'t str) -> Option<(&'t str, &'t str)> {
        let mut user = None;
        let mut client = None;
        let mut parts = topic.split('/');
        for level in &self.levels {
            let part = parts.next()?;
            match level {
                Level::Literal(s) if s == part => {}
                Level::Literal(_) => return None,
                Level::UserId => user = Some(part),
                Level::ClientId => client = Some(part),
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some((user?, client?))
    }
}

/// What an app publishes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    platform: Platform,
    token: String,
}

/// Why a registration was refused (the app's mistake, logged; the gateway goes on).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("payload of {0} bytes, more than {REGISTRATION_BYTES_MAX}")]
    TooLarge(usize),
    #[error("not a registration: {0}")]
    Json(String),
    #[error("the token is empty or longer than {TOKEN_BYTES_MAX} bytes")]
    TokenLength,
    #[error("an APNs token is hexadecimal digits")]
    ApnsTokenNotHex,
    #[error("a token holds only letters, digits and . _ - : ~")]
    TokenCharacters,
    #[error("the user id or client id is empty or longer than {ID_BYTES_MAX} bytes")]
    IdLength,
    #[error("{0} devices registered already (MaxDevices)")]
    Full(usize),
}

/// Parses and checks a registration payload for `user_id`'s client.
pub fn parse(user_id: &str, payload: &[u8]) -> Result<Device, RegistrationError> {
    if payload.len() > REGISTRATION_BYTES_MAX {
        return Err(RegistrationError::TooLarge(payload.len()));
    }
    let r: Registration =
        serde_json::from_slice(payload).map_err(|e| RegistrationError::Json(e.to_string()))?;
    if r.token.is_empty() || r.token.len() > TOKEN_BYTES_MAX {
        return Err(RegistrationError::TokenLength);
    }
    // The token goes into a URL path (APNs) or a JSON string: a narrow alphabet keeps it from
    // meaning anything else there.
    if r.platform == Platform::Apns && !r.token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RegistrationError::ApnsTokenNotHex);
    }
    let token_byte = |b: u8| b.is_ascii_alphanumeric() || b"._-:~".contains(&b);
    if !r.token.bytes().all(token_byte) {
        return Err(RegistrationError::TokenCharacters);
    }
    Ok(Device {
        user_id: user_id.into(),
        platform: r.platform,
        token: r.token,
    })
}

/// The file's form, as read.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct File {
    version: u32,
    devices: HashMap<String, Device>,
}

/// The file's form, as written (borrowing the registry's table).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct FileOut<'r> {
    version: u32,
    devices: &'r HashMap<String, Device>,
}
const FILE_VERSION: u32 = 1;

/// The registered devices, by client id.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    max_devices: usize,
    devices: HashMap<String, Device>,
    /// Changed since the last save.
    dirty: bool,
}

impl Registry {
    /// The registry kept in `path` (empty if the file does not exist yet).
    pub fn open(path: &Path, max_devices: usize) -> Result<Registry, String> {
        let devices = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
            Ok(m) if m.len() > FILE_BYTES_MAX => {
                return Err(format!(
                    "{}: larger than {FILE_BYTES_MAX} bytes",
                    path.display()
                ))
            }
            Ok(_) => {
                let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let file: File = serde_json::from_slice(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if file.version != FILE_VERSION {
                    return Err(format!(
                        "{}: version {}, this gateway writes {FILE_VERSION}",
                        path.display(),
                        file.version
                    ));
                }
                file.devices
            }
        };
        if devices.len() > max_devices {
            return Err(format!(
                "{} holds {} devices, more than MaxDevices {max_devices}",
                path.display(),
                devices.len()
            ));
        }
        Ok(Registry {
            path: path.into(),
            max_devices,
            devices,
            dirty: false,
        })
    }

    /// How many devices are registered.
    pub fn count(&self) -> usize {
        self.devices.len()
    }

    pub fn get(&self, client_id: &str) -> Option<&Device> {
        self.devices.get(client_id)
    }

    /// Registers (or replaces) `client_id`'s device.
    pub fn register(&mut self, client_id: &str, device: Device) -> Result<(), RegistrationError> {
        if client_id.is_empty()
            || client_id.len() > ID_BYTES_MAX
            || device.user_id.len() > ID_BYTES_MAX
        {
            return Err(RegistrationError::IdLength);
        }
        if !self.devices.contains_key(client_id) && self.devices.len() >= self.max_devices {
            return Err(RegistrationError::Full(self.devices.len()));
        }
        if self.devices.get(client_id) != Some(&device) {
            self.devices.insert(client_id.into(), device);
            self.dirty = true;
        }
        Ok(())
    }

    /// Removes `client_id`'s device; with `token`, only while it still has that token (a
    /// service's "invalid token" must not remove a newer registration).
    pub fn remove(&mut self, client_id: &str, token: Option<&str>) -> bool {
        let matches = self
            .devices
            .get(client_id)
            .is_some_and(|d| token.is_none_or(|t| d.token == t));
        if matches {
            self.devices.remove(client_id);
            self.dirty = true;
        }
        matches
    }

    /// The file's bytes if anything changed since the last snapshot, for `write_file`
    /// outside the registry's lock; `changed` again if writing them failed.
    pub fn snapshot(&mut self) -> Option<Vec<u8>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        let file = FileOut {
            version: FILE_VERSION,
            devices: &self.devices,
        };
        Some(serde_json::to_vec(&file).expect("strings and enums always serialize"))
    }

    /// Marks the registry as changed (its last snapshot was not written).
    pub fn changed(&mut self) {
        self.dirty = true;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it (`<name>.tmp`), flushed to
/// disk, renamed over it, and the directory flushed, so a crash leaves the old file or the
/// new one, never half of one.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the pattern's filter and what it takes out of a topic, and the patterns refused.
    #[test]
    fn pattern() {
        let p = Pattern::parse("APP/REGISTER/${UserID}/${ClientID}").unwrap();
        assert_eq!(p.filter(), "APP/REGISTER/+/+");
        assert_eq!(
            p.ids("APP/REGISTER/alice/phone-1"),
            Some(("alice", "phone-1"))
        );
        assert_eq!(p.ids("APP/REGISTER/alice"), None);
        assert_eq!(p.ids("APP/REGISTER/alice/phone/x"), None);
        assert_eq!(p.ids("APP/OTHER/alice/phone"), None);
        let swapped = Pattern::parse("R/${ClientID}/u/${UserID}").unwrap();
        assert_eq!(swapped.ids("R/c/u/bob"), Some(("bob", "c")));
        for bad in [
            "APP/+/${UserID}/${ClientID}",
            "APP/${UserID}",
            "A/${UserID}/${UserID}/${ClientID}",
            "A/#/${UserID}/${ClientID}",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    /// Proves registrations are checked strictly.
    #[test]
    fn registration_checks() {
        let ok = parse("alice", br#"{"platform":"apns","token":"00ff"}"#).unwrap();
        assert_eq!(ok.platform, Platform::Apns);
        assert_eq!(ok.user_id, "alice");
        assert!(parse("a", br#"{"platform":"fcm","token":"abc:DEF_1-2"}"#).is_ok());
        let refused = [
            (
                &br#"{"platform":"apns","token":"xyz"}"#[..],
                RegistrationError::ApnsTokenNotHex,
            ),
            (
                br#"{"platform":"fcm","token":""}"#,
                RegistrationError::TokenLength,
            ),
            (
                br#"{"platform":"fcm","token":"a/b"}"#,
                RegistrationError::TokenCharacters,
            ),
            (
                br#"{"platform":"fcm","token":"a\"b"}"#,
                RegistrationError::TokenCharacters,
            ),
        ];
        for (payload, error) in refused {
            assert_eq!(parse("a", payload).unwrap_err(), error);
        }
        for payload in [
            &br#"{"platform":"sms","token":"1"}"#[..],
            br#"{"platform":"fcm","token":"1","extra":1}"#,
            br#"{"platform":"fcm"}"#,
            b"not json",
        ] {
            assert!(matches!(
                parse("a", payload),
                Err(RegistrationError::Json(_))
            ));
        }
        let long = format!(
            r#"{{"platform":"fcm","token":"{}"}}"#,
            "a".repeat(TOKEN_BYTES_MAX + 1)
        );
        assert_eq!(
            parse("a", long.as_bytes()).unwrap_err(),
            RegistrationError::TokenLength
        );
        let huge = vec![b' '; REGISTRATION_BYTES_MAX + 1];
        assert!(matches!(
            parse("a", &huge),
            Err(RegistrationError::TooLarge(_))
        ));
    }

    fn device(token: &str) -> Device {
        Device {
            user_id: "u".into(),
            platform: Platform::Fcm,
            token: token.into(),
        }
    }

    /// Proves the registry keeps its bound, removes only the token reported, and reads back
    /// what it saved.
    #[test]
    fn registry_bound_removal_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut r = Registry::open(&path, 2).unwrap();
        r.register("c1", device("t1")).unwrap();
        r.register("c2", device("t2")).unwrap();
        assert_eq!(
            r.register("c3", device("t3")),
            Err(RegistrationError::Full(2))
        );
        r.register("c2", device("t2b")).unwrap();
        assert!(
            !r.remove("c2", Some("t2")),
            "a stale token leaves the new one"
        );
        assert!(r.remove("c2", Some("t2b")));
        write_file(&path, &r.snapshot().unwrap()).unwrap();
        assert!(r.snapshot().is_none(), "nothing changed since");
        assert!(!dir.path().join("tokens.json.tmp").exists());
        let back = Registry::open(&path, 2).unwrap();
        assert_eq!(back.count(), 1);
        assert_eq!(back.get("c1"), Some(&device("t1")));
        assert!(
            Registry::open(&path, 0).is_err(),
            "more devices than the bound"
        );
    }
}
