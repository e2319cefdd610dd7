//! The configuration file, written so that it is always whole: a new version goes to a
//! temporary file in the same directory, is synced, renamed over the old one, and the
//! directory synced, so a crash leaves the old file or the new one, never half of either.
//! It keeps the old file's permissions (it holds password hashes: a new one is 0600).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ironsight_config::document;
use ironsight_config::Config;
use serde_json::{Map, Value};

/// Reads a configuration file as a document and checks it; both are kept, the document for the
/// next change (a change is merged into what the operator wrote, not into every default).
pub fn read(path: &Path) -> Result<(Map<String, Value>, Config), String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(doc)) => doc,
        Ok(_) => return Err(format!("{}: must be a JSON object", path.display())),
        Err(e) => return Err(format!("{}: not valid JSON: {e}", path.display())),
    };
    let config = Config::load(path)?;
    Ok((doc, config))
}

/// Writes `doc` to `path` atomically, pretty-printed.
pub fn write(path: &Path, doc: &Map<String, Value>) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(doc).expect("a JSON document serializes");
    text.push('\n');
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} names no file", path.display()))?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mode = fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let written = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temporary)?;
        // The mode given to open is masked by the umask; the old file's is restored exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        File::open(dir)?.sync_all()
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&temporary);
        format!("cannot write {}: {e}", path.display())
    })
}

/// `ironsight --set-admin-password`: hashes `password` into the file's AdminUserPassword
/// (and, when given, sets AdminUserID), checked whole before the file is replaced.
pub fn set_admin_password(path: &Path, user: Option<&str>, password: &[u8]) -> Result<(), String> {
    let (mut doc, _) = read(path)?;
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let verifier =
        ironsight_auth::scram::hash_password(password, ironsight_auth::scram::ITERATIONS_DEFAULT)?;
    let mut change = Map::new();
    change.insert("AdminUserPassword".into(), verifier.to_string().into());
    if let Some(user) = user {
        change.insert("AdminUserID".into(), user.into());
    }
    document::merge(&mut doc, &change).map_err(|e| e.error.to_string())?;
    Config::parse(&Value::Object(doc.clone()).to_string())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    write(path, &doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ironsight-admin-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Proves a write replaces the file whole, keeps its permissions and leaves no temporary
    /// file behind.
    #[test]
    fn writes_are_whole_and_keep_permissions() {
        let dir = scratch("write");
        let path = dir.join("ironsight.json");
        fs::write(&path, ironsight_config::DEFAULT_CONFIG).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let (mut doc, _) = read(&path).unwrap();
        doc.insert(
            "Broker".into(),
            serde_json::json!({"MaxInflightMessages": 7}),
        );
        write(&path, &doc).unwrap();
        let (again, config) = read(&path).unwrap();
        assert_eq!(again, doc);
        assert_eq!(config.broker.max_inflight_messages, 7);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ironsight.json"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Proves the admin password is stored as a verifier that checks the password, and that a
    /// file that does not load is left alone.
    #[test]
    fn the_admin_password_is_stored_hashed() {
        let dir = scratch("password");
        let path = dir.join("c.json");
        fs::write(&path, ironsight_config::DEFAULT_CONFIG).unwrap();
        set_admin_password(&path, Some("root"), b"s3cret").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cret"));
        let (_, config) = read(&path).unwrap();
        assert_eq!(config.admin.user_id, "root");
        let verifier = config.admin.password.unwrap();
        assert!(ironsight_auth::scram::verify_password(&verifier, b"s3cret"));
        assert!(!ironsight_auth::scram::verify_password(&verifier, b"other"));
        fs::write(&path, "{").unwrap();
        assert!(set_admin_password(&path, None, b"x").is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "{");
        assert!(set_admin_password(&dir.join("none.json"), None, b"x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
