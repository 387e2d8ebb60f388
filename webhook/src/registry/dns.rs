//! Asynchronous, bounded DNS resolution for the registry client.
//!
//! The standard resolver path (`getaddrinfo` on Tokio's blocking pool) holds
//! one thread per pending lookup and cannot be cancelled: 5,000 image names
//! whose hosts never resolve held 512 threads and delayed shutdown by over a
//! minute. hickory-resolver speaks DNS itself on the async runtime, so a
//! lookup is a future that a timeout or shutdown simply drops; a semaphore
//! bounds how many run at once.

use std::net::{IpAddr, SocketAddr};
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
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            max_in_flight: 64,
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
        })
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
