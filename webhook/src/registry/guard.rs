//! The destination guard (DESIGN §4): an image name is attacker-controlled, so
//! the webhook must not be steered into link-local (cloud metadata), loopback,
//! private or cluster-internal addresses unless an operator allowed them.
//!
//! The host is judged as the HTTP stack will read it: image references are
//! normalised by `portcullis_core::reference` with the same IPv4 rules as the
//! URL parser (`127.1`, `0x7f.0.0.1` and `2130706433` are all 127.0.0.1), so
//! an IP literal is checked as the address it connects to. Names are checked
//! again inside the client's DNS resolver (so a name that resolves, or
//! re-resolves, to a refused address is refused too) and on every redirect.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use ipnet::IpNet;
use portcullis_core::reference::RegistryHost;

use super::dns::DnsResolver;

/// An operator's exception to the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedDestination {
    /// Any address inside this network.
    Network(IpNet),
    /// This registry host; on any port when none is given.
    Host {
        /// Normalised host.
        host: String,
        /// The one port allowed (`None`: all ports).
        port: Option<u16>,
    },
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
        let explicit_port = if s.starts_with('[') {
            s.contains("]:")
        } else {
            s.contains(':')
        };
        let host = RegistryHost::parse(s).map_err(|e| format!("{s:?}: {e}"))?;
        if let Some(ip) = host.ip() {
            // `10.1.2.3:5000` is an address and one port: keep the port.
            if !explicit_port {
                return Ok(Self::Network(IpNet::from(ip)));
            }
        }
        Ok(Self::Host {
            host: host.host().to_owned(),
            port: if explicit_port {
                Some(host.port().unwrap_or(443))
            } else {
                None
            },
        })
    }
}

/// Why a destination is refused (the `BlockedDestination` failure class).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);

/// Which destinations the registry client may reach.
#[derive(Debug, Clone, Default)]
pub struct DestinationGuard {
    networks: Vec<IpNet>,
    /// (host, port) exceptions; port `None` allows every port.
    hosts: Vec<(String, Option<u16>)>,
    /// Host parts of `hosts`, for the resolver (which does not see ports).
    host_names: HashSet<String>,
}

impl DestinationGuard {
    /// A guard with these exceptions.
    pub fn new(allowed: impl IntoIterator<Item = AllowedDestination>) -> Self {
        DestinationGuard::default().with_exceptions(allowed)
    }

    /// This guard with more exceptions: for the identity client only (the
    /// EKS Pod Identity agent, the GCE metadata server), never for image
    /// lookups.
    pub fn with_exceptions(&self, extra: impl IntoIterator<Item = AllowedDestination>) -> Self {
        let mut guard = self.clone();
        for a in extra {
            match a {
                AllowedDestination::Network(n) => guard.networks.push(n),
                AllowedDestination::Host { host, port } => {
                    guard.host_names.insert(host.clone());
                    guard.hosts.push((host, port));
                }
            }
        }
        guard
    }

    /// Whether a registry may be contacted, judged on its normalised host
    /// (and address, for IP literals). Names are checked again on resolution.
    pub fn check(&self, registry: &RegistryHost) -> Result<(), Blocked> {
        let port = registry.port().unwrap_or(443);
        if self
            .hosts
            .iter()
            .any(|(h, p)| h == registry.host() && p.is_none_or(|p| p == port))
        {
            return Ok(());
        }
        if let Some(ip) = registry.ip() {
            return match self.refusal(ip) {
                None => Ok(()),
                Some(kind) => Err(Blocked(format!("{registry} is a {kind} address"))),
            };
        }
        if is_internal_name(registry.host()) {
            return Err(Blocked(format!("{registry} names a cluster-internal host")));
        }
        Ok(())
    }

    /// [`check`](Self::check) for a `host[:port]` written elsewhere (a token
    /// realm, an identity endpoint); what does not parse as a host is refused.
    pub fn check_text(&self, host_port: &str) -> Result<(), Blocked> {
        let registry = RegistryHost::parse(host_port)
            .map_err(|e| Blocked(format!("{host_port:?} is not a host: {e}")))?;
        self.check(&registry)
    }

    /// The guard on a URL the HTTP stack is about to follow (a redirect).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Blocked> {
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err(Blocked(format!("{url} has no host"))),
        };
        match url.port() {
            Some(p) => self.check_text(&format!("{host}:{p}")),
            None => self.check_text(&host),
        }
    }

    /// Whether a resolved address of `name` may be contacted.
    fn resolved_allowed(&self, name: &str, ip: IpAddr) -> bool {
        self.host_names.contains(&name.to_ascii_lowercase()) || self.refusal(ip).is_none()
    }

    /// Why `ip` is refused, unless an allowed network holds it.
    fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let kind = refused_kind(ip)?;
        (!self.networks.iter().any(|n| n.contains(&ip))).then_some(kind)
    }
}

fn is_internal_name(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".svc")
        || host.ends_with(".cluster.local")
        || host.ends_with(".internal")
        || host.ends_with(".local")
        || host.ends_with(".home.arpa")
        || !host.contains('.')
}

/// Special-purpose ranges (IANA registries) a registry has no business in.
static REFUSED: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    [
        ("0.0.0.0/8", "non-routable"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "private (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/96", "IPv4-compatible"),
        ("::1/128", "loopback"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "local NAT64"),
        ("100::/64", "discard"),
        ("2001::/32", "Teredo"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("fc00::/7", "private"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ]
    .into_iter()
    .filter_map(|(net, kind)| net.parse().ok().map(|n| (n, kind)))
    .collect()
});

/// Why an address is refused, or `None` when it is a public one.
fn refused_kind(ip: IpAddr) -> Option<&'static str> {
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return refused_kind(IpAddr::V4(v4));
    }
    REFUSED
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, kind)| *kind)
}

/// Refusal raised inside the resolver; found again in the error chain.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves only to refused addresses ({kinds})")]
pub struct BlockedResolution {
    /// The name.
    pub name: String,
    kinds: String,
}

/// DNS resolution (asynchronous and bounded, see `dns.rs`) that drops refused
/// addresses.
#[derive(Clone)]
pub struct GuardedResolver {
    /// The guard.
    pub guard: Arc<DestinationGuard>,
    /// The resolver.
    pub dns: DnsResolver,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let dns = self.dns.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            // Overrides (`--resolve`) come back from here too, so they are
            // judged like any DNS answer.
            let addrs = dns.resolve(&name).await?;
            let (ok, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs
                .into_iter()
                .partition(|a| guard.resolved_allowed(&name, a.ip()));
            if ok.is_empty() && !refused.is_empty() {
                let mut kinds: Vec<&str> = refused
                    .iter()
                    .filter_map(|a| refused_kind(a.ip()))
                    .collect();
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

/// True for addresses no registry should resolve to; for tests and docs.
pub fn is_refused(ip: IpAddr) -> bool {
    refused_kind(ip).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allowed: &[&str]) -> DestinationGuard {
        DestinationGuard::new(allowed.iter().map(|a| a.parse().unwrap()))
    }

    fn check(g: &DestinationGuard, registry: &str) -> Result<(), Blocked> {
        // As the gate sees them: through the image identity.
        let image = portcullis_core::reference::ImageRef::parse(&format!("{registry}/app"))
            .unwrap_or_else(|e| panic!("{registry}: {e}"));
        g.check(image.registry_host())
    }

    #[test]
    fn refuses_internal_and_special_addresses_by_default() {
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
            "LOCALHOST",
            "registry.kube-system.svc",
            "registry.kube-system.svc.cluster.local:5000",
            "0.0.0.0",
            // Numeric forms the URL parser turns into loopback and metadata.
            "127.1:5000",
            "127.0.1:5000",
            "0x7f.0.0.1:5000",
            "0177.0.0.1:5000",
            "2130706433:5000",
            "169.254.43518",
            // Ranges that were missing.
            "[64:ff9b::a9fe:a9fe]",
            "[2002:7f00:1::]",
            "[::7f00:1]",
            "[fec0::1]",
            "198.18.0.1",
            "192.0.0.170",
            "240.0.0.1",
            "255.255.255.255",
            "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
        ] {
            assert!(check(&g, registry).is_err(), "{registry}");
        }
        for registry in [
            "docker.io",
            "ghcr.io",
            "8.8.8.8",
            "myregistry.azurecr.io:443",
            "[2606:4700::1111]",
        ] {
            assert!(check(&g, registry).is_ok(), "{registry}");
        }
    }

    #[test]
    fn exceptions_by_network_and_by_host() {
        let g = guard(&[
            "127.0.0.0/8",
            "registry.kube-system.svc:5000",
            "Registry.Local",
        ]);
        assert!(check(&g, "127.0.0.1:5000").is_ok());
        assert!(check(&g, "127.1:5000").is_ok());
        assert!(check(&g, "registry.kube-system.svc:5000").is_ok());
        assert!(check(&g, "Registry.Kube-System.Svc:5000").is_ok());
        assert!(check(&g, "registry.kube-system.svc:6000").is_err());
        assert!(check(&g, "registry.local:7000").is_ok());
        assert_eq!(
            check(&g, "169.254.169.254").unwrap_err().to_string(),
            "169.254.169.254 is a link-local address"
        );
        // An exception for one address and port is exactly that.
        let g = guard(&["10.1.2.3:5000"]);
        assert!(check(&g, "10.1.2.3:5000").is_ok());
        assert!(check(&g, "10.1.2.3:5001").is_err());
    }

    #[test]
    fn redirects_and_realms_are_judged_on_the_parsed_url() {
        let g = guard(&[]);
        for url in [
            "https://127.1:5000/v2/",
            "https://0x7f.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://metadata.google.internal/",
        ] {
            let u = reqwest::Url::parse(url).unwrap();
            assert!(g.check_url(&u).is_err(), "{url}");
        }
        assert!(
            g.check_url(&reqwest::Url::parse("https://storage.example.com/blob").unwrap())
                .is_ok()
        );
        assert!(g.check_text("not a host").is_err());
    }

    #[test]
    fn bad_exceptions_are_refused() {
        assert!("".parse::<AllowedDestination>().is_err());
        assert!("10.0.0.0/33".parse::<AllowedDestination>().is_err());
        assert!("a b".parse::<AllowedDestination>().is_err());
        assert!("host:99999".parse::<AllowedDestination>().is_err());
    }
}
