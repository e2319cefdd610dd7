//! Which CPUs get a shard: `--cores N` (the first N CPUs this process may run on) or a CPU list
//! such as `0,2-3`. The default is every CPU in the process's affinity mask.

use std::collections::BTreeSet;

use ironsight_core::settings::SHARDS_MAX;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreSpec {
    Count(usize),
    List(Vec<usize>),
}

impl std::str::FromStr for CoreSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if !text.contains([',', '-']) {
            let n: usize = text
                .parse()
                .map_err(|_| format!("\"{text}\" is neither a core count nor a CPU list"))?;
            if n == 0 {
                return Err("--cores needs at least one core".into());
            }
            return Ok(CoreSpec::Count(n));
        }
        let mut cpus = BTreeSet::new();
        for part in text.split(',') {
            let bad = || format!("\"{part}\" in \"{text}\" is not a CPU number or range");
            match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi): (usize, usize) = (
                        lo.trim().parse().map_err(|_| bad())?,
                        hi.trim().parse().map_err(|_| bad())?,
                    );
                    if lo > hi {
                        return Err(bad());
                    }
                    cpus.extend(lo..=hi);
                }
                None => {
                    cpus.insert(part.trim().parse().map_err(|_| bad())?);
                }
            }
        }
        Ok(CoreSpec::List(cpus.into_iter().collect()))
    }
}

/// CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `set` is a live cpu_set_t of `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    // SAFETY: CPU_ISSET reads within the set for indices below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// The CPUs to pin shards to, one shard each.
pub fn resolve(spec: Option<&CoreSpec>) -> Result<Vec<usize>, String> {
    let allowed = allowed_cpus();
    match spec {
        None => Ok(allowed),
        Some(CoreSpec::Count(n)) if *n <= allowed.len() => Ok(allowed[..*n].to_vec()),
        Some(CoreSpec::Count(n)) => Err(format!(
            "--cores {n}: this process may run on {} CPUs only",
            allowed.len()
        )),
        Some(CoreSpec::List(cpus)) => match cpus.iter().find(|c| !allowed.contains(c)) {
            Some(cpu) => Err(format!(
                "--cores: CPU {cpu} is not available to this process (allowed: {allowed:?})"
            )),
            None => Ok(cpus.clone()),
        },
    }
}

/// The CPU of each shard: one shard per CPU, or `shards` of them round robin over `cpus`.
pub fn spread(cpus: Vec<usize>, shards: Option<usize>) -> Result<Vec<usize>, String> {
    match shards {
        None => Ok(cpus),
        Some(n) if n == 0 || n > SHARDS_MAX => {
            Err(format!("--shards {n}: between 1 and {SHARDS_MAX}"))
        }
        Some(n) => Ok(cpus.iter().copied().cycle().take(n).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_lists_parse() {
        assert_eq!("2".parse(), Ok(CoreSpec::Count(2)));
        assert_eq!("0,2-3".parse(), Ok(CoreSpec::List(vec![0, 2, 3])));
        assert_eq!("3-3,1".parse(), Ok(CoreSpec::List(vec![1, 3])));
        assert!("0".parse::<CoreSpec>().is_err());
        assert!("3-1".parse::<CoreSpec>().is_err());
        assert!("a,b".parse::<CoreSpec>().is_err());
    }

    #[test]
    fn resolve_stays_within_the_affinity_mask() {
        let allowed = allowed_cpus();
        assert!(!allowed.is_empty());
        assert_eq!(resolve(Some(&CoreSpec::Count(1))).unwrap(), [allowed[0]]);
        assert!(resolve(Some(&CoreSpec::Count(allowed.len() + 1))).is_err());
        assert!(resolve(Some(&CoreSpec::List(vec![100_000]))).is_err());
    }

    #[test]
    fn shards_spread_round_robin_over_cpus() {
        assert_eq!(spread(vec![0, 1], None).unwrap(), [0, 1]);
        assert_eq!(spread(vec![0, 1], Some(5)).unwrap(), [0, 1, 0, 1, 0]);
        assert_eq!(spread(vec![3, 7], Some(1)).unwrap(), [3]);
        assert!(spread(vec![0], Some(0)).is_err());
        assert!(spread(vec![0], Some(SHARDS_MAX + 1)).is_err());
    }
}
