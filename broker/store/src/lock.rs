//! The data directory's `LOCK` file: one broker per directory. Two brokers appending to the same
//! segments would interleave their frames, and each would read the other's as corruption.
//!
//! The lock is `flock(LOCK_EX | LOCK_NB)` on `<data dir>/LOCK`, held for as long as the
//! [`DataDirLock`] lives; the kernel drops it when the process ends, however it ends, so a
//! `kill -9` leaves no stale lock behind. The file holds the holder's pid, for the error the next
//! broker prints. The file descriptor is close-on-exec, so a child process never inherits it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

pub const LOCK_FILE: &str = "LOCK";

/// The longest pid file content read back: a pid and a newline, with room to spare.
const PID_BYTES_MAX: u64 = 32;

/// The data directory, held.
#[derive(Debug)]
pub struct DataDirLock {
    _file: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}: the data directory is held by another ironsight ({})", path.display(), holder_text(*holder))]
    Held { path: PathBuf, holder: Option<u32> },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn holder_text(holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!("pid {pid}"),
        None => "its pid is not written yet".to_owned(),
    }
}

/// Takes `<data_dir>/LOCK`, or says who holds it.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock, LockError> {
    let path = data_dir.join(LOCK_FILE);
    let io_error = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    // Not truncated on open: until the lock is ours, the pid in it is the holder's.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error)?;
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let holder = read_pid(&mut file);
            return Err(LockError::Held { path, holder });
        }
        Err((_, errno)) => return Err(io_error(errno.into())),
    };
    file.set_len(0).map_err(io_error)?;
    file.rewind().map_err(io_error)?;
    writeln!(file, "{}", std::process::id()).map_err(io_error)?;
    Ok(DataDirLock { _file: file })
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(PID_BYTES_MAX).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::process::{Child, Command, Stdio};

    /// Where the child process of `a_second_process_is_refused` takes the lock.
    const CHILD_DIR_ENV: &str = "IRONSIGHT_STORE_LOCK_CHILD_DIR";

    /// Proves the lock excludes a second taker, names the holder's pid and the file, and is
    /// free again once dropped.
    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_data_dir(dir.path()).unwrap();
        let path = dir.path().join(LOCK_FILE);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        match lock_data_dir(dir.path()) {
            Err(LockError::Held { path: p, holder }) => {
                assert_eq!((p, holder), (path.clone(), Some(std::process::id())));
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(lock);
        lock_data_dir(dir.path()).unwrap();
    }

    /// Kills the child on the way out of a failed test; a child that exited is not touched.
    struct Reaped(Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            if self.0.try_wait().ok().flatten().is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }

    /// Proves another process holding the directory is refused with the path and its pid, that
    /// flock(1) sees the same lock, and that the lock is free once that process ends. The other
    /// process is this test binary again, running `lock_holder_child`.
    #[test]
    fn a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let exe = std::env::current_exe().unwrap();
        let mut child = Reaped(
            Command::new(exe)
                .args(["--exact", "lock::tests::lock_holder_child", "--nocapture"])
                .env(CHILD_DIR_ENV, dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // Kept open until the child ends: it reports its test result on it.
        let mut stdout = io::BufReader::new(child.0.stdout.take().unwrap());
        let locked = stdout
            .by_ref()
            .lines()
            .map_while(Result::ok)
            .any(|line| line == "locked");
        assert!(locked, "the child process ended without taking the lock");

        let error = lock_data_dir(dir.path()).unwrap_err();
        let message = error.to_string();
        match error {
            LockError::Held { path: p, holder } => {
                assert_eq!((p, holder), (path.clone(), Some(child.0.id())));
            }
            other => panic!("expected Held, got {other:?}"),
        }
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("pid {}", child.0.id())),
            "{message}"
        );
        let flock = Command::new("flock")
            .arg("-n")
            .arg(&path)
            .arg("true")
            .status();
        assert_eq!(flock.unwrap().code(), Some(1), "flock(1) took a held lock");

        drop(child.0.stdin.take());
        io::copy(&mut stdout, &mut io::sink()).unwrap();
        assert!(child.0.wait().unwrap().success());
        lock_data_dir(dir.path()).unwrap();
    }

    /// The child of `a_second_process_is_refused`: takes the lock, says so, and holds it until
    /// its standard input closes. Run on its own (without the variable) it does nothing.
    #[test]
    fn lock_holder_child() {
        let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
            return;
        };
        let _lock = lock_data_dir(Path::new(&dir)).unwrap();
        println!("locked");
        let mut rest = String::new();
        io::stdin().read_to_string(&mut rest).unwrap();
    }
}
