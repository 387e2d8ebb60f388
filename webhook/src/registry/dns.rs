//! Asynchronous, bounded DNS resolution for the registry client.
//!
//! The standard resolver path (`getaddrinfo` on Tokio's blocking pool) holds
//! one thread per pending lookup and cannot be cancelled: 5,000 image names
//! whose hosts never resolve held 512 threads and delayed shutdown by over a
//! minute. hickory-resolver speaks DNS itself on the async runtime, so a
//! lookup is a future that a timeout or shutdown simply drops; a semaphore
//! bounds how many run at once.
//!
//! `--resolve HOST=ADDR` overrides answer here, before any DNS traffic, so
//! the destination guard judges the overriding address like any other.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use tokio::sync::Semaphore;

/// How names are resolved.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// Name servers to ask (UDP, then TCP); empty: the system's
    /// (`/etc/resolv.conf`, with its search domains and `ndots`).
    pub servers: Vec<SocketAddr>,
    /// Time limit of one lookup, waiting for a slot included.
    pub timeout: Duration,
    /// Lookups in flight at once.
    pub max_in_flight: usize,
    /// Names answered without DNS (`--resolve`).
    pub overrides: Vec<ResolveOverride>,
}

/// `HOST=ADDR`: a name resolved to a fixed address, like curl's `--resolve`,
/// for tests and air-gapped installations. `ADDR` is `IP` or `IP:PORT`
/// (`[IPv6]:PORT`); a port replaces the scheme's default port for URLs that
/// name none (a URL's own port is always kept: the resolver sees names,
/// not ports). The destination guard judges `ADDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOverride {
    /// The name, lower case, without a trailing dot.
    pub host: String,
    /// The address (port 0: the URL's port).
    pub addr: SocketAddr,
}

impl FromStr for ResolveOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, addr) = s
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected HOST=IP or HOST=IP:PORT"))?;
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid_name = !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_name {
            return Err(format!("{s:?}: {host:?} is not a DNS name"));
        }
        let addr = addr.trim();
        let addr = match addr.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => SocketAddr::new(
                addr.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{s:?}: {addr:?} is not IP or IP:PORT"))?,
                0,
            ),
        };
        Ok(ResolveOverride { host, addr })
    }
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            max_in_flight: 64,
            overrides: Vec::new(),
        }
    }
}

/// A lookup that did not give addresses.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// No answer in time (the name server may be slow or silent).
    #[error("resolving {name}: no answer within {ms} ms")]
    Timeout {
        /// The name.
        name: String,
        /// The limit.
        ms: u128,
    },
    /// The name server answered with an error or no addresses.
    #[error("resolving {name}: {message}")]
    Failed {
        /// The name.
        name: String,
        /// Resolver's message.
        message: String,
    },
}

/// The resolver; cheap to clone.
#[derive(Clone)]
pub struct DnsResolver {
    inner: Arc<TokioResolver>,
    slots: Arc<Semaphore>,
    timeout: Duration,
    overrides: Arc<HashMap<String, SocketAddr>>,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl DnsResolver {
    /// A resolver with `settings`. Reads the system configuration unless
    /// servers are given (and then still takes its search domains).
    pub fn new(settings: &DnsSettings) -> Result<Self, String> {
        let (system, mut options, servers) = match hickory_resolver::system_conf::read_system_conf()
        {
            Ok((config, options)) => (config, options, settings.servers.clone()),
            Err(e) => {
                // No /etc/resolv.conf (a bare container, a sandbox): the given
                // servers, else the local resolver, as glibc assumes.
                let servers = if settings.servers.is_empty() {
                    tracing::warn!(error = %e, "no system DNS configuration; asking 127.0.0.1:53 (set --dns-server)");
                    vec![SocketAddr::from(([127, 0, 0, 1], 53))]
                } else {
                    settings.servers.clone()
                };
                (ResolverConfig::new(), Default::default(), servers)
            }
        };
        let config = if servers.is_empty() {
            system
        } else {
            let servers: Vec<NameServerConfig> = servers
                .iter()
                .flat_map(|a| {
                    [
                        NameServerConfig::new(*a, Protocol::Udp),
                        NameServerConfig::new(*a, Protocol::Tcp),
                    ]
                })
                .collect();
            ResolverConfig::from_parts(system.domain().cloned(), system.search().to_vec(), servers)
        };
        options.timeout = settings.timeout;
        options.attempts = 1;
        options.cache_size = 1024;
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(options)
                .build();
        Ok(DnsResolver {
            inner: Arc::new(resolver),
            slots: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            timeout: settings.timeout,
            overrides: Arc::new(
                settings
                    .overrides
                    .iter()
                    .map(|o| (o.host.clone(), o.addr))
                    .collect(),
            ),
        })
    }

    /// The socket addresses of `name`: an override (its port, 0 = the URL's),
    /// else the DNS answer with port 0.
    pub async fn resolve(&self, name: &str) -> Result<Vec<SocketAddr>, DnsError> {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(addr) = self.overrides.get(&key) {
            return Ok(vec![*addr]);
        }
        Ok(self
            .lookup(name)
            .await?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, 0))
            .collect())
    }

    /// The addresses of `name`, within the timeout.
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let timeout = || DnsError::Timeout {
            name: name.to_owned(),
            ms: self.timeout.as_millis(),
        };
        let work = async {
            let _slot = self.slots.acquire().await.map_err(|e| DnsError::Failed {
                name: name.to_owned(),
                message: e.to_string(),
            })?;
            self.inner
                .lookup_ip(name)
                .await
                .map(|l| l.iter().collect::<Vec<IpAddr>>())
                .map_err(|e| DnsError::Failed {
                    name: name.to_owned(),
                    message: e.to_string(),
                })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| timeout())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_like_curl_resolve() {
        let o: ResolveOverride = "Team.AzureCR.io.=127.0.0.1:8443".parse().unwrap();
        assert_eq!(o.host, "team.azurecr.io");
        assert_eq!(o.addr, "127.0.0.1:8443".parse().unwrap());
        let o: ResolveOverride = "registry.example.com=::1".parse().unwrap();
        assert_eq!(o.addr.port(), 0);
        let o: ResolveOverride = "registry.example.com=[::1]:5000".parse().unwrap();
        assert_eq!(o.addr, "[::1]:5000".parse().unwrap());
        for bad in [
            "no-equals",
            "=127.0.0.1",
            "a b=127.0.0.1",
            "x.io=host",
            "x..io=1.2.3.4",
        ] {
            assert!(bad.parse::<ResolveOverride>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_override_answers_without_dns() {
        let dns = DnsResolver::new(&DnsSettings {
            // A name server that is not there: only the override can answer.
            servers: vec!["127.0.0.1:9".parse().unwrap()],
            timeout: Duration::from_millis(200),
            overrides: vec![
                "api.ecr.us-east-1.amazonaws.com=127.0.0.1:4443"
                    .parse()
                    .unwrap(),
            ],
            ..DnsSettings::default()
        })
        .unwrap();
        assert_eq!(
            dns.resolve("API.ecr.us-east-1.amazonaws.com.")
                .await
                .unwrap(),
            vec!["127.0.0.1:4443".parse::<SocketAddr>().unwrap()]
        );
        assert!(dns.resolve("sts.us-east-1.amazonaws.com").await.is_err());
    }
}
