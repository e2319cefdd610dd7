//! The parent's command pipe, read without blocking the event loop: complete lines only.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};

/// Longest command line accepted (the expected counts of a large fan-in are the longest).
pub const LINE_MAX: usize = 64 * 1024 * 1024;

pub struct StdinLines {
    stdin: std::io::Stdin,
    buf: Vec<u8>,
}

impl StdinLines {
    pub fn new() -> std::io::Result<StdinLines> {
        let stdin = std::io::stdin();
        super::reactor::set_nonblocking(stdin.as_fd())?;
        Ok(StdinLines {
            stdin,
            buf: Vec::new(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stdin.as_fd()
    }

    /// Complete lines read so far, and whether the pipe reached its end.
    pub fn read_lines(&mut self) -> (Vec<String>, bool) {
        let mut eof = false;
        let mut chunk = [0u8; 8192];
        loop {
            match self.stdin.lock().read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
            if self.buf.len() > LINE_MAX {
                eof = true;
                break;
            }
        }
        (split_lines(&mut self.buf), eof)
    }
}

/// Takes every complete line off the front of `buf`.
fn split_lines(buf: &mut Vec<u8>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(at) = buf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = buf.drain(..=at).collect();
        lines.push(String::from_utf8_lossy(&line[..at]).into_owned());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves only complete lines are taken and a partial one waits for its end.
    #[test]
    fn lines() {
        let mut buf = b"one\ntwo\nthr".to_vec();
        assert_eq!(split_lines(&mut buf), ["one", "two"]);
        assert_eq!(buf, b"thr");
        buf.extend_from_slice(b"ee\n");
        assert_eq!(split_lines(&mut buf), ["three"]);
        assert!(buf.is_empty());
    }
}
