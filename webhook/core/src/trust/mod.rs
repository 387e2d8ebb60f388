//! Trusted evidence (DESIGN §2 TrustedProducer, issue 9): which attached
//! artifacts a producer vouches for.
//!
//! Pure functions: no I/O, no async, no clock reads by this module (`now` is a
//! parameter; the one exception is inside `sigstore-verify`, which refuses a
//! transparency-log time ahead of the system clock). The caller resolves
//! Secrets and ConfigMaps, fetches the artifacts, and passes bytes in.
//!
//! Verified shapes:
//! - DSSE envelopes (`application/vnd.dsse.envelope.v1+json`) carrying an
//!   in-toto Statement, signed with one of the producer's keys
//!   ([`Producer::verify_dsse`]);
//! - Sigstore bundles v0.1–v0.3, key-signed or keyless, DSSE or message
//!   signature, offline against the producer's trusted root
//!   ([`Producer::verify_bundle`]);
//! - classic cosign "simple signing" of a report manifest
//!   ([`Producer::verify_simple_signing`]).
//!
//! Every refusal is a [`Rejection`] whose `Display` fits a decision log line.

mod cosign;
mod dsse;
mod keys;
mod producer;
mod sigstore;
mod statement;

use std::fmt;

use jiff::Timestamp;

pub use cosign::{COSIGN_SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, SimpleSigning};
pub use dsse::{DSSE_ENVELOPE_MEDIA_TYPE, INTOTO_PAYLOAD_TYPE, pae};
pub use keys::{KeyAlgorithm, KeyError, KeyId, MAX_RSA_BITS, MIN_RSA_BITS, PublicKey};
pub use producer::{KeylessMatcher, Producer, ProducerError, SubjectMatcher, verify_with_any};
pub use sigstore::{BUNDLE_MEDIA_TYPES, BundleArtifact, install_crypto_provider};
pub use statement::{
    DigestSet, MAX_CLOCK_SKEW, STATEMENT_V01, STATEMENT_V1, Statement, Subject, check_not_future,
};

/// What a producer vouched for.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Name of the TrustedProducer whose key or identity verified.
    pub producer: String,
    /// The key or keyless identity that verified.
    pub signer: Signer,
    /// What the signature covers.
    pub content: VerifiedContent,
    /// The time inside the signed content (scan finish or start, report or VEX
    /// creation), when it names one.
    pub signed_time: Option<Timestamp>,
    /// The transparency log's integrated time, when a log entry was verified.
    pub log_time: Option<Timestamp>,
}

impl Verified {
    /// The time "newest" is judged by: the signed content's own time, else the
    /// verified log time.
    pub fn time(&self) -> Option<Timestamp> {
        self.signed_time.or(self.log_time)
    }

    /// The verified in-toto statement and its payload, for DSSE content.
    pub fn statement(&self) -> Option<(&Statement, &[u8])> {
        match &self.content {
            VerifiedContent::Statement { statement, payload } => Some((statement, payload)),
            _ => None,
        }
    }
}

/// Who signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// One of the producer's public keys.
    Key(KeyId),
    /// A Sigstore keyless identity from a Fulcio certificate.
    Identity {
        /// OIDC issuer.
        issuer: String,
        /// Certificate subject (email or URI).
        subject: String,
    },
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::Key(id) => write!(f, "key {id}"),
            Signer::Identity { issuer, subject } => write!(f, "identity {subject} ({issuer})"),
        }
    }
}

/// What a verified signature covers.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifiedContent {
    /// An in-toto Statement (DSSE envelope or DSSE bundle); the payload is the
    /// statement's bytes, ready for `findings::parse_report` or the VEX parsers.
    Statement {
        /// The decoded statement.
        statement: Statement,
        /// The signed payload.
        payload: Vec<u8>,
    },
    /// A message signature over a blob with this digest (`sha256:<hex>`), e.g.
    /// a report manifest: its layers are then covered by their digests.
    MessageDigest(String),
    /// A cosign simple-signing payload naming a manifest digest.
    SimpleSigning(SimpleSigning),
}

/// Why an artifact does not count as evidence from a producer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a DSSE envelope / statement / bundle / simple-signing payload.
    #[error("malformed signed artifact: {0}")]
    MalformedEnvelope(String),
    /// An envelope or manifest with no signature at all.
    #[error("not signed")]
    NoSignature,
    /// A signature that names one of the producer's keys, but does not verify
    /// (the content was altered after signing, or the signature is corrupt).
    #[error("bad signature: key {key} does not verify it (content altered after signing?)")]
    BadSignature {
        /// The key the signature names.
        key: KeyId,
    },
    /// No key of the producer verifies the signature, and it names none of them.
    #[error("signed by a key that is not one of {producer}'s ({key_hints})")]
    UnknownKey {
        /// The producer whose keys were tried.
        producer: String,
        /// The key hints the signatures carry, comma-separated, or "no key hint".
        key_hints: String,
    },
    /// The statement is about other digests than the image being judged.
    #[error("subject mismatch: the statement names {}, not the judged image", list(.named))]
    SubjectMismatch {
        /// The sha256 digests the statement names.
        named: Vec<String>,
    },
    /// A signed manifest digest (cosign simple signing) other than the report's.
    #[error("digest mismatch: the signature covers {signed}, the report manifest is {expected}")]
    DigestMismatch {
        /// The digest the signature covers.
        signed: String,
        /// The digest of the manifest being judged.
        expected: String,
    },
    /// A signed or logged time more than five minutes after `now`.
    #[error("future time: signed {time}, now is {now}")]
    FutureTime {
        /// The offending time.
        time: Timestamp,
        /// The judging time.
        now: Timestamp,
    },
    /// A keyless signature by an identity the producer does not list.
    #[error("untrusted identity: {} issued by {}", opt(.subject), opt(.issuer))]
    UntrustedIdentity {
        /// Issuer in the certificate.
        issuer: Option<String>,
        /// Subject in the certificate.
        subject: Option<String>,
    },
    /// A keyless signature but the producer has no trusted root.
    #[error("keyless signature, but the producer has no trusted root")]
    NoTrustedRoot,
    /// The producer requires a transparency-log entry and there is none.
    #[error("no transparency log entry (the producer requires one)")]
    NoTlogEntry,
    /// The log entry does not verify against the trusted root.
    #[error("transparency log: {0}")]
    TransparencyLog(String),
    /// The Fulcio certificate does not chain to the trusted root or is invalid.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A keyless signature with no verified time (no log entry, no timestamp).
    #[error("no verified signing time: {0}")]
    NoVerifiedTime(String),
    /// A bundle or key combination this verifier does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "no sha256 digest".to_owned()
    } else {
        items.join(", ")
    }
}

fn opt(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(none)")
}
