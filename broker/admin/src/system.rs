//! What the operating system says about the broker's process and machine (Linux's /proc), and
//! times written as Amlen writes them. Read on the API's threads, never by a shard.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The machine's memory and the process's, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub total: u64,
    /// MemAvailable: what the kernel could give without swapping.
    pub free: u64,
    pub process_virtual: u64,
    pub process_resident: u64,
}

pub fn memory() -> Memory {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut pages = statm
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    let page = page_size();
    Memory {
        total: field("MemTotal"),
        free: field("MemAvailable"),
        process_virtual: pages.next().unwrap_or(0) * page,
        process_resident: pages.next().unwrap_or(0) * page,
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// CPU time (user and system) of thread `tid` of this process, in seconds.
pub fn thread_cpu_s(tid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow its last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat(5); `fields` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / ticks)
}

/// The machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// `at` as ISO 8601 in UTC with milliseconds (`2026-11-30T14:05:00.123Z`), as Amlen writes
/// its times.
pub fn iso_time(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Amlen's UpTimeDescription: `1 days 2 hours 3 minutes 4 seconds`.
pub fn uptime_text(up: Duration) -> String {
    let s = up.as_secs();
    format!(
        "{} days {} hours {} minutes {} seconds",
        s / 86_400,
        s % 86_400 / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_8601() {
        assert_eq!(iso_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_065_200_123);
        assert_eq!(iso_time(t), "2026-11-30T19:00:00.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso_time(leap), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            uptime_text(Duration::from_secs(90_061)),
            "1 days 1 hours 1 minutes 1 seconds"
        );
    }

    /// Proves the process's own figures are read: it has memory, and this thread has a CPU time.
    #[test]
    fn the_process_is_measured() {
        let m = memory();
        assert!(m.total > 0 && m.process_resident > 0);
        assert!(m.process_virtual >= m.process_resident);
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        assert!(thread_cpu_s(tid).is_some());
        assert!(thread_cpu_s(-1).is_none());
    }
}
