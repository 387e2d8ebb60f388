//! The destination guard (DESIGN §4): an image name is attacker-controlled, so
//! the webhook must not be steered into link-local (cloud metadata), loopback or
//! cluster-internal addresses unless an operator allowed them explicitly.
//!
//! The check runs where the address is known: on IP literals before a request,
//! and inside the HTTP client's DNS resolver for names, so a name that resolves
//! (or re-resolves) to a forbidden address is refused too.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;

/// An operator's exception to the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedDestination {
    /// Any address inside this network.
    Network(IpNet),
    /// This registry (`host` or `host:port`, as written in image names).
    Host(String),
}

impl FromStr for AllowedDestination {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an allowed destination is a CIDR (10.0.0.0/8) or HOST[:PORT]".into());
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Self::Network(net));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Network(IpNet::from(ip)));
        }
        if s.contains('/') || s.chars().any(char::is_whitespace) {
            return Err(format!("{s:?} is neither a CIDR nor HOST[:PORT]"));
        }
        Ok(Self::Host(s.to_ascii_lowercase()))
    }
}

/// Which destinations the registry client may reach.
#[derive(Debug, Clone, Default)]
pub struct DestinationGuard {
    networks: Vec<IpNet>,
    /// `host` or `host:port` entries.
    hosts: HashSet<String>,
    /// Host parts of `hosts`, for the resolver (which does not see ports).
    host_names: HashSet<String>,
}

impl DestinationGuard {
    /// A guard with these exceptions.
    pub fn new(allowed: impl IntoIterator<Item = AllowedDestination>) -> Self {
        let mut guard = DestinationGuard::default();
        for a in allowed {
            match a {
                AllowedDestination::Network(n) => guard.networks.push(n),
                AllowedDestination::Host(h) => {
                    guard.host_names.insert(split_host(&h).0.to_owned());
                    guard.hosts.insert(h);
                }
            }
        }
        guard
    }

    /// Whether the registry `host[:port]` may be contacted, judged on its name
    /// (and its address, when it is an IP literal). Names are checked again on
    /// resolution.
    pub fn check_registry(&self, registry: &str) -> Result<(), String> {
        let registry = registry.to_ascii_lowercase();
        let (host, _) = split_host(&registry);
        if self.hosts.contains(&registry) || self.hosts.contains(host) {
            return Ok(());
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return if self.ip_allowed(ip) {
                Ok(())
            } else {
                Err(format!("{registry} is a {} address", blocked_kind(ip)))
            };
        }
        if is_internal_name(host) {
            return Err(format!("{registry} names a cluster-internal host"));
        }
        Ok(())
    }

    /// Whether a resolved address of `name` may be contacted.
    fn resolved_allowed(&self, name: &str, ip: IpAddr) -> bool {
        self.host_names.contains(&name.to_ascii_lowercase()) || self.ip_allowed(ip)
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        blocked_kind_opt(ip).is_none() || self.networks.iter().any(|n| n.contains(&ip))
    }
}

fn split_host(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[') {
        // [v6]:port
        if let Some(end) = rest.find(']') {
            let port = rest[end + 1..].strip_prefix(':');
            return (&registry[..end + 2], port);
        }
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (registry, None),
    }
}

fn is_internal_name(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".svc")
        || host.ends_with(".cluster.local")
        || host.ends_with(".internal")
        || !host.contains('.')
}

fn blocked_kind(ip: IpAddr) -> &'static str {
    blocked_kind_opt(ip).unwrap_or("permitted")
}

/// Why an address is refused, or `None` when it is a public one.
fn blocked_kind_opt(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
                Some("private")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || o[0] == 0 {
                Some("non-routable")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return blocked_kind_opt(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if (seg[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if (seg[0] & 0xfe00) == 0xfc00 {
                Some("private")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("non-routable")
            } else {
                None
            }
        }
    }
}

/// Refusal raised inside the resolver; found again in the error chain.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves only to refused addresses ({kinds})")]
pub struct BlockedResolution {
    /// The name.
    pub name: String,
    kinds: String,
}

/// DNS resolution that drops refused addresses.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Arc<DestinationGuard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let (ok, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs
                .into_iter()
                .partition(|a| guard.resolved_allowed(&name, a.ip()));
            if ok.is_empty() && !refused.is_empty() {
                let mut kinds: Vec<&str> = refused.iter().map(|a| blocked_kind(a.ip())).collect();
                kinds.dedup();
                return Err(Box::new(BlockedResolution {
                    name,
                    kinds: kinds.join(", "),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allowed: &[&str]) -> DestinationGuard {
        DestinationGuard::new(allowed.iter().map(|a| a.parse().unwrap()))
    }

    #[test]
    fn refuses_internal_addresses_by_default() {
        let g = guard(&[]);
        for registry in [
            "127.0.0.1:5000",
            "169.254.169.254",
            "10.0.0.7:443",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "[::1]:5000",
            "[fe80::1]",
            "[::ffff:127.0.0.1]:80",
            "localhost:5000",
            "registry.kube-system.svc",
            "registry.kube-system.svc.cluster.local:5000",
            "0.0.0.0",
        ] {
            assert!(g.check_registry(registry).is_err(), "{registry}");
        }
        for registry in [
            "docker.io",
            "ghcr.io",
            "8.8.8.8",
            "myregistry.azurecr.io:443",
        ] {
            assert!(g.check_registry(registry).is_ok(), "{registry}");
        }
    }

    #[test]
    fn exceptions_by_network_and_by_host() {
        let g = guard(&["127.0.0.0/8", "registry.kube-system.svc:5000"]);
        assert!(g.check_registry("127.0.0.1:5000").is_ok());
        assert!(g.check_registry("registry.kube-system.svc:5000").is_ok());
        assert!(g.check_registry("registry.kube-system.svc:6000").is_err());
        assert!(g.check_registry("169.254.169.254").is_err());
        assert_eq!(
            g.check_registry("169.254.169.254").unwrap_err(),
            "169.254.169.254 is a link-local address"
        );
    }

    #[test]
    fn bad_exceptions_are_refused() {
        assert!("".parse::<AllowedDestination>().is_err());
        assert!("10.0.0.0/33".parse::<AllowedDestination>().is_err());
        assert!("a b".parse::<AllowedDestination>().is_err());
    }
}
