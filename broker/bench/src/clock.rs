//! CLOCK_MONOTONIC in nanoseconds. Every timestamp the tool writes or compares is one of these:
//! the clock is shared by every process on the host, so a subscriber in one worker process can
//! subtract a send time written by a publisher in another.

/// Nanoseconds per second, for conversions at the edges.
pub const NS_PER_S: u64 = 1_000_000_000;

/// Nanoseconds since an arbitrary fixed point (boot), the same for every process on the host.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    // Both fields are non-negative for CLOCK_MONOTONIC.
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

/// Seconds (as given on the command line) to nanoseconds.
pub fn s_to_ns(seconds: f64) -> u64 {
    assert!(seconds >= 0.0 && seconds.is_finite(), "seconds: {seconds}");
    (seconds * NS_PER_S as f64) as u64
}

/// Nanoseconds to seconds, for reports.
pub fn ns_to_s(ns: u64) -> f64 {
    ns as f64 / NS_PER_S as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the clock does not go backwards and conversions agree.
    #[test]
    fn monotonic_and_conversions() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert_eq!(s_to_ns(1.5), 1_500_000_000);
        assert_eq!(ns_to_s(250_000_000), 0.25);
    }
}
