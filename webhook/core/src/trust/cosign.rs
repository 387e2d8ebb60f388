//! Classic cosign signatures ("simple signing"): the `sha256-<digest>.sig` tag
//! manifest holds one layer per signature, whose blob is the payload
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"..."},
//!   "image":{"docker-manifest-digest":"sha256:..."},
//!   "type":"cosign container image signature"},"optional":{...}}
//! ```
//!
//! and whose annotation `dev.cosignproject.cosign/signature` is the base64
//! signature over the payload bytes.

use serde::Deserialize;

use super::Rejection;

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// A decoded simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleSigning {
    /// `critical.identity.docker-reference`, when given.
    pub docker_reference: Option<String>,
    /// `critical.image.docker-manifest-digest`: what the signature covers.
    pub manifest_digest: String,
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Option<Identity>,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: Option<String>,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

impl SimpleSigning {
    /// Decodes a payload (without verifying anything).
    pub fn parse(payload: &[u8]) -> Result<Self, Rejection> {
        let p: Payload = serde_json::from_slice(payload).map_err(|e| {
            Rejection::MalformedEnvelope(format!("not a cosign simple-signing payload: {e}"))
        })?;
        if !p.critical.kind.eq_ignore_ascii_case(SIMPLE_SIGNING_TYPE) {
            return Err(Rejection::MalformedEnvelope(format!(
                "simple-signing type {:?} is not {SIMPLE_SIGNING_TYPE:?}",
                p.critical.kind
            )));
        }
        Ok(SimpleSigning {
            docker_reference: p.critical.identity.and_then(|i| i.docker_reference),
            manifest_digest: p.critical.image.docker_manifest_digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_fields_are_read_and_other_types_refused() {
        let ok = br#"{"critical":{"identity":{"docker-reference":"r/a"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":null}"#;
        let s = SimpleSigning::parse(ok).unwrap();
        assert_eq!(s.manifest_digest, "sha256:ab");
        assert_eq!(s.docker_reference.as_deref(), Some("r/a"));
        let other = br#"{"critical":{"image":{"docker-manifest-digest":"sha256:ab"},"type":"atomic container signature"}}"#;
        assert!(matches!(
            SimpleSigning::parse(other),
            Err(Rejection::MalformedEnvelope(_))
        ));
    }
}
