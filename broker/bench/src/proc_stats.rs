//! CPU and memory of processes: the tool's own (getrusage) and the broker's (/proc/PID).

use serde::{Deserialize, Serialize};

/// CPU seconds used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub user_s: f64,
    pub sys_s: f64,
}

impl Cpu {
    pub fn total_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// This process plus every child it has waited for (the workers).
pub fn self_and_children() -> Cpu {
    let mut cpu = Cpu::default();
    for who in [
        nix::sys::resource::UsageWho::RUSAGE_SELF,
        nix::sys::resource::UsageWho::RUSAGE_CHILDREN,
    ] {
        if let Ok(usage) = nix::sys::resource::getrusage(who) {
            cpu.user_s += timeval_s(usage.user_time());
            cpu.sys_s += timeval_s(usage.system_time());
        }
    }
    cpu
}

fn timeval_s(tv: nix::sys::time::TimeVal) -> f64 {
    tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6
}

/// A broker's CPU seconds (utime + stime) and resident memory, read from /proc.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub cpu_s: f64,
    pub rss_kb: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`.
pub fn sample(pid: u32) -> Result<Sample, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("broker pid {pid}: /proc/{pid}/stat: {e}"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("broker pid {pid}: /proc/{pid}/status: {e}"))?;
    let ticks = cpu_ticks(&stat).ok_or_else(|| format!("broker pid {pid}: unreadable stat"))?;
    // SAFETY: sysconf with a valid name has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Sample {
        cpu_s: ticks as f64 / hz,
        rss_kb: vm_rss_kb(&status).unwrap_or(0),
    })
}

/// utime + stime (fields 14 and 15) of a stat line. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from after its last ')'.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After the name: field 3 is the state; utime is field 14, i.e. the 12th after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn vm_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the stat parser counts fields after a command name with spaces and parentheses.
    #[test]
    fn parses_stat_and_status() {
        let stat = "1234 (iron (sight) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("garbage"), None);
        let status = "Name:\tironsight\nVmPeak:\t  9000 kB\nVmRSS:\t  4321 kB\n";
        assert_eq!(vm_rss_kb(status), Some(4321));
    }

    /// Proves this process can be sampled like a broker, and getrusage answers.
    #[test]
    fn samples_self() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kb > 0);
        assert!(self_and_children().total_s() >= 0.0);
        assert!(sample(u32::MAX).is_err());
    }
}
