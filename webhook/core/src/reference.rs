//! The one image identity Portcullis compares everywhere: rule matchers,
//! exemptions, the destination guard, credentials, the registry client, cache
//! keys and metrics all read the registry, repository, tag and digest from an
//! [`ImageRef`].
//!
//! Parsing follows the distribution reference grammar and the normalisation
//! containerd and the kubelet apply (`ParseNormalizedNamed`):
//! - the first path component is a registry host when it contains `.` or
//!   `:`, is `localhost`, or has an upper-case letter; otherwise the image is
//!   on Docker Hub;
//! - hosts compare case-insensitively and are kept in lower case; numeric
//!   IPv4 forms (`127.1`, `0x7f.0.0.1`) and IPv6 literals are written as the
//!   HTTP stack reads them; the HTTPS default port `:443` is dropped;
//! - Docker Hub's aliases become `docker.io`, and a one-component Hub
//!   repository gets the `library/` prefix;
//! - a digest is `sha256` or `sha512` in lower-case hex (upper case is refused:
//!   the registry would not find it, and the gate would judge another string).
//!
//! Hand-written rather than taken from `oci-spec`'s port of the grammar: that
//! port treats an upper-case first component as a Docker Hub namespace and
//! keeps host case, both of which let a name escape a rule scoped to its real
//! registry, and its regular expression was the costliest step of a warm
//! admission. The grammar is small and every branch is tested below.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest image reference accepted (registry, path, tag and digest together).
/// The grammar allows 255 characters of name, 128 of tag and a sha512 digest.
pub const MAX_REFERENCE_LEN: usize = 1024;

/// Longest name (registry and repository path) the grammar allows.
pub const MAX_NAME_LEN: usize = 255;

/// Docker Hub, as image references name it.
pub const DOCKER_HUB: &str = "docker.io";

/// Why an image reference is refused (`InvalidReference`). Texts quote the
/// input capped by [`shown`], so a hostile name cannot blow up messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty string.
    #[error("image reference is empty")]
    Empty,
    /// Longer than [`MAX_REFERENCE_LEN`].
    #[error("image reference is {0} bytes long, more than the {MAX_REFERENCE_LEN} allowed")]
    TooLong(usize),
    /// Upper-case letters in the repository path.
    #[error("image reference {0:?}: repository name must be lowercase")]
    Uppercase(String),
    /// Whitespace or control characters.
    #[error("image reference {0:?} contains whitespace or control characters")]
    BadCharacters(String),
    /// Anything else the grammar rejects.
    #[error("image reference {reference:?}: {reason}")]
    Invalid {
        /// The input (capped).
        reference: String,
        /// What is wrong.
        reason: String,
    },
}

/// A registry host and port, normalised: lower case, IP literals canonical,
/// `None` for the default HTTPS port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryHost {
    host: String,
    port: Option<u16>,
    /// `host[:port]` as written in normalised references.
    text: String,
}

impl RegistryHost {
    /// Parses `host[:port]` as it appears in an image reference or a
    /// registry setting, normalising it.
    pub fn parse(text: &str) -> Result<RegistryHost, String> {
        let (host, port) = split_host_port(text)?;
        let host = canonical_host(host)?;
        let host = match host.as_str() {
            "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
                DOCKER_HUB.to_owned()
            }
            _ => host,
        };
        let port = port.filter(|p| *p != 443);
        Ok(RegistryHost::new(host, port))
    }

    fn new(host: String, port: Option<u16>) -> RegistryHost {
        let text = match port {
            Some(p) => format!("{host}:{p}"),
            // A dotless host other than localhost reads as a Docker Hub
            // namespace once lower-cased; the explicit default port keeps the
            // normalised text re-parsing to the same registry.
            None if !host.contains(['.', ':']) && host != "localhost" => format!("{host}:443"),
            None => host.clone(),
        };
        RegistryHost { host, port, text }
    }

    /// The host: a lower-case DNS name, a dotted IPv4 address, or a
    /// bracketed IPv6 address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, `None` for the default (443).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host[:port]`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The IP address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        bare.parse().ok()
    }

    /// True for Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.host == DOCKER_HUB && self.port.is_none()
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: RegistryHost,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
    /// `registry/repository`, computed once: scope matchers read it on every admission.
    name: String,
    /// The whole normalised reference, for the same reason.
    whole: String,
}

impl ImageRef {
    /// Parses and normalises an image reference as written in a pod spec.
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.len() > MAX_REFERENCE_LEN {
            return Err(ReferenceError::TooLong(input.len()));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ReferenceError::BadCharacters(shown(input).into_owned()));
        }
        let invalid = |reason: String| ReferenceError::Invalid {
            reference: input.to_owned(),
            reason,
        };
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(invalid(
                "a 64-character hexadecimal string is an image ID, not a reference".into(),
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest).map_err(invalid)?)),
            None => (input, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return Err(invalid(format!("{tag:?} is not a valid tag")));
        }
        if name.is_empty() {
            return Err(invalid("the repository name is empty".into()));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(format!(
                "the repository name is {} characters long, more than {MAX_NAME_LEN}",
                name.len()
            )));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (Some(first), path)
            }
            _ => (None, name),
        };
        check_path(path).map_err(|e| match e {
            PathProblem::Uppercase => ReferenceError::Uppercase(input.to_owned()),
            PathProblem::Invalid(reason) => invalid(reason),
        })?;
        let registry = match domain {
            Some(d) => RegistryHost::parse(d).map_err(invalid)?,
            None => RegistryHost::new(DOCKER_HUB.to_owned(), None),
        };
        let repository = if registry.is_docker_hub() && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        // The grammar's limit is on the normalised name (distribution checks
        // `docker.io/library/...`), so the normalised text re-parses.
        let normalised_len = registry.as_str().len() + 1 + repository.len();
        if normalised_len > MAX_NAME_LEN {
            return Err(invalid(format!(
                "the normalised repository name is {normalised_len} characters long, more than {MAX_NAME_LEN}"
            )));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(ImageRef::from_parts(registry, repository, tag, digest))
    }

    fn from_parts(
        registry: RegistryHost,
        repository: String,
        tag: Option<String>,
        digest: Option<String>,
    ) -> ImageRef {
        let name = format!("{registry}/{repository}");
        let mut whole = name.clone();
        if let Some(t) = &tag {
            whole.push(':');
            whole.push_str(t);
        }
        if let Some(d) = &digest {
            whole.push('@');
            whole.push_str(d);
        }
        ImageRef {
            registry,
            repository,
            tag,
            digest,
            name,
            whole,
        }
    }

    /// Registry (`host[:port]`), e.g. `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        self.registry.as_str()
    }

    /// The registry as a structured host and port.
    pub fn registry_host(&self) -> &RegistryHost {
        &self.registry
    }

    /// Repository path, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Registry and repository path, e.g. `docker.io/library/nginx`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole normalised reference, e.g. `docker.io/library/nginx:latest`.
    pub fn as_str(&self) -> &str {
        &self.whole
    }

    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one (it then decides what is pulled).
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.whole)
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Longest image text shown in messages, log lines and keys.
pub const MAX_SHOWN_LEN: usize = 256;

/// `text` as it may appear in a message, log line or cache key: unchanged up
/// to [`MAX_SHOWN_LEN`] bytes, else a prefix plus the length and a hash of the
/// whole, so two long names stay distinguishable without being stored.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_SHOWN_LEN {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = 96;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}...[{} bytes, fnv1a {:016x}]",
        &text[..end],
        text.len(),
        fnv1a(text.as_bytes())
    ))
}

/// FNV-1a: a stable, dependency-free fingerprint for shown texts (not a
/// security boundary; the full name is never kept).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn split_host_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("registry {text:?}: unclosed IPv6 bracket"))?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("registry {text:?}: junk after the IPv6 address"))?,
            ),
        };
        (&text[..end + 2], port)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("registry port {p} is not a port number"))?,
        ),
        Some(p) => return Err(format!("registry port {p:?} is not a port number")),
    };
    Ok((host, port))
}

/// The host as the HTTP stack reads it: lower case, IPv4 numeric forms
/// (shorthand, hex, octal, one integer) turned into dotted quads, IPv6 in its
/// canonical text.
fn canonical_host(host: &str) -> Result<String, String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        return Ok(format!("[{ip}]"));
    }
    if host.is_empty() {
        return Err("the registry host is empty".into());
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{host:?} is not a valid registry host"));
        }
    }
    let lower = host.to_ascii_lowercase();
    match numeric_ipv4(&lower) {
        Numeric::Address(ip) => Ok(ip.to_string()),
        Numeric::Invalid => Err(format!(
            "{host:?} looks like an IPv4 address but is not one"
        )),
        Numeric::Name => Ok(lower),
    }
}

enum Numeric {
    Address(Ipv4Addr),
    Invalid,
    Name,
}

/// The WHATWG URL host parser's IPv4 rule (what `reqwest`/`url` and glibc's
/// `inet_aton` accept): a host whose last label is a number is an IPv4
/// address in one to four parts, each decimal, `0x` hex or `0` octal, the last
/// part filling the remaining bytes.
fn numeric_ipv4(host: &str) -> Numeric {
    let labels: Vec<&str> = host.split('.').collect();
    let Some(last) = labels.last() else {
        return Numeric::Name;
    };
    // "Ends in a number": all digits (even an invalid octal such as `08`), or
    // a number in any accepted base.
    if !last.bytes().all(|b| b.is_ascii_digit()) && parse_ipv4_number(last).is_none() {
        return Numeric::Name;
    }
    if labels.len() > 4 {
        return Numeric::Invalid;
    }
    let mut numbers = Vec::with_capacity(labels.len());
    for l in &labels {
        match parse_ipv4_number(l) {
            Some(n) => numbers.push(n),
            None => return Numeric::Invalid,
        }
    }
    let (last, init) = match numbers.split_last() {
        Some(x) => x,
        None => return Numeric::Invalid,
    };
    if init.iter().any(|n| *n > 255) {
        return Numeric::Invalid;
    }
    let last_bits = 8 * (5 - numbers.len() as u32);
    if u64::from(*last) >= 1u64 << last_bits {
        return Numeric::Invalid;
    }
    let mut value: u32 = *last;
    for (i, n) in init.iter().enumerate() {
        value |= n << (8 * (3 - i as u32));
    }
    Numeric::Address(Ipv4Addr::from(value))
}

fn parse_ipv4_number(s: &str) -> Option<u32> {
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x") {
        (hex, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() {
        // `0x` alone is zero in the WHATWG parser.
        return (radix == 16).then_some(0);
    }
    u32::from_str_radix(digits, radix).ok()
}

enum PathProblem {
    Uppercase,
    Invalid(String),
}

/// `path-component ('/' path-component)*`, where a component is lower-case
/// alphanumerics separated by one `.`, one `_`, `__`, or any run of `-`.
fn check_path(path: &str) -> Result<(), PathProblem> {
    let mut uppercase = false;
    for component in path.split('/') {
        if component.is_empty() {
            return Err(PathProblem::Invalid(
                "the repository path has an empty component".into(),
            ));
        }
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_digit() || b.is_ascii_lowercase();
        let mut i = 0;
        let mut after_separator = true;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_uppercase() {
                uppercase = true;
                after_separator = false;
                i += 1;
                continue;
            }
            if alnum(b) {
                after_separator = false;
                i += 1;
                continue;
            }
            if after_separator {
                return Err(PathProblem::Invalid(format!(
                    "repository component {component:?} must start with a letter or digit and have one separator between them"
                )));
            }
            let run = match b {
                b'.' => 1,
                b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
                b'_' => 1,
                b'-' => bytes[i..].iter().take_while(|c| **c == b'-').count(),
                other => {
                    return Err(PathProblem::Invalid(format!(
                        "repository component {component:?} contains {:?}",
                        char::from(other)
                    )));
                }
            };
            i += run;
            after_separator = true;
        }
        if after_separator {
            return Err(PathProblem::Invalid(format!(
                "repository component {component:?} must end with a letter or digit"
            )));
        }
    }
    if uppercase {
        return Err(PathProblem::Uppercase);
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|c| word(*c) || *c == b'.' || *c == b'-')
}

/// `sha256:<64 lower hex>` or `sha512:<128 lower hex>`.
fn parse_digest(digest: &str) -> Result<String, String> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest {digest:?} has no algorithm"))?;
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        other => {
            return Err(format!(
                "digest algorithm {other:?} is not sha256 or sha512"
            ));
        }
    };
    if hex.len() != want || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "digest {digest:?} is not {want} hexadecimal characters"
        ));
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("digest {digest:?} must be lower-case hexadecimal"));
    }
    Ok(digest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:91ac9b26df583762234c1cdb2fc930364754ccc59bc752a2bfe298d2ea68f9ff";

    // (input, registry, repository, tag, digest)
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

    #[test]
    fn normalises_like_the_kubelet() {
        let with_digest = format!("myregistry.azurecr.io/team/app:1.0@{D}");
        let by_digest = format!("securesystemsengineering/charlie-image@{D}");
        let cases: Vec<Case> = vec![
            ("nginx", "docker.io", "library/nginx", Some("latest"), None),
            (
                "nginx:1.27",
                "docker.io",
                "library/nginx",
                Some("1.27"),
                None,
            ),
            (
                "library/nginx",
                "docker.io",
                "library/nginx",
                Some("latest"),
                None,
            ),
            (
                "docker.io/nginx",
                "docker.io",
                "library/nginx",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/library/nginx",
                "docker.io",
                "library/nginx",
                Some("latest"),
                None,
            ),
            (
                "registry-1.docker.io/nginx",
                "docker.io",
                "library/nginx",
                Some("latest"),
                None,
            ),
            (
                "bitnami/redis:7",
                "docker.io",
                "bitnami/redis",
                Some("7"),
                None,
            ),
            ("localhost/app", "localhost", "app", Some("latest"), None),
            (
                "localhost:5000/app:v1",
                "localhost:5000",
                "app",
                Some("v1"),
                None,
            ),
            (
                "127.0.0.1:5000/a/b/c:t",
                "127.0.0.1:5000",
                "a/b/c",
                Some("t"),
                None,
            ),
            (
                "ghcr.io/org/img:Mixed_Case.tag-1",
                "ghcr.io",
                "org/img",
                Some("Mixed_Case.tag-1"),
                None,
            ),
            (
                with_digest.as_str(),
                "myregistry.azurecr.io",
                "team/app",
                Some("1.0"),
                Some(D),
            ),
            (
                by_digest.as_str(),
                "docker.io",
                "securesystemsengineering/charlie-image",
                None,
                Some(D),
            ),
            // A dotless lower-case first component stays a Docker Hub namespace.
            (
                "registry/app",
                "docker.io",
                "registry/app",
                Some("latest"),
                None,
            ),
            // Separators: one dot, one or two underscores, any run of dashes.
            (
                "a/b.c_d__e---f",
                "docker.io",
                "a/b.c_d__e---f",
                Some("latest"),
                None,
            ),
        ];
        check(&cases);
        assert_eq!(
            ImageRef::parse("nginx").map(|r| r.to_string()),
            Ok("docker.io/library/nginx:latest".into())
        );
    }

    /// Case and parse tricks found by review and fuzzing: each is the
    /// registry containerd would contact, so rules scoped to it apply.
    #[test]
    fn hosts_are_read_as_the_runtime_reads_them() {
        let cases: Vec<Case> = vec![
            // An upper-case first component is a host (containerd's rule).
            ("LOCALHOST/app:1", "localhost", "app", Some("1"), None),
            ("Evil/app:1", "evil:443", "app", Some("1"), None),
            (
                "LocalHost/shop/payments:4.2",
                "localhost",
                "shop/payments",
                Some("4.2"),
                None,
            ),
            (
                "l1clFFFFFFFFFFFFFFFFFFFF/aqp:1",
                "l1clffffffffffffffffffff:443",
                "aqp",
                Some("1"),
                None,
            ),
            // Hosts compare case-insensitively.
            (
                "Registry.Example.Com/app:1",
                "registry.example.com",
                "app",
                Some("1"),
                None,
            ),
            (
                "Docker.IO/nginx",
                "docker.io",
                "library/nginx",
                Some("latest"),
                None,
            ),
            // The default HTTPS port is the same registry.
            (
                "registry.example.com:443/app:1",
                "registry.example.com",
                "app",
                Some("1"),
                None,
            ),
            // Numeric IPv4 forms are the address the HTTP stack connects to.
            (
                "127.1:5000/app",
                "127.0.0.1:5000",
                "app",
                Some("latest"),
                None,
            ),
            (
                "127.0.1:5000/app",
                "127.0.0.1:5000",
                "app",
                Some("latest"),
                None,
            ),
            (
                "0x7f.0.0.1:5000/app",
                "127.0.0.1:5000",
                "app",
                Some("latest"),
                None,
            ),
            (
                "0177.0.0.1:5000/app",
                "127.0.0.1:5000",
                "app",
                Some("latest"),
                None,
            ),
            (
                "2130706433:5000/app",
                "127.0.0.1:5000",
                "app",
                Some("latest"),
                None,
            ),
            (
                "169.254.43518/app",
                "169.254.169.254",
                "app",
                Some("latest"),
                None,
            ),
            (
                "[0:0:0:0:0:0:0:1]:5000/app",
                "[::1]:5000",
                "app",
                Some("latest"),
                None,
            ),
            (
                "[::FFFF:7F00:1]/app",
                "[::ffff:127.0.0.1]",
                "app",
                Some("latest"),
                None,
            ),
        ];
        check(&cases);
    }

    fn check(cases: &[Case]) {
        for (input, registry, repository, tag, digest) in cases {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), *registry, "{input}");
            assert_eq!(r.repository(), *repository, "{input}");
            assert_eq!(r.tag(), *tag, "{input}");
            assert_eq!(r.digest(), *digest, "{input}");
            assert_eq!(r.name(), format!("{registry}/{repository}"));
            // parse → normalise → parse is the identity.
            let again = ImageRef::parse(r.as_str()).unwrap_or_else(|e| panic!("{r}: {e}"));
            assert_eq!(again, r, "{input} → {r}");
        }
    }

    #[test]
    fn hostile_and_invalid_names_get_typed_errors() {
        assert_eq!(ImageRef::parse(""), Err(ReferenceError::Empty));
        for upper in ["Nginx", "docker.io/Library/nginx:1", "ghcr.io/Org/app"] {
            assert!(
                matches!(ImageRef::parse(upper), Err(ReferenceError::Uppercase(_))),
                "{upper}: {:?}",
                ImageRef::parse(upper)
            );
        }
        assert!(matches!(
            ImageRef::parse("nginx latest"),
            Err(ReferenceError::BadCharacters(_))
        ));
        assert!(matches!(
            ImageRef::parse("nginx\n"),
            Err(ReferenceError::BadCharacters(_))
        ));
        assert!(matches!(
            ImageRef::parse(&"a".repeat(5000)),
            Err(ReferenceError::TooLong(5000))
        ));
        let upper_digest = format!("nginx@{}", D.to_uppercase().replace("SHA256", "sha256"));
        for bad in [
            ":tag",
            "nginx@sha256:abc",
            "nginx@md5:ffffffffffffffffffffffffffffffff",
            upper_digest.as_str(),
            "-nginx",
            "nginx-",
            "nginx:",
            "nginx::1",
            "a//b",
            "a/.b",
            "a/b..c",
            "a/b___c",
            "a/b_.c",
            "http://registry/app",
            "registry.example.com:99999999999999999999/x",
            "registry.example.com:0/x",
            "registry.example.com:/x",
            "registry.example.com:x/app",
            "registry..example.com/app",
            "-registry.example.com/app",
            "registry.example.com./app",
            "256.1.1.1:5000/app",
            "1.2.3.4.5:5000/app",
            "10.0.0.08:5000/app",
            "4294967296:5000/app",
            "example.1/app",
            "[::1/app",
            "[::1]x/app",
            "[zz::1]/app",
            "app:-tag",
            "91ac9b26df583762234c1cdb2fc930364754ccc59bc752a2bfe298d2ea68f9ff",
        ] {
            assert!(
                matches!(ImageRef::parse(bad), Err(ReferenceError::Invalid { .. })),
                "{bad} should be invalid, got {:?}",
                ImageRef::parse(bad)
            );
        }
        // A name over 255 characters is refused even under the input cap.
        let long = format!("example.com/{}", "a".repeat(300));
        assert!(matches!(
            ImageRef::parse(&long),
            Err(ReferenceError::Invalid { .. })
        ));
        let long_tag = format!("nginx:{}", "t".repeat(129));
        assert!(ImageRef::parse(&long_tag).is_err());
    }

    #[test]
    fn long_texts_are_shown_capped_and_distinguishable() {
        let a = "a".repeat(4_000_000);
        let mut b = a.clone();
        b.push('b');
        let (sa, sb) = (shown(&a), shown(&b));
        assert!(sa.len() < 160 && sb.len() < 160, "{sa}");
        assert_ne!(sa, sb);
        assert!(sa.contains("4000000 bytes"));
        assert_eq!(shown("nginx"), "nginx");
        // Multi-byte text is cut on a character boundary.
        let wide = "é".repeat(300);
        assert!(shown(&wide).starts_with('é'));
    }

    #[test]
    fn registry_hosts_parse_on_their_own() {
        let r = RegistryHost::parse("Registry.Example.Com:443").unwrap();
        assert_eq!(
            (r.host(), r.port(), r.as_str()),
            ("registry.example.com", None, "registry.example.com")
        );
        let r = RegistryHost::parse("0x7f.1:5000").unwrap();
        assert_eq!(r.ip(), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(r.as_str(), "127.0.0.1:5000");
        assert!(RegistryHost::parse("a b").is_err());
        assert!(RegistryHost::parse("host:70000").is_err());
    }
}
