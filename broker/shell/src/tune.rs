//! `tune show`: the appliance's kernel tuning as it stands, read from the machine itself (the
//! broker's API does not know it). Two files, both named by the settings file alone
//! ([`crate::client::Settings`]), never by what is typed:
//! - the CPU layout `ironsight-tune` wrote at boot (`kernel-tuning/ironsight-tune`), the one
//!   source of truth that the broker's unit reads too: which CPUs run shards, which keep the
//!   network card's interrupts;
//! - the sysctl drop-in (`kernel-tuning/90-ironsight.conf`), each setting shown beside the value
//!   the kernel reports now under `/proc/sys`, so that a setting something else overrode stands
//!   out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// ironsight-tune's output (`LAYOUT_OUT` there).
pub const LAYOUT_FILE_DEFAULT: &str = "/run/ironsight/cpu-layout.env";
/// Where image/build installs kernel-tuning/90-ironsight.conf.
pub const SYSCTL_FILE_DEFAULT: &str = "/etc/sysctl.d/90-ironsight.conf";
pub const PROC_SYS: &str = "/proc/sys";
/// Both files are a few kilobytes; anything larger is not theirs.
const FILE_BYTES_MAX: u64 = 64 * 1024;

/// Where `tune show` reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TuneFiles {
    pub layout: PathBuf,
    pub sysctl: PathBuf,
}

impl Default for TuneFiles {
    fn default() -> TuneFiles {
        TuneFiles {
            layout: PathBuf::from(LAYOUT_FILE_DEFAULT),
            sysctl: PathBuf::from(SYSCTL_FILE_DEFAULT),
        }
    }
}

/// The text of `tune show`; `proc_sys` is `/proc/sys` but in tests.
pub fn show(files: &TuneFiles, proc_sys: &Path) -> Result<String, String> {
    let mut out = String::new();
    layout(&mut out, &files.layout);
    let settings = read(&files.sysctl).map_err(|why| {
        format!(
            "cannot read the kernel settings {}: {why}",
            files.sysctl.display()
        )
    })?;
    let rows: Vec<(String, String, Option<String>)> = sysctl_settings(&settings)
        .map(|(key, wanted)| {
            let now = read(&proc_sys.join(key.replace('.', "/")))
                .ok()
                .map(|v| normalize(&v));
            (key.to_string(), normalize(wanted), now)
        })
        .collect();
    let _ = writeln!(out, "Kernel settings ({}):", files.sysctl.display());
    let key_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(7);
    let wanted_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(6);
    let _ = writeln!(
        out,
        "  {:key_width$}  {:wanted_width$}  in force",
        "setting", "wanted"
    );
    let mut differ = 0;
    for (key, wanted, now) in &rows {
        let (now, note) = match now {
            Some(now) if now == wanted => (now.as_str(), ""),
            Some(now) => {
                differ += 1;
                (now.as_str(), "  DIFFERS")
            }
            None => {
                differ += 1;
                ("-", "  NOT IN THIS KERNEL")
            }
        };
        let _ = writeln!(
            out,
            "  {key:key_width$}  {wanted:wanted_width$}  {now}{note}"
        );
    }
    let _ = write!(out, "{} settings, {differ} not as wanted.", rows.len());
    Ok(out)
}

fn layout(out: &mut String, path: &Path) {
    let text = match read(path) {
        Ok(text) => text,
        Err(why) => {
            let _ = writeln!(
                out,
                "CPU layout: {} {why}: ironsight-tune has not run, and the broker's shards use \
                 every CPU.",
                path.display()
            );
            return;
        }
    };
    let _ = writeln!(
        out,
        "CPU layout ({}, written by ironsight-tune at boot):",
        path.display()
    );
    let value = |name: &str| {
        text.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .next_back()
            .unwrap_or("(not set)")
            .to_string()
    };
    let _ = writeln!(
        out,
        "  shards        {}  (IRONSIGHT_CORES)",
        value("IRONSIGHT_CORES")
    );
    let _ = writeln!(
        out,
        "  housekeeping  {}  (IRONSIGHT_HOUSEKEEPING: the network card's interrupts, RPS, irqbalance)",
        value("IRONSIGHT_HOUSEKEEPING")
    );
}

/// The `key = value` lines of a sysctl.d file: comments (`#`, `;`) and blank lines skipped, a
/// leading `-` (ignore failure) dropped; a key that is not a plain dotted name is skipped,
/// since it cannot name a file under /proc/sys.
fn sysctl_settings(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            return None;
        }
        let (key, value) = line.split_once('=')?;
        let key = key.trim().trim_start_matches('-');
        let plain = !key.is_empty()
            && key.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        plain.then_some((key, value.trim()))
    })
}

/// The kernel separates the parts of `tcp_mem` or `ip_local_port_range` with tabs; the file
/// with spaces.
fn normalize(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn read(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_string(),
        _ => e.to_string(),
    })?;
    let mut text = String::new();
    file.take(FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > FILE_BYTES_MAX {
        return Err(format!("is longer than {FILE_BYTES_MAX} bytes"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, TuneFiles) {
        let dir = tempfile::tempdir().unwrap();
        let proc_sys = dir.path().join("proc");
        std::fs::create_dir_all(proc_sys.join("net/ipv4")).unwrap();
        std::fs::create_dir_all(proc_sys.join("fs")).unwrap();
        std::fs::write(proc_sys.join("fs/nr_open"), "1100000\n").unwrap();
        std::fs::write(
            proc_sys.join("net/ipv4/ip_local_port_range"),
            "1024\t65535\n",
        )
        .unwrap();
        std::fs::write(proc_sys.join("net/ipv4/tcp_fin_timeout"), "60\n").unwrap();
        let files = TuneFiles {
            layout: dir.path().join("cpu-layout.env"),
            sysctl: dir.path().join("90-ironsight.conf"),
        };
        std::fs::write(
            &files.sysctl,
            "# why\nfs.nr_open = 1100000\n\n; also a comment\n\
             net.ipv4.ip_local_port_range = 1024 65535\n-net.ipv4.tcp_fin_timeout=15\n\
             net.netfilter.nf_conntrack_max = 2000000\n../../etc/passwd = x\n",
        )
        .unwrap();
        (dir, files)
    }

    /// Proves each setting is shown with the kernel's value, tabs and spaces alike, one
    /// overridden and one the kernel lacks called out and counted, and a key that is not a
    /// dotted name never read.
    #[test]
    fn settings_beside_the_kernels_values() {
        let (dir, files) = setup();
        let text = show(&files, &dir.path().join("proc")).unwrap();
        let words = |key: &str| -> Vec<String> {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(key))
                .unwrap();
            line.split_whitespace().skip(1).map(String::from).collect()
        };
        assert_eq!(words("fs.nr_open"), ["1100000", "1100000"], "{text}");
        assert_eq!(
            words("net.ipv4.ip_local_port_range"),
            ["1024", "65535", "1024", "65535"]
        );
        assert_eq!(
            words("net.ipv4.tcp_fin_timeout"),
            ["15", "60", "DIFFERS"],
            "{text}"
        );
        let conntrack = words("net.netfilter.nf_conntrack_max");
        assert_eq!(
            conntrack,
            ["2000000", "-", "NOT", "IN", "THIS", "KERNEL"],
            "{text}"
        );
        assert!(!text.contains("passwd"), "{text}");
        assert!(text.ends_with("4 settings, 2 not as wanted."), "{text}");
    }

    /// Proves the layout is shown from ironsight-tune's file, and its absence explained.
    #[test]
    fn the_layout_or_why_there_is_none() {
        let (dir, files) = setup();
        let proc_sys = dir.path().join("proc");
        let text = show(&files, &proc_sys).unwrap();
        assert!(text.starts_with("CPU layout: "), "{text}");
        assert!(
            text.contains("does not exist: ironsight-tune has not run"),
            "{text}"
        );
        std::fs::write(
            &files.layout,
            "# written by ironsight-tune at boot\nIRONSIGHT_CORES=1-3\nIRONSIGHT_HOUSEKEEPING=0\n",
        )
        .unwrap();
        let text = show(&files, &proc_sys).unwrap();
        assert!(
            text.contains("  shards        1-3  (IRONSIGHT_CORES)"),
            "{text}"
        );
        assert!(
            text.contains("  housekeeping  0  (IRONSIGHT_HOUSEKEEPING"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_settings_file_is_an_error() {
        let (dir, mut files) = setup();
        files.sysctl = dir.path().join("nothing.conf");
        let err = show(&files, &dir.path().join("proc")).unwrap_err();
        assert!(err.contains("nothing.conf: does not exist"), "{err}");
    }
}
