//! The dead-letter log: one JSON line per push that could not be delivered (when, which
//! client, which service, why, after how many attempts), never the token and never a topic.
//! Bounded: past `DeadLetterMaxBytes` the file becomes `<name>.1` (replacing the older one).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::service::Push;

pub struct DeadLetter {
    path: PathBuf,
    max_bytes: u64,
    file: Option<(File, u64)>,
}

impl DeadLetter {
    pub fn new(path: PathBuf, max_bytes: u64) -> DeadLetter {
        DeadLetter {
            path,
            max_bytes,
            file: None,
        }
    }

    /// Appends a record; a failure to write is returned for the caller to log (a full disk
    /// must not stop pushes).
    pub fn record(&mut self, push: &Push, reason: &str, attempts: u32) -> std::io::Result<()> {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut line = json!({
            "Time": time,
            "ClientId": push.client_id,
            "UserID": push.device.user_id,
            "Platform": push.device.platform.name(),
            "MessageCount": push.notification.message_count(),
            "Attempts": attempts,
            "Reason": reason,
        })
        .to_string();
        line.push('\n');
        let (file, size) = match &mut self.file {
            Some((_, size)) if *size + line.len() as u64 > self.max_bytes => {
                self.file = None;
                let mut old = self.path.as_os_str().to_owned();
                old.push(".1");
                std::fs::rename(&self.path, old)?;
                self.open()?
            }
            Some(open) => open,
            None => self.open()?,
        };
        file.write_all(line.as_bytes())?;
        *size += line.len() as u64;
        Ok(())
    }

    fn open(&mut self) -> std::io::Result<&mut (File, u64)> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let size = file.metadata()?.len();
        Ok(self.file.insert((file, size)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Notification;
    use crate::registry::{Device, Platform};

    /// Proves records are JSON lines without the token, and the file turns into `<name>.1`
    /// when the next line would pass the bound.
    #[test]
    fn lines_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.log");
        let push = Push {
            client_id: "c".into(),
            device: Device {
                user_id: "u".into(),
                platform: Platform::Apns,
                token: "feedface".into(),
            },
            notification: Notification {
                client_id: "c".into(),
                user_id: "u".into(),
                messages_arrived: vec![],
            },
        };
        let mut dead = DeadLetter::new(path.clone(), 200);
        dead.record(&push, "APNs 410: Unregistered", 1).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["Reason"], "APNs 410: Unregistered");
        assert_eq!(line["Platform"], "apns");
        assert!(!text.contains("feedface"), "{text}");
        dead.record(&push, "again", 2).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("dead.log.1")).unwrap(),
            text
        );
    }
}
