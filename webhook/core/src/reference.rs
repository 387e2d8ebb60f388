//! Image references, normalised the way the kubelet does it
//! (`nginx` → `docker.io/library/nginx:latest`).
//!
//! Parsing is delegated to `oci-spec`'s port of the distribution reference
//! grammar; this wrapper adds an input cap (image names are attacker-controlled)
//! and errors that say what is wrong.

use std::fmt;

use oci_spec::distribution::{ParseError, Reference};

/// Longest image reference accepted (registry, path, tag and digest together).
/// The grammar allows 255 characters of repository, 128 of tag and a sha512 digest.
pub const MAX_REFERENCE_LEN: usize = 1024;

/// Why an image reference is refused (`InvalidReference`).
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
        /// The input.
        reference: String,
        /// The grammar's reason.
        reason: String,
    },
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    inner: Reference,
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
            return Err(ReferenceError::BadCharacters(input.to_owned()));
        }
        let inner = Reference::try_from(input).map_err(|err| {
            // The grammar reports upper case as a generic format error; say it plainly.
            let lowered_parses = Reference::try_from(input.to_ascii_lowercase().as_str()).is_ok();
            if matches!(err, ParseError::NameContainsUppercase)
                || (matches!(err, ParseError::ReferenceInvalidFormat)
                    && lowered_parses
                    && name_part(input).chars().any(|c| c.is_ascii_uppercase()))
            {
                ReferenceError::Uppercase(input.to_owned())
            } else {
                ReferenceError::Invalid {
                    reference: input.to_owned(),
                    reason: err.to_string(),
                }
            }
        })?;
        if let Some((_, port)) = inner.registry().rsplit_once(':')
            && port.parse::<u16>().is_err()
        {
            return Err(ReferenceError::Invalid {
                reference: input.to_owned(),
                reason: format!("registry port {port} is not a port number"),
            });
        }
        let name = format!("{}/{}", inner.registry(), inner.repository());
        let whole = inner.whole();
        Ok(ImageRef { inner, name, whole })
    }

    /// Registry host (with port), e.g. `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// Repository path, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        self.inner.repository()
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
        self.inner.tag()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// The underlying `oci-spec` reference, for registry clients.
    pub fn as_reference(&self) -> &Reference {
        &self.inner
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

/// The part of a reference before its tag or digest (a registry port's colon is
/// followed by a `/`, a tag's is not).
fn name_part(input: &str) -> &str {
    let without_digest = input.split('@').next().unwrap_or(input);
    match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:91ac9b26df583762234c1cdb2fc930364754ccc59bc752a2bfe298d2ea68f9ff";

    #[test]
    fn normalises_like_the_kubelet() {
        let with_digest = format!("myregistry.azurecr.io/team/app:1.0@{D}");
        let by_digest = format!("securesystemsengineering/charlie-image@{D}");
        // (input, registry, repository, tag, digest)
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
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
            // A host-like first component without a dot stays a Docker Hub namespace.
            (
                "registry/app",
                "docker.io",
                "registry/app",
                Some("latest"),
                None,
            ),
        ];
        for (input, registry, repository, tag, digest) in cases {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repository, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.digest(), digest, "{input}");
            assert_eq!(r.name(), format!("{registry}/{repository}"));
        }
        assert_eq!(
            ImageRef::parse("nginx").map(|r| r.to_string()),
            Ok("docker.io/library/nginx:latest".into())
        );
    }

    #[test]
    fn hostile_and_invalid_names_get_typed_errors() {
        assert_eq!(ImageRef::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            ImageRef::parse("Nginx"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            ImageRef::parse("docker.io/Library/nginx:1"),
            Err(ReferenceError::Uppercase(_))
        ));
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
        for bad in [
            ":tag",
            "nginx@sha256:abc",
            "nginx@md5:ffffffffffffffffffffffffffffffff",
            "-nginx",
            "nginx:",
            "nginx::1",
            "a//b",
            "http://registry/app",
            "registry.example.com:99999999999999999999/x",
        ] {
            assert!(
                matches!(ImageRef::parse(bad), Err(ReferenceError::Invalid { .. })),
                "{bad} should be invalid, got {:?}",
                ImageRef::parse(bad)
            );
        }
        // A repository path over 255 characters is refused even under the input cap.
        let long = format!("example.com/{}", "a".repeat(300));
        assert!(matches!(
            ImageRef::parse(&long),
            Err(ReferenceError::Invalid { .. })
        ));
    }
}
