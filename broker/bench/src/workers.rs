//! Which worker process runs which clients, and whether a run fits this machine: at most
//! [`Machine::sockets_per_worker`] sockets per process, enough local ports, and a warning where
//! Linux's connect() would slow the tool down.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::spec::{Machine, Role, Spec, SpecError};

/// The clients one worker runs: for each role, a range of that role's indexes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub worker: u32,
    pub groups: Vec<(Role, Range<u32>)>,
}

impl Assignment {
    pub fn sockets(&self) -> u64 {
        self.groups.iter().map(|(_, r)| r.len() as u64).sum()
    }
}

/// Refuses runs that cannot fit: too many sockets for one worker, or for the local port range.
pub(crate) fn check_capacity(spec: &Spec, machine: Machine) -> Result<(), SpecError> {
    let total = spec.scenario.total_clients();
    for a in partition(spec) {
        if a.sockets() > machine.sockets_per_worker {
            let procs_needed = if spec.scenario.subscribers_together() {
                // The group's members stay together whatever --procs is; more procs only move
                // the publishers away.
                (spec.procs as u64 + 1).max(2)
            } else {
                total.div_ceil(machine.sockets_per_worker)
            };
            return Err(SpecError::TooManySockets {
                worker: a.worker,
                sockets: a.sockets(),
                max: machine.sockets_per_worker,
                procs_needed,
            });
        }
    }
    let addrs = (spec.client.source_addrs as u64).max(1);
    let targets = spec.client.ports.len() as u64;
    let capacity = machine.local_ports * addrs * targets;
    if total > capacity {
        return Err(SpecError::LocalPorts {
            connections: total,
            capacity,
            ports_per_addr: machine.local_ports,
            addrs,
            targets,
        });
    }
    Ok(())
}

/// Things that will not stop a run but will distort it, for the report's `errors`.
///
/// Linux gives connect() even ports first; once more than half the local port range is in use
/// from one source address to one destination, every connect() scans the range (about 1 ms
/// each here), and that time stalls the worker's loop and inflates the CONNACK latency of every
/// connection waiting behind it.
pub fn warnings(spec: &Spec, machine: Machine) -> Vec<String> {
    let addrs = (spec.client.source_addrs as u64).max(1);
    let per_pair = spec
        .scenario
        .total_clients()
        .div_ceil(addrs * spec.client.ports.len() as u64);
    let half = machine.local_ports / 2;
    if per_pair <= half {
        return Vec::new();
    }
    let needed = spec
        .scenario
        .total_clients()
        .div_ceil(half.max(1) * spec.client.ports.len() as u64);
    vec![format!(
        "warning: {per_pair} connections per source address and port exceed half the local port \
         range ({half}); Linux's connect() port search slows down past that and delays other \
         connections (see connect_calls_slow): use --source-addrs {needed} or more"
    )]
}

/// Splits every role evenly between the workers, in contiguous ranges; the members of a shared
/// group all go to worker 0, and so does the retained publisher.
pub fn partition(spec: &Spec) -> Vec<Assignment> {
    let procs = spec.procs;
    let together = spec.scenario.subscribers_together();
    (0..procs)
        .map(|worker| Assignment {
            worker,
            groups: spec
                .scenario
                .groups()
                .into_iter()
                .map(|(role, n)| {
                    let single =
                        role == Role::RetainedPublisher || (together && role == Role::Subscriber);
                    let range = if single {
                        if worker == 0 {
                            0..n
                        } else {
                            0..0
                        }
                    } else {
                        split(n, procs, worker)
                    };
                    (role, range)
                })
                .filter(|(_, range)| !range.is_empty())
                .collect(),
        })
        .collect()
}

/// The `part`-th of `parts` near-equal contiguous ranges of `0..n`.
fn split(n: u32, parts: u32, part: u32) -> Range<u32> {
    let (n, parts, part) = (n as u64, parts as u64, part as u64);
    let start = n * part / parts;
    let end = n * (part + 1) / parts;
    start as u32..end as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{build_args, TEST_MACHINE as MACHINE};

    /// Proves a worker over the socket limit is refused with --procs named, and that enough
    /// procs make the same run fit.
    #[test]
    fn socket_limit_names_procs() {
        let err = build_args(&["conn", "-n", "30000", "--source-addrs", "2"]).unwrap_err();
        assert!(err.to_string().contains("--procs 2"), "{err}");
        assert!(
            build_args(&["conn", "-n", "30000", "--procs", "2", "--source-addrs", "2"]).is_ok()
        );
        // 30,000 connections do not fit 28,232 local ports without a second source address.
        let ports = build_args(&["conn", "-n", "30000", "--procs", "2"]).unwrap_err();
        assert!(ports.to_string().contains("--source-addrs"), "{ports}");
    }

    /// Proves the port-search warning appears past half the local port range per source
    /// address and port, and names the --source-addrs that avoids it.
    #[test]
    fn port_search_warning() {
        assert!(warnings(&build_args(&["conn", "-n", "14000"]).unwrap(), MACHINE).is_empty());
        let w = warnings(&build_args(&["conn", "-n", "15000"]).unwrap(), MACHINE);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("--source-addrs 2"), "{}", w[0]);
        let spread = build_args(&["conn", "-n", "15000", "--source-addrs", "2"]).unwrap();
        assert!(warnings(&spread, MACHINE).is_empty());
    }

    /// Proves the partition covers every client exactly once, evenly, with shared groups and
    /// the retained publisher in worker 0.
    #[test]
    fn partition_covers_everything() {
        let spec = build_args(&[
            "fanin",
            "--publishers",
            "7",
            "--subscribers",
            "5",
            "--procs",
            "3",
        ])
        .unwrap();
        let parts = partition(&spec);
        let subs: Vec<_> = parts
            .iter()
            .map(|a| {
                a.groups
                    .iter()
                    .find(|g| g.0 == Role::Subscriber)
                    .map(|g| g.1.clone())
            })
            .collect();
        assert_eq!(subs, [Some(0..1), Some(1..3), Some(3..5)]);
        let sockets: u64 = parts.iter().map(Assignment::sockets).sum();
        assert_eq!(sockets, 12);

        let shared = build_args(&[
            "fanin",
            "--publishers",
            "4",
            "--subscribers",
            "5",
            "--procs",
            "2",
            "--shared",
            "g",
        ])
        .unwrap();
        let parts = partition(&shared);
        assert_eq!(
            parts[0].groups,
            [(Role::Subscriber, 0..5), (Role::Publisher, 0..2)]
        );
        assert_eq!(parts[1].groups, [(Role::Publisher, 2..4)]);

        let retained = build_args(&["retained", "--procs", "2", "--subscribers", "4"]).unwrap();
        let parts = partition(&retained);
        assert_eq!(
            parts[0].groups,
            [(Role::RetainedPublisher, 0..1), (Role::Subscriber, 0..2)]
        );
        assert_eq!(parts[1].groups, [(Role::Subscriber, 2..4)]);
    }
}
