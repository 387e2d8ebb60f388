//! A TrustedProducer, loaded: parsed keys, compiled identities, the Sigstore
//! verifier for its trusted root; and the verification entry points.

use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use portcullis_crds::trusted_producer::ready_reason;
use portcullis_crds::{PublicKeySecretRef, TrustedProducerSpec, TrustedRootRef};
use regex::Regex;
use sigstore_types::bundle::VerificationMaterialContent;
use sigstore_types::{Artifact, Bundle, DerPublicKey, Sha256Hash, SignatureContent};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

use super::cosign::SimpleSigning;
use super::dsse::Envelope;
use super::keys::{KeyError, PublicKey};
use super::sigstore::{BundleArtifact, install_crypto_provider};
use super::statement::{DigestSet, Statement, check_not_future};
use super::{Rejection, Signer, Verified, VerifiedContent};

/// An empty trusted root: key-signed bundles of producers without a root are
/// still verified (signature and log-entry consistency), without a log.
const EMPTY_TRUSTED_ROOT: &str = r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}"#;

/// How a keyless identity's subject is compared.
#[derive(Debug, Clone)]
pub enum SubjectMatcher {
    /// Equal.
    Exact(String),
    /// The whole subject matches (anchored at both ends).
    Regex(Regex),
}

/// One keyless identity a producer accepts.
#[derive(Debug, Clone)]
pub struct KeylessMatcher {
    /// OIDC issuer, compared exactly.
    pub issuer: String,
    /// The subject comparison.
    pub subject: SubjectMatcher,
}

impl KeylessMatcher {
    /// True when a certificate's issuer and subject are this identity.
    pub fn matches(&self, issuer: &str, subject: &str) -> bool {
        self.issuer == issuer
            && match &self.subject {
                SubjectMatcher::Exact(s) => s == subject,
                SubjectMatcher::Regex(r) => r.is_match(subject),
            }
    }
}

/// Why a TrustedProducer cannot be loaded; [`ProducerError::reason`] is the
/// `Ready` condition's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// The spec breaks a CEL rule (file mode).
    #[error(transparent)]
    Spec(#[from] portcullis_crds::ProducerSpecError),
    /// A key does not parse or is not accepted.
    #[error("publicKeys[{index}]: {source}")]
    Key {
        /// Index in `publicKeys`.
        index: usize,
        /// What is wrong.
        source: KeyError,
    },
    /// A Secret (or its key) named by `secretRef` is missing.
    #[error("publicKeys[{index}]: Secret {namespace}/{name} has no key {key:?}")]
    SecretNotFound {
        /// Index in `publicKeys`.
        index: usize,
        /// Secret namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Key within the Secret.
        key: String,
    },
    /// The ConfigMap (or its key) named by `trustedRootRef` is missing.
    #[error("trustedRootRef: ConfigMap {namespace}/{name} has no key {key:?}")]
    TrustedRootNotFound {
        /// ConfigMap namespace.
        namespace: String,
        /// ConfigMap name.
        name: String,
        /// Key within the ConfigMap.
        key: String,
    },
    /// The trusted root is not a usable `trusted_root.json`.
    #[error("trusted root: {0}")]
    InvalidTrustedRoot(String),
    /// A `subjectRegExp` does not compile.
    #[error("keyless[{index}].subjectRegExp: {message}")]
    InvalidSubjectRegExp {
        /// Index in `keyless`.
        index: usize,
        /// The compiler's message.
        message: String,
    },
}

impl ProducerError {
    /// The `Ready` condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ProducerError::Spec(_) => ready_reason::INVALID_SPEC,
            ProducerError::Key { .. } => ready_reason::UNPARSEABLE_KEY,
            ProducerError::SecretNotFound { .. } => ready_reason::SECRET_NOT_FOUND,
            ProducerError::TrustedRootNotFound { .. } => ready_reason::TRUSTED_ROOT_NOT_FOUND,
            ProducerError::InvalidTrustedRoot(_) => ready_reason::INVALID_TRUSTED_ROOT,
            ProducerError::InvalidSubjectRegExp { .. } => ready_reason::INVALID_SUBJECT_REG_EXP,
        }
    }
}

/// A loaded TrustedProducer. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Producer {
    name: String,
    keys: Vec<PublicKey>,
    keyless: Vec<KeylessMatcher>,
    /// Verifier over the trusted root (or an empty one).
    verifier: Arc<Verifier>,
    has_root: bool,
    require_tlog: bool,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("name", &self.name)
            .field("keys", &self.keys)
            .field("keyless", &self.keyless)
            .field("has_root", &self.has_root)
            .field("require_tlog", &self.require_tlog)
            .finish()
    }
}

impl Producer {
    /// Loads a producer. `secret` returns the value of a Secret key (PEM text)
    /// and `config_map` the value of a ConfigMap key (`trusted_root.json`), or
    /// `None` when missing; in file mode both may always return `None`.
    pub fn load(
        name: &str,
        spec: &TrustedProducerSpec,
        secret: impl Fn(&PublicKeySecretRef) -> Option<String>,
        config_map: impl Fn(&TrustedRootRef) -> Option<String>,
    ) -> Result<Self, ProducerError> {
        spec.validate()?;
        let mut keys = Vec::with_capacity(spec.public_keys.len());
        for (index, source) in spec.public_keys.iter().enumerate() {
            let pem = match (&source.pem, &source.secret_ref) {
                (Some(pem), _) => pem.clone(),
                (None, Some(r)) => secret(r).ok_or_else(|| ProducerError::SecretNotFound {
                    index,
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                    key: r.key.clone(),
                })?,
                (None, None) => {
                    return Err(portcullis_crds::ProducerSpecError::KeySource(index).into());
                }
            };
            keys.push(
                PublicKey::from_pem(&pem).map_err(|source| ProducerError::Key { index, source })?,
            );
        }
        let mut keyless = Vec::with_capacity(spec.keyless.len());
        for (index, id) in spec.keyless.iter().enumerate() {
            let subject = match (&id.subject, &id.subject_reg_exp) {
                (Some(s), _) => SubjectMatcher::Exact(s.clone()),
                (None, Some(re)) => {
                    SubjectMatcher::Regex(Regex::new(&format!("^(?:{re})$")).map_err(|e| {
                        ProducerError::InvalidSubjectRegExp {
                            index,
                            message: e.to_string(),
                        }
                    })?)
                }
                (None, None) => {
                    return Err(portcullis_crds::ProducerSpecError::KeylessSubject(index).into());
                }
            };
            keyless.push(KeylessMatcher {
                issuer: id.issuer.clone(),
                subject,
            });
        }
        let root_json = match (&spec.trusted_root, &spec.trusted_root_ref) {
            (Some(inline), _) => Some(inline.clone()),
            (None, Some(r)) => {
                Some(
                    config_map(r).ok_or_else(|| ProducerError::TrustedRootNotFound {
                        namespace: r.namespace.clone(),
                        name: r.name.clone(),
                        key: r.key.clone(),
                    })?,
                )
            }
            (None, None) => None,
        };
        let verifier = verifier_for(root_json.as_deref().unwrap_or(EMPTY_TRUSTED_ROOT))?;
        Ok(Producer {
            name: name.to_owned(),
            keys,
            keyless,
            verifier: Arc::new(verifier),
            has_root: root_json.is_some(),
            require_tlog: spec.require_transparency_log,
        })
    }

    /// The TrustedProducer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parsed public keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The keyless identities.
    pub fn keyless(&self) -> &[KeylessMatcher] {
        &self.keyless
    }

    /// Whether a transparency-log entry is required.
    pub fn requires_tlog(&self) -> bool {
        self.require_tlog
    }

    /// Verifies a DSSE envelope (`application/vnd.dsse.envelope.v1+json`) whose
    /// in-toto statement must name one of `image` (the platform manifest, its
    /// index, ...). The envelope carries no log entry: a producer that requires
    /// one refuses it.
    pub fn verify_dsse(
        &self,
        envelope: &[u8],
        image: &DigestSet,
        now: Timestamp,
    ) -> Result<Verified, Rejection> {
        let env = Envelope::parse(envelope)?;
        if self.require_tlog {
            return Err(Rejection::NoTlogEntry);
        }
        let message = super::pae(&env.payload_type, &env.payload);
        let key = self.verify_signatures(&env.signatures, &message)?;
        let statement = Statement::from_payload(&env.payload)?;
        statement.subject_for(image)?;
        if let Some(t) = statement.signed_time {
            check_not_future(t, now)?;
        }
        Ok(Verified {
            producer: self.name.clone(),
            signer: Signer::Key(key),
            signed_time: statement.signed_time,
            log_time: None,
            content: VerifiedContent::Statement {
                statement,
                payload: env.payload,
            },
        })
    }

    /// Verifies a classic cosign signature of a report manifest: `payload` is the
    /// simple-signing layer's blob, `signature_b64` its
    /// `dev.cosignproject.cosign/signature` annotation, `report_manifest_digest`
    /// the digest (`sha256:<hex>`) of the manifest being judged.
    pub fn verify_simple_signing(
        &self,
        payload: &[u8],
        signature_b64: &str,
        report_manifest_digest: &str,
        _now: Timestamp,
    ) -> Result<Verified, Rejection> {
        use base64::Engine as _;
        if self.require_tlog {
            return Err(Rejection::NoTlogEntry);
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim())
            .map_err(|_| Rejection::MalformedEnvelope("the signature is not base64".into()))?;
        if signature.is_empty() {
            return Err(Rejection::NoSignature);
        }
        let key = self.verify_signatures(&[(String::new(), signature)], payload)?;
        let signing = SimpleSigning::parse(payload)?;
        if !DigestSet::new([report_manifest_digest]).contains(&signing.manifest_digest) {
            return Err(Rejection::DigestMismatch {
                signed: signing.manifest_digest,
                expected: report_manifest_digest.to_owned(),
            });
        }
        Ok(Verified {
            producer: self.name.clone(),
            signer: Signer::Key(key),
            content: VerifiedContent::SimpleSigning(signing),
            signed_time: None,
            log_time: None,
        })
    }

    /// Verifies a Sigstore bundle (media types v0.1 to v0.3), offline:
    /// key-signed bundles with one of the producer's keys, keyless ones with a
    /// certificate chained to the trusted root and naming one of the producer's
    /// identities. A log entry present in the bundle is verified against the
    /// trusted root; with `requireTransparencyLog` one must be present.
    pub fn verify_bundle(
        &self,
        bundle_json: &[u8],
        artifact: BundleArtifact<'_>,
        now: Timestamp,
    ) -> Result<Verified, Rejection> {
        if !install_crypto_provider() {
            return Err(Rejection::Unsupported("no crypto provider".into()));
        }
        let text = std::str::from_utf8(bundle_json)
            .map_err(|_| Rejection::MalformedEnvelope("bundle is not UTF-8".into()))?;
        let bundle = Bundle::from_json(text)
            .map_err(|e| Rejection::MalformedEnvelope(format!("not a Sigstore bundle: {e}")))?;
        let has_tlog = !bundle.verification_material.tlog_entries.is_empty();
        if self.require_tlog && !has_tlog {
            return Err(Rejection::NoTlogEntry);
        }
        // A log entry is verified when the producer has a root to verify it with.
        let verify_tlog = has_tlog && self.has_root;

        // What the signature must cover, and what it says.
        let (digest, statement) = match (&bundle.content, artifact) {
            (SignatureContent::DsseEnvelope(env), _) => {
                let statement = Statement::from_payload(env.payload.as_bytes())?;
                let acceptable = match artifact {
                    BundleArtifact::Image(set) => set.clone(),
                    BundleArtifact::Blob(blob) => DigestSet::new([sha256_hex(blob).as_str()]),
                };
                let subject = statement.subject_for(&acceptable)?;
                let hex = subject.digest.get("sha256").cloned().unwrap_or_default();
                (hex, Some((statement, env.payload.as_bytes().to_vec())))
            }
            (SignatureContent::MessageSignature(sig), BundleArtifact::Image(set)) => {
                let signed = sig
                    .message_digest
                    .as_ref()
                    .filter(|d| d.algorithm == sigstore_types::HashAlgorithm::Sha2256)
                    .map(|d| hex::encode(d.digest.as_bytes()))
                    .ok_or_else(|| {
                        Rejection::MalformedEnvelope(
                            "message signature without a sha256 message digest".into(),
                        )
                    })?;
                if !set.contains_hex(&signed) {
                    return Err(Rejection::SubjectMismatch {
                        named: vec![format!("sha256:{signed}")],
                    });
                }
                (signed, None)
            }
            (SignatureContent::MessageSignature(_), BundleArtifact::Blob(blob)) => {
                (sha256_hex(blob), None)
            }
            _ => {
                return Err(Rejection::Unsupported(
                    "bundle content is neither a DSSE envelope nor a message signature".into(),
                ));
            }
        };
        let sigstore_artifact: Artifact<'_> = match artifact {
            BundleArtifact::Blob(blob) => Artifact::Blob(blob),
            BundleArtifact::Image(_) => {
                let hash = Sha256Hash::from_hex(&digest)
                    .map_err(|e| Rejection::MalformedEnvelope(format!("subject digest: {e}")))?;
                hash.into()
            }
        };

        let no_evidence = !has_tlog
            && bundle
                .verification_material
                .timestamp_verification_data
                .rfc3161_timestamps
                .is_empty();
        let (signer, log_time) = match &bundle.verification_material.content {
            // sigstore-verify refuses a bundle with neither log entry nor
            // timestamp; key-signed, it is a plain signature with a key hint.
            VerificationMaterialContent::PublicKey(hint) if no_evidence => (
                self.verify_bare_keyed_bundle(&bundle.content, artifact, &hint.hint)?,
                None,
            ),
            VerificationMaterialContent::PublicKey(hint) => {
                let (signer, result) =
                    self.verify_keyed_bundle(&bundle, sigstore_artifact, &hint.hint, verify_tlog)?;
                (
                    signer,
                    verify_tlog.then(|| result.integrated_time()).flatten(),
                )
            }
            _ => {
                let (signer, result) =
                    self.verify_keyless_bundle(&bundle, sigstore_artifact, verify_tlog)?;
                (
                    signer,
                    verify_tlog.then(|| result.integrated_time()).flatten(),
                )
            }
        };
        if let Some(t) = log_time {
            check_not_future(t, now)?;
        }
        let (content, signed_time) = match statement {
            Some((statement, payload)) => {
                let t = statement.signed_time;
                (VerifiedContent::Statement { statement, payload }, t)
            }
            None => (
                VerifiedContent::MessageDigest(format!("sha256:{digest}")),
                None,
            ),
        };
        if let Some(t) = signed_time {
            check_not_future(t, now)?;
        }
        Ok(Verified {
            producer: self.name.clone(),
            signer,
            content,
            signed_time,
            log_time,
        })
    }

    fn verify_bare_keyed_bundle(
        &self,
        content: &SignatureContent,
        artifact: BundleArtifact<'_>,
        hint: &str,
    ) -> Result<Signer, Rejection> {
        let key = match (content, artifact) {
            (SignatureContent::DsseEnvelope(env), _) => {
                let keyid = env.signature.keyid.as_str();
                let hint = if keyid.is_empty() { hint } else { keyid };
                let message = super::pae(&env.payload_type, env.payload.as_bytes());
                self.verify_signatures(
                    &[(hint.to_owned(), env.signature.sig.as_bytes().to_vec())],
                    &message,
                )?
            }
            (SignatureContent::MessageSignature(sig), BundleArtifact::Blob(blob)) => self
                .verify_signatures(
                    &[(hint.to_owned(), sig.signature.as_bytes().to_vec())],
                    blob,
                )?,
            _ => {
                return Err(Rejection::Unsupported(
                    "a message signature with no log entry is verified against the signed bytes only"
                        .into(),
                ));
            }
        };
        Ok(Signer::Key(key))
    }

    fn verify_keyed_bundle(
        &self,
        bundle: &Bundle,
        artifact: Artifact<'_>,
        hint: &str,
        verify_tlog: bool,
    ) -> Result<(Signer, sigstore_verify::VerificationResult), Rejection> {
        // The key the hint names first, then the others.
        let mut order: Vec<&PublicKey> = self.keys.iter().collect();
        order.sort_by_key(|k| !k.id().matches_hint(hint));
        let mut named_key_error = None;
        for key in order {
            let mut policy =
                PublicKeyVerificationPolicy::new(DerPublicKey::new(key.spki_der().to_vec()));
            if !verify_tlog {
                policy = policy.skip_tlog_unsafe();
            }
            match self.verifier.verify(artifact.clone(), bundle, &policy) {
                Ok(result) => return Ok((Signer::Key(key.id()), result)),
                Err(e) if key.id().matches_hint(hint) => {
                    named_key_error = Some(map_error(e, Some(key.id())));
                }
                Err(e) if is_non_signature_error(&e) => {
                    // Log, structure, subject: the same whichever key is tried.
                    named_key_error.get_or_insert(map_error(e, Some(key.id())));
                }
                Err(_) => {}
            }
        }
        Err(named_key_error.unwrap_or_else(|| Rejection::UnknownKey {
            producer: self.name.clone(),
            key_hints: if hint.is_empty() {
                "no key hint".into()
            } else {
                format!("hint {hint}")
            },
        }))
    }

    fn verify_keyless_bundle(
        &self,
        bundle: &Bundle,
        artifact: Artifact<'_>,
        verify_tlog: bool,
    ) -> Result<(Signer, sigstore_verify::VerificationResult), Rejection> {
        if !self.has_root {
            return Err(Rejection::NoTrustedRoot);
        }
        if self.keyless.is_empty() {
            return Err(Rejection::UntrustedIdentity {
                issuer: None,
                subject: None,
            });
        }
        // Verify the chain, SCT, log and signature for any identity, then
        // authorise the certificate's identity against the producer's list.
        let mut policy = VerificationPolicy::any_identity();
        if !verify_tlog {
            policy = policy.skip_tlog_unsafe();
        }
        let result = self
            .verifier
            .verify(artifact, bundle, &policy)
            .map_err(|e| map_error(e, None))?;
        let issuer = result.issuer().map(str::to_owned);
        let subject = result.identity().map(|s| s.as_str().to_owned());
        match (&issuer, &subject) {
            (Some(i), Some(s))
                if result.certificate_verified()
                    && self.keyless.iter().any(|m| m.matches(i, s)) =>
            {
                Ok((
                    Signer::Identity {
                        issuer: i.clone(),
                        subject: s.clone(),
                    },
                    result,
                ))
            }
            _ => Err(Rejection::UntrustedIdentity { issuer, subject }),
        }
    }

    /// Tries each signature with each key; the first that verifies wins.
    fn verify_signatures(
        &self,
        signatures: &[(String, Vec<u8>)],
        message: &[u8],
    ) -> Result<super::KeyId, Rejection> {
        for (_, sig) in signatures {
            if let Some(key) = self.keys.iter().find(|k| k.verify(message, sig)) {
                return Ok(key.id());
            }
        }
        // Nothing verified: a signature that names one of our keys is a bad
        // signature (altered content); otherwise the signer is unknown.
        if let Some(key) = signatures.iter().find_map(|(hint, _)| {
            (!hint.is_empty())
                .then(|| self.keys.iter().find(|k| k.id().matches_hint(hint)))
                .flatten()
        }) {
            return Err(Rejection::BadSignature { key: key.id() });
        }
        let hints: Vec<&str> = signatures
            .iter()
            .map(|(h, _)| h.as_str())
            .filter(|h| !h.is_empty())
            .collect();
        Err(Rejection::UnknownKey {
            producer: self.name.clone(),
            key_hints: if hints.is_empty() {
                "no key hint".into()
            } else {
                format!("keyid {}", hints.join(", "))
            },
        })
    }
}

/// Tries every producer in order; the first verification wins. Otherwise each
/// producer's rejection, for the `UntrustedFindings` message.
pub fn verify_with_any<'p>(
    producers: impl IntoIterator<Item = &'p Producer>,
    verify: impl Fn(&Producer) -> Result<Verified, Rejection>,
) -> Result<Verified, Vec<(String, Rejection)>> {
    let mut rejections = Vec::new();
    for p in producers {
        match verify(p) {
            Ok(v) => return Ok(v),
            Err(r) => rejections.push((p.name().to_owned(), r)),
        }
    }
    Err(rejections)
}

fn verifier_for(root_json: &str) -> Result<Verifier, ProducerError> {
    let root = sigstore_trust_root::TrustedRoot::from_json(root_json)
        .map_err(|e| ProducerError::InvalidTrustedRoot(e.to_string()))?;
    if !install_crypto_provider() {
        return Err(ProducerError::InvalidTrustedRoot(
            "no crypto provider to load it with".into(),
        ));
    }
    Verifier::new(&root).map_err(|e| ProducerError::InvalidTrustedRoot(e.to_string()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Errors that do not depend on which key was tried.
fn is_non_signature_error(e: &sigstore_verify::Error) -> bool {
    use sigstore_verify::Error as E;
    matches!(
        e,
        E::TransparencyLog(_)
            | E::Timestamp(_)
            | E::ArtifactMismatch(_)
            | E::Bundle(_)
            | E::InvalidBundle(_)
    )
}

fn map_error(e: sigstore_verify::Error, key: Option<super::KeyId>) -> Rejection {
    use sigstore_verify::{Error as E, TimestampError};
    match e {
        E::SignatureInvalid(_) | E::Crypto(_) => match key {
            Some(key) => Rejection::BadSignature { key },
            None => Rejection::Certificate(format!("signature does not verify: {e}")),
        },
        E::IdentityMismatch { actual, .. } => Rejection::UntrustedIdentity {
            issuer: None,
            subject: actual.map(|a| a.as_str().to_owned()),
        },
        E::IssuerMismatch { actual, .. } => Rejection::UntrustedIdentity {
            issuer: actual,
            subject: None,
        },
        E::ArtifactMismatch(m) => Rejection::SubjectMismatch { named: vec![m] },
        E::TransparencyLog(t) => Rejection::TransparencyLog(t.to_string()),
        E::Timestamp(TimestampError::NoVerifiedTimestamp(m)) => Rejection::NoVerifiedTime(m),
        E::Certificate(c) => Rejection::Certificate(c.to_string()),
        E::Bundle(b) => bundle_rejection(b.to_string()),
        E::InvalidBundle(m) => bundle_rejection(m),
        other => Rejection::Unsupported(other.to_string()),
    }
}

fn bundle_rejection(message: String) -> Rejection {
    if message.contains("inclusion proof") || message.contains("tlog") {
        Rejection::TransparencyLog(message)
    } else {
        Rejection::MalformedEnvelope(message)
    }
}
