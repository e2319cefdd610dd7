//! A policy's filters: which clients it applies to. Every filter a policy gives must match;
//! a filter it does not give matches everyone (Amlen's "Usage notes" of every policy type).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::pattern::Pattern;
use super::subject::Subject;

/// The most addresses and ranges one `ClientAddress` lists (Amlen's limit).
pub const CLIENT_ADDRESSES_MAX: usize = 20;

/// Addresses from `low` to `high`, both included, of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AddressRange {
    low: IpAddr,
    high: IpAddr,
}

/// `ClientAddress`: addresses, ranges `low-high` and CIDR blocks, IPv4 or IPv6 (IPv6 in brackets
/// as Amlen writes them, or bare), at most [`CLIENT_ADDRESSES_MAX`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressFilter {
    ranges: Box<[AddressRange]>,
}

impl AddressFilter {
    /// `None` for every address: `*`, or `0.0.0.0` or `[::]` alone, as Amlen reads them.
    pub fn parse(text: &str) -> Result<Option<AddressFilter>, String> {
        let entries: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        match entries[..] {
            [] => return Err("lists no address".into()),
            ["*" | "0.0.0.0" | "[::]"] => return Ok(None),
            _ if entries.contains(&"*") => {
                return Err("holds '*', which stands alone (every address) or not at all".into())
            }
            _ if entries.len() > CLIENT_ADDRESSES_MAX => {
                return Err(format!(
                    "lists {} addresses or ranges; at most {CLIENT_ADDRESSES_MAX}",
                    entries.len()
                ))
            }
            _ => {}
        }
        let ranges = entries
            .iter()
            .map(|e| range(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(AddressFilter {
            ranges: ranges.into_boxed_slice(),
        }))
    }

    pub fn admits(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.ranges
            .iter()
            .any(|r| r.low.is_ipv4() == addr.is_ipv4() && r.low <= addr && addr <= r.high)
    }
}

fn address(text: &str) -> Result<IpAddr, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|a| a.to_canonical())
        .map_err(|_| format!("\"{text}\" is not an IPv4 or IPv6 address"))
}

fn range(entry: &str) -> Result<AddressRange, String> {
    if let Some((net, bits)) = entry.split_once('/') {
        return cidr(entry, address(net.trim())?, bits.trim());
    }
    let (low, high) = match entry.split_once('-') {
        Some((low, high)) => (address(low.trim())?, address(high.trim())?),
        None => {
            let a = address(entry)?;
            (a, a)
        }
    };
    if low.is_ipv4() != high.is_ipv4() {
        return Err(format!("\"{entry}\" mixes an IPv4 and an IPv6 address"));
    }
    if low > high {
        return Err(format!("\"{entry}\" must go from low to high"));
    }
    Ok(AddressRange { low, high })
}

fn cidr(entry: &str, net: IpAddr, bits: &str) -> Result<AddressRange, String> {
    let width: u32 = if net.is_ipv4() { 32 } else { 128 };
    let prefix: u32 = match bits.parse() {
        Ok(p) if p <= width => p,
        _ => {
            return Err(format!(
                "\"{entry}\": the prefix length must be 0 to {width}"
            ))
        }
    };
    let (value, host_bits) = match net {
        IpAddr::V4(a) => (u128::from(u32::from(a)), width - prefix),
        IpAddr::V6(a) => (u128::from(a), width - prefix),
    };
    let host_mask = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    if value & host_mask != 0 {
        return Err(format!(
            "\"{entry}\" has bits set after its prefix; write the network's first address"
        ));
    }
    let to_addr = |v: u128| match net {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(v).expect("an IPv4 value"))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    };
    Ok(AddressRange {
        low: to_addr(value),
        high: to_addr(value | host_mask),
    })
}

/// The filters of one policy; `None` is a filter the policy does not give.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFilters {
    pub client_id: Option<Pattern>,
    pub address: Option<AddressFilter>,
    /// Needs an authenticated user: never matches a client without one.
    pub user_id: Option<Pattern>,
    /// Matches when any of the user's groups (nested ones included) matches.
    pub group_id: Option<Pattern>,
    /// Needs a verified client certificate.
    pub common_name: Option<Pattern>,
}

impl ClientFilters {
    /// The attribute of the first filter that `s` fails; `None` when every filter matches.
    pub fn refuses(&self, s: &Subject) -> Option<&'static str> {
        let name_fails = |p: &Option<Pattern>, value: Option<&str>| {
            p.as_ref()
                .is_some_and(|p| !value.is_some_and(|v| p.matches(v, s)))
        };
        if name_fails(&self.client_id, Some(s.client_id)) {
            return Some("ClientID");
        }
        if self.address.as_ref().is_some_and(|a| !a.admits(s.addr)) {
            return Some("ClientAddress");
        }
        if name_fails(&self.user_id, s.user_id()) {
            return Some("UserID");
        }
        if let Some(p) = &self.group_id {
            if !s.groups().iter().any(|g| p.matches(g, s)) {
                return Some("GroupID");
            }
        }
        if name_fails(&self.common_name, s.common_name) {
            return Some("CommonNames");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;
    use crate::policy::PatternKind;

    fn addr(text: &str) -> AddressFilter {
        AddressFilter::parse(text).unwrap().unwrap()
    }

    #[test]
    fn addresses_ranges_and_cidr() {
        let f = addr("192.0.2.32, 192.0.2.0-192.0.2.10,10.0.0.0/8, [2001:db8::]/32, [::1]");
        for yes in [
            "192.0.2.32",
            "192.0.2.5",
            "10.255.0.1",
            "2001:db8:1::7",
            "::1",
        ] {
            assert!(f.admits(yes.parse().unwrap()), "{yes}");
        }
        for no in ["192.0.2.33", "192.0.2.11", "11.0.0.0", "2001:db9::1", "::2"] {
            assert!(!f.admits(no.parse().unwrap()), "{no}");
        }
        // A dual-stack listener's IPv4 client is an IPv4 client.
        assert!(f.admits("::ffff:10.1.2.3".parse().unwrap()));
        for any in ["*", " * ", "0.0.0.0", "[::]"] {
            assert_eq!(AddressFilter::parse(any).unwrap(), None, "{any}");
        }
        assert!(addr("0.0.0.0/0").admits("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "",
            "10.0.0.1-10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "10.0.0.1-[::1]",
            "localhost",
            "10.0.0.*",
            "*, 10.0.0.1",
        ] {
            assert!(AddressFilter::parse(bad).is_err(), "{bad:?}");
        }
        let many = vec!["10.0.0.1"; CLIENT_ADDRESSES_MAX + 1].join(",");
        assert!(AddressFilter::parse(&many)
            .unwrap_err()
            .contains("at most 20"));
    }

    fn name(text: &str) -> Option<Pattern> {
        Some(Pattern::parse(text, PatternKind::Name).unwrap())
    }

    /// Proves every given filter must match, and that user and group filters never match a
    /// client without a user, nor a common-name filter one without a certificate.
    #[test]
    fn every_given_filter_must_match() {
        let alice = Principal::new("alice", ["ops".into(), "eu-west".into()]);
        let s = |principal, common_name| Subject {
            client_id: "dev-1",
            principal,
            common_name,
            addr: "10.0.0.7".parse().unwrap(),
        };
        let filters = ClientFilters {
            client_id: name("dev-*"),
            address: Some(addr("10.0.0.0/24")),
            user_id: name("ali*"),
            group_id: name("eu-*"),
            common_name: None,
        };
        assert_eq!(filters.refuses(&s(Some(&alice), None)), None);
        assert_eq!(filters.refuses(&s(None, None)), Some("UserID"));
        let only_groups = ClientFilters {
            group_id: name("*"),
            ..ClientFilters::default()
        };
        assert_eq!(only_groups.refuses(&s(None, None)), Some("GroupID"));
        let cn = ClientFilters {
            common_name: name("device.example.com"),
            ..ClientFilters::default()
        };
        assert_eq!(cn.refuses(&s(None, None)), Some("CommonNames"));
        assert_eq!(cn.refuses(&s(None, Some("device.example.com"))), None);
        assert_eq!(
            cn.refuses(&s(None, Some("*.example.com"))),
            Some("CommonNames")
        );
        let wrong_net = ClientFilters {
            address: Some(addr("10.0.1.0/24")),
            ..ClientFilters::default()
        };
        assert_eq!(
            wrong_net.refuses(&s(Some(&alice), None)),
            Some("ClientAddress")
        );
    }
}
