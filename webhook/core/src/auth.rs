//! Registry credentials and the distribution token protocol.
//!
//! Hand-written rather than taken from oci-client because that client keeps the
//! first credential it sees per registry, re-probes `/v2/` before every
//! anonymous request (doubling cold-path round trips) and sends basic
//! credentials to whatever token realm a registry names.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::reference::RegistryHost;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    /// No credentials (bearer challenges are answered anonymously).
    Anonymous,
    /// Username and password (also an ACR refresh token with the null user).
    Basic {
        /// Username.
        username: String,
        /// Password or token.
        password: String,
    },
    /// Username and password that came from a RegistryAccess: cached work is
    /// keyed by `identity` (the RegistryAccess, and the Secret's UID and
    /// resourceVersion, or the cloud identity), not by the password, so a
    /// short-lived token being refreshed does not empty the caches.
    Identified {
        /// Where the credentials came from; stable across token refreshes.
        identity: Arc<str>,
        /// Username.
        username: String,
        /// Password or token.
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Identified {
                identity, username, ..
            } => write!(f, "Basic({username}, <redacted>, {identity})"),
        }
    }
}

impl Credentials {
    /// A short, non-reversible identity for cache keys and logs: where the
    /// credentials came from when known, else a hash of them.
    pub fn fingerprint(&self) -> Arc<str> {
        match self {
            Self::Anonymous => Arc::from("anonymous"),
            Self::Identified { identity, .. } => identity.clone(),
            Self::Basic { username, password } => {
                let mut h = Sha256::new();
                h.update(username.as_bytes());
                h.update([0]);
                h.update(password.as_bytes());
                let digest = h.finalize();
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                Arc::from(format!("basic-{hex}"))
            }
        }
    }

    /// The `Authorization` value for basic authentication.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Self::Anonymous => None,
            Self::Basic { username, password }
            | Self::Identified {
                username, password, ..
            } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
        }
    }

    /// These credentials, keyed in caches by `identity` instead of their hash.
    pub fn identified(self, identity: impl Into<Arc<str>>) -> Self {
        match self {
            Self::Anonymous => Self::Anonymous,
            Self::Basic { username, password }
            | Self::Identified {
                username, password, ..
            } => Self::Identified {
                identity: identity.into(),
                username,
                password,
            },
        }
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter, when given.
        service: Option<String>,
        /// `scope` parameter, when given.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value (RFC 7235 auth-params; quoted
/// strings with backslash escapes). Hand-written: the crates that do this are
/// unmaintained, and the grammar needed here is small.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    let mut rest = params.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        match key.as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

/// A token endpoint's answer (distribution token spec; OAuth2 field names too).
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    /// The token.
    #[serde(default)]
    pub token: Option<String>,
    /// The OAuth2 spelling.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Lifetime in seconds (default 60).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token, whichever field carries it.
    pub fn into_token(self) -> Option<(String, u64)> {
        let expires = self.expires_in.unwrap_or(60);
        self.token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
            .map(|t| (t, expires))
    }
}

/// Parses a `kubernetes.io/dockerconfigjson` payload and returns the
/// credentials for `repository` in `registry`, as the kubelet matches them:
/// the key's host (and port) must be the registry, after the normalisation
/// image names get; a key with a path (`registry.example.com/team`) applies
/// only to repositories under that path, whole segments only; the most
/// specific key (longest path) wins. Docker Hub's legacy key is honoured.
pub fn docker_config_credentials(
    json: &[u8],
    registry: &str,
    repository: &str,
) -> Option<Credentials> {
    #[derive(serde::Deserialize)]
    struct DockerConfig {
        #[serde(default)]
        auths: std::collections::BTreeMap<String, DockerAuth>,
    }
    #[derive(serde::Deserialize)]
    struct DockerAuth {
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
        #[serde(default)]
        auth: Option<String>,
    }
    let config: DockerConfig = serde_json::from_slice(json).ok()?;
    // Both sides normalised like image references (case, default port,
    // Docker Hub's aliases, IP forms), so a key matches the registry the
    // gate names, and only that one.
    let wanted = RegistryHost::parse(registry).ok()?;
    let entry = config
        .auths
        .iter()
        .filter_map(|(key, auth)| {
            let rest = key
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if !RegistryHost::parse(host).is_ok_and(|h| h == wanted) {
                return None;
            }
            // Docker Hub's legacy key `https://index.docker.io/v1/` is a
            // registry-wide key, not a path.
            let path = if wanted.is_docker_hub() && path.trim_end_matches('/') == "v1" {
                ""
            } else {
                path.trim_end_matches('/')
            };
            let covers = path.is_empty()
                || repository == path
                || repository
                    .strip_prefix(path)
                    .is_some_and(|r| r.starts_with('/'));
            covers.then_some((path.len(), auth))
        })
        .max_by_key(|(specificity, _)| *specificity)
        .map(|(_, auth)| auth)?;
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Some(Credentials::Basic {
            username: u.clone(),
            password: p.clone(),
        });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.as_deref()?.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credentials::Basic {
        username: u.to_owned(),
        password: p.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distribution_and_acr_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(r#"bearer realm="https://x/o\"auth", service=x"#),
            Some(Challenge::Bearer {
                realm: "https://x/o\"auth".into(),
                service: Some("x".into()),
                scope: None,
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge(r#"Bearer realm="unterminated"#), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn docker_config_matches_only_its_registry() {
        let json = br#"{"auths":{"registry.example.com:5000":{"auth":"dXNlcjpwYXNz"},
            "https://index.docker.io/v1/":{"username":"hub","password":"secret"}}}"#;
        assert_eq!(
            docker_config_credentials(json, "registry.example.com:5000", "team/app"),
            Some(Credentials::Basic {
                username: "user".into(),
                password: "pass".into()
            })
        );
        assert_eq!(
            docker_config_credentials(json, "registry.example.com", "team/app"),
            None
        );
        assert_eq!(
            docker_config_credentials(json, "evil.example.com:5000", "team/app"),
            None
        );
        assert_eq!(
            docker_config_credentials(json, "docker.io", "library/nginx"),
            Some(Credentials::Basic {
                username: "hub".into(),
                password: "secret".into()
            })
        );
        assert_eq!(
            docker_config_credentials(b"not json", "docker.io", "library/nginx"),
            None
        );
        // Case and the default port do not make another registry.
        let json = br#"{"auths":{"Registry.Example.com:443":{"auth":"dXNlcjpwYXNz"}}}"#;
        assert!(docker_config_credentials(json, "registry.example.com", "app").is_some());
    }

    #[test]
    fn docker_config_keys_with_paths_keep_their_scope() {
        let json = br#"{"auths":{
            "registry.example.com/team":{"username":"team","password":"t"},
            "registry.example.com/team/secret":{"username":"secret","password":"s"},
            "https://other.example.com/v1/":{"username":"other","password":"o"}}}"#;
        let user =
            |registry: &str, repo: &str| match docker_config_credentials(json, registry, repo) {
                Some(Credentials::Basic { username, .. }) => Some(username),
                _ => None,
            };
        assert_eq!(
            user("registry.example.com", "team/app").as_deref(),
            Some("team")
        );
        assert_eq!(
            user("registry.example.com", "team").as_deref(),
            Some("team")
        );
        // The most specific key wins.
        assert_eq!(
            user("registry.example.com", "team/secret/db").as_deref(),
            Some("secret")
        );
        // Whole segments only, and nothing outside the path.
        assert_eq!(user("registry.example.com", "teammate/app"), None);
        assert_eq!(user("registry.example.com", "other/app"), None);
        assert_eq!(user("registry.example.com", "app"), None);
        // `/v1/` is a path anywhere but Docker Hub.
        assert_eq!(user("other.example.com", "team/app"), None);
        assert_eq!(
            user("other.example.com", "v1/app").as_deref(),
            Some("other")
        );
    }

    #[test]
    fn identified_credentials_are_keyed_by_their_source() {
        let c = Credentials::Basic {
            username: "AWS".into(),
            password: "token-1".into(),
        };
        let hashed = c.fingerprint();
        let a = c.clone().identified("ra:ecr/uid-1");
        let b = Credentials::Basic {
            username: "AWS".into(),
            password: "token-2".into(),
        }
        .identified("ra:ecr/uid-1");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), hashed);
        assert_eq!(a.basic_header(), c.basic_header());
        assert!(!format!("{a:?}").contains("token-1"));
    }

    #[test]
    fn debug_output_hides_passwords() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.fingerprint().contains("hunter2"));
    }
}
