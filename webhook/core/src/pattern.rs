//! Registry patterns: one syntax, `host-glob[:port]`, for every place a
//! registry is named — rule `Registry`/`Repository`/`Image` matchers and
//! exemptions, `allowedRegistries`, `unsupportedRegistries`, RegistryAccess
//! `registries` and metric labels.
//!
//! - Hosts compare case-insensitively, after the same normalisation as image
//!   references (Docker Hub aliases, numeric IPv4 forms, port 443 dropped).
//! - `*` matches a run of characters inside one host label: it never crosses
//!   `.` or `:`, so `*.azurecr.io` matches `team.azurecr.io` but neither
//!   `azurecr.io`, `a.b.azurecr.io` nor `evil-azurecr.io`, and
//!   `registry.example.com*` never matches `registry.example.com.evil.net`.
//!   `?` matches one character of a label.
//! - A pattern without a port matches the default port only; `:5000` that
//!   port; `:*` any port.
//! - `*` as the whole host matches any host; `*` as the whole pattern matches
//!   every registry on every port.
//! - Repository and image patterns are `host-glob[:port]/path-glob`, where `*`
//!   in the path crosses `/` (`myacr.azurecr.io/team/*`).

use std::fmt;

use wildmatch::WildMatch;

use crate::reference::{ImageRef, RegistryHost};

/// A pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registry pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong.
    pub reason: String,
}

fn error(pattern: &str, reason: impl Into<String>) -> PatternError {
    PatternError {
        pattern: pattern.to_owned(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortRule {
    /// No port written: the default port only.
    Default,
    Exact(u16),
    Any,
}

#[derive(Debug, Clone)]
enum HostRule {
    Any,
    /// Lower-case literal host (normalised like references).
    Literal(String),
    /// One glob per label.
    Labels(Vec<WildMatch>),
}

/// `host-glob[:port]`, or `*` for every registry.
#[derive(Debug, Clone)]
pub struct HostGlob {
    text: String,
    host: HostRule,
    port: PortRule,
}

impl HostGlob {
    /// Parses a registry pattern. With `wildcards` false, `*` and `?` are
    /// refused (the `Equals` operator takes literal registries).
    pub fn parse(pattern: &str, wildcards: bool) -> Result<HostGlob, PatternError> {
        let text = pattern.trim();
        if text.is_empty() {
            return Err(error(pattern, "empty"));
        }
        let has_wildcard = text.contains(['*', '?']);
        if has_wildcard && !wildcards {
            return Err(error(pattern, "wildcards need the Glob operator"));
        }
        if text == "*" {
            return Ok(HostGlob {
                text: text.to_owned(),
                host: HostRule::Any,
                port: PortRule::Any,
            });
        }
        if text.contains(['/', '@']) || text.chars().any(|c| c.is_whitespace()) {
            return Err(error(pattern, "a registry is host[:port], without a path"));
        }
        if !has_wildcard {
            let host = RegistryHost::parse(text).map_err(|e| error(pattern, e))?;
            return Ok(HostGlob {
                text: text.to_owned(),
                port: host.port().map_or(PortRule::Default, PortRule::Exact),
                host: HostRule::Literal(host.host().to_owned()),
            });
        }
        let lower = text.to_ascii_lowercase();
        let (host, port) = match lower.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p.to_owned())),
            Some(_) => return Err(error(pattern, "IPv6 literals take no wildcards")),
            None => (lower.clone(), None),
        };
        let port = match port.as_deref() {
            None => PortRule::Default,
            Some("*") => PortRule::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(443) => PortRule::Default,
                Ok(n) if n > 0 => PortRule::Exact(n),
                _ => return Err(error(pattern, format!("port {p:?} is not a port or *"))),
            },
        };
        let host = if host == "*" {
            HostRule::Any
        } else {
            let mut labels = Vec::new();
            for label in host.split('.') {
                let ok = !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'*' | b'?'));
                if !ok {
                    return Err(error(
                        pattern,
                        format!("label {label:?} may hold only letters, digits, '-', '*' and '?'"),
                    ));
                }
                labels.push(WildMatch::new(label));
            }
            HostRule::Labels(labels)
        };
        Ok(HostGlob {
            text: text.to_owned(),
            host,
            port,
        })
    }

    /// Whether `registry` matches.
    pub fn matches(&self, registry: &RegistryHost) -> bool {
        let port_ok = match self.port {
            PortRule::Default => registry.port().is_none(),
            PortRule::Exact(p) => registry.port() == Some(p),
            PortRule::Any => true,
        };
        port_ok
            && match &self.host {
                HostRule::Any => true,
                HostRule::Literal(h) => h == registry.host(),
                HostRule::Labels(globs) => {
                    let mut labels = registry.host().split('.');
                    globs
                        .iter()
                        .all(|g| labels.next().is_some_and(|l| g.matches(l)))
                        && labels.next().is_none()
                }
            }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for HostGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What the part after the registry must be.
#[derive(Debug, Clone)]
enum PathRule {
    Any,
    Exact(String),
    Glob(WildMatch),
    Prefix(String),
}

/// Which part of an image a pattern reads after the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImagePart {
    /// The repository path (`library/nginx`).
    Repository,
    /// Path, tag and digest (`library/nginx:1.27@sha256:...`).
    Reference,
}

impl ImagePart {
    /// This part of `image`.
    pub fn of(self, image: &ImageRef) -> &str {
        match self {
            ImagePart::Repository => image.repository(),
            // The normalised text is `registry/` followed by this part.
            ImagePart::Reference => image
                .as_str()
                .get(image.registry().len() + 1..)
                .unwrap_or_default(),
        }
    }
}

/// How a repository or image pattern compares its path part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMode {
    /// The whole path equals the pattern's (no wildcards).
    Exact,
    /// `*` and `?` as in shell globs; `*` crosses `/`.
    Glob,
    /// The path starts with the pattern's.
    Prefix,
}

/// `host-glob[:port]/path`, or `*` for every image.
#[derive(Debug, Clone)]
pub struct ImagePattern {
    text: String,
    host: HostGlob,
    path: PathRule,
    part: ImagePart,
}

impl ImagePattern {
    /// Parses a repository (`part = Repository`) or image pattern.
    pub fn parse(pattern: &str, part: ImagePart, mode: PathMode) -> Result<Self, PatternError> {
        let text = pattern.trim();
        if text == "*" && mode == PathMode::Glob {
            return Ok(ImagePattern {
                text: text.to_owned(),
                host: HostGlob::parse("*", true)?,
                path: PathRule::Any,
                part,
            });
        }
        let Some((host, path)) = text.split_once('/') else {
            return Err(error(
                pattern,
                "a repository pattern is host[:port]/path (e.g. docker.io/library/nginx or myacr.azurecr.io/team/*)",
            ));
        };
        let glob = mode == PathMode::Glob;
        let host = HostGlob::parse(host, glob)?;
        if !glob && path.contains(['*', '?']) {
            return Err(error(pattern, "wildcards need the Glob operator"));
        }
        // Docker Hub's one-component repositories live under `library/`.
        let hub_short = matches!(&host.host, HostRule::Literal(h) if h == crate::reference::DOCKER_HUB)
            && host.port == PortRule::Default
            && mode == PathMode::Exact
            && part == ImagePart::Repository
            && !path.contains('/');
        let path_text = if hub_short {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        let path = match mode {
            PathMode::Exact => PathRule::Exact(path_text),
            PathMode::Prefix => PathRule::Prefix(path_text),
            PathMode::Glob if path_text == "*" => PathRule::Any,
            PathMode::Glob => PathRule::Glob(WildMatch::new(&path_text)),
        };
        Ok(ImagePattern {
            text: text.to_owned(),
            host,
            path,
            part,
        })
    }

    /// Whether `image` matches.
    pub fn matches(&self, image: &ImageRef) -> bool {
        if !self.host.matches(image.registry_host()) {
            return false;
        }
        let path = self.part.of(image);
        match &self.path {
            PathRule::Any => true,
            PathRule::Exact(p) => p == path,
            PathRule::Glob(g) => g.matches(path),
            PathRule::Prefix(p) => path.starts_with(p.as_str()),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A list of registry patterns (ORed), e.g. `allowedRegistries`.
#[derive(Debug, Clone, Default)]
pub struct HostGlobs(Vec<HostGlob>);

impl HostGlobs {
    /// Parses every pattern; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        patterns
            .iter()
            .map(|p| HostGlob::parse(p.as_ref(), true))
            .collect::<Result<Vec<_>, _>>()
            .map(HostGlobs)
    }

    /// The first pattern that matches `registry`.
    pub fn find(&self, registry: &RegistryHost) -> Option<&HostGlob> {
        self.0.iter().find(|g| g.matches(registry))
    }

    /// Whether any pattern matches.
    pub fn matches(&self, registry: &RegistryHost) -> bool {
        self.find(registry).is_some()
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The patterns.
    pub fn iter(&self) -> impl Iterator<Item = &HostGlob> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> RegistryHost {
        RegistryHost::parse(text).unwrap()
    }

    fn glob(p: &str) -> HostGlob {
        HostGlob::parse(p, true).unwrap()
    }

    #[test]
    fn star_never_crosses_a_dot_or_a_colon() {
        // (pattern, registry, matches)
        let cases = [
            ("*.azurecr.io", "team.azurecr.io", true),
            ("*.azurecr.io", "TEAM.AzureCR.io", true),
            ("*.azurecr.io", "azurecr.io", false),
            ("*.azurecr.io", "a.b.azurecr.io", false),
            ("*.azurecr.io", "evil-azurecr.io", false),
            ("*.azurecr.io", "team.azurecr.io.evil.net", false),
            ("*.azurecr.io", "team.azurecr.io:5000", false),
            ("*.azurecr.io:*", "team.azurecr.io:5000", true),
            ("*.example.com", "evil-example.com", false),
            ("*.example.com", "example.com.evil.net", false),
            (
                "registry.example.com*",
                "registry.example.com.evil.net",
                false,
            ),
            ("registry.example.com*", "registry.example.com:5000", false),
            ("mcr.microsoft.com*", "mcr.microsoft.com.evil.net", false),
            ("mcr.microsoft.com", "MCR.Microsoft.Com", true),
            ("mcr.microsoft.com", "mcr.microsoft.com:443", true),
            ("mcr.microsoft.com", "mcr.microsoft.com:8443", false),
            ("registry.local:5000", "registry.local:5000", true),
            ("registry.local:5000", "registry.local", false),
            ("reg-??.example.com", "reg-eu.example.com", true),
            ("reg-??.example.com", "reg-eu1.example.com", false),
            ("index.docker.io", "docker.io", true),
            ("docker.io", "registry-1.docker.io", true),
            ("127.1:5000", "127.0.0.1:5000", true),
            ("*", "anything.example:1234", true),
            ("*:5000", "localhost:5000", true),
            ("*:5000", "localhost:5001", false),
        ];
        for (pattern, registry, want) in cases {
            assert_eq!(
                glob(pattern).matches(&host(registry)),
                want,
                "{pattern} vs {registry}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for bad in [
            "",
            "a b",
            "docker.io/library",
            "host:99999",
            "host:x",
            "a..b",
            "[::1",
        ] {
            assert!(HostGlob::parse(bad, true).is_err(), "{bad:?}");
        }
        assert!(HostGlob::parse("*.azurecr.io", false).is_err());
    }

    #[test]
    fn repository_and_image_patterns() {
        let image = ImageRef::parse("MyACR.azurecr.io/team/checkout:2.1").unwrap();
        let hub = ImageRef::parse("nginx:1.27").unwrap();
        let repo = |p: &str, mode| ImagePattern::parse(p, ImagePart::Repository, mode).unwrap();
        let img = |p: &str| ImagePattern::parse(p, ImagePart::Reference, PathMode::Glob).unwrap();
        assert!(repo("myacr.azurecr.io/team/*", PathMode::Glob).matches(&image));
        assert!(repo("*.azurecr.io/team/*", PathMode::Glob).matches(&image));
        assert!(!repo("*.azurecr.io/other/*", PathMode::Glob).matches(&image));
        assert!(repo("myacr.azurecr.io/team/checkout", PathMode::Exact).matches(&image));
        assert!(repo("myacr.azurecr.io/team/", PathMode::Prefix).matches(&image));
        assert!(!repo("myacr.azurecr.io.evil.net/team/", PathMode::Prefix).matches(&image));
        assert!(repo("docker.io/nginx", PathMode::Exact).matches(&hub));
        assert!(repo("*", PathMode::Glob).matches(&hub));
        assert!(repo("*/library/nginx", PathMode::Glob).matches(&hub));
        assert!(img("myacr.azurecr.io/team/*:2.*").matches(&image));
        assert!(!img("myacr.azurecr.io/team/*:3.*").matches(&image));
        assert!(
            ImagePattern::parse("team/checkout", ImagePart::Repository, PathMode::Exact)
                .is_ok_and(|p| !p.matches(&image))
        );
        assert!(ImagePattern::parse("nginx", ImagePart::Repository, PathMode::Exact).is_err());
    }
}
