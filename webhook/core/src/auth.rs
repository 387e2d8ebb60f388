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
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
        }
    }
}

impl Credentials {
    /// A short, non-reversible identity for cache keys and logs.
    pub fn fingerprint(&self) -> Arc<str> {
        match self {
            Self::Anonymous => Arc::from("anonymous"),
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
            Self::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
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
/// credentials for `registry`, matched exactly on host (and port), as the
/// kubelet does for the common case. Docker Hub's legacy key is honoured.
pub fn docker_config_credentials(json: &[u8], registry: &str) -> Option<Credentials> {
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
    let entry = config.auths.iter().find_map(|(key, auth)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        RegistryHost::parse(host)
            .is_ok_and(|h| h == wanted)
            .then_some(auth)
    })?;
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
            docker_config_credentials(json, "registry.example.com:5000"),
            Some(Credentials::Basic {
                username: "user".into(),
                password: "pass".into()
            })
        );
        assert_eq!(
            docker_config_credentials(json, "registry.example.com"),
            None
        );
        assert_eq!(
            docker_config_credentials(json, "evil.example.com:5000"),
            None
        );
        assert_eq!(
            docker_config_credentials(json, "docker.io"),
            Some(Credentials::Basic {
                username: "hub".into(),
                password: "secret".into()
            })
        );
        assert_eq!(docker_config_credentials(b"not json", "docker.io"), None);
        // Case and the default port do not make another registry.
        let json = br#"{"auths":{"Registry.Example.com:443":{"auth":"dXNlcjpwYXNz"}}}"#;
        assert!(docker_config_credentials(json, "registry.example.com").is_some());
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
