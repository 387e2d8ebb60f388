//! `TrustedProducer`: who may vouch for vulnerability findings (DESIGN §2).
//!
//! A rule that names producers in `findings.trustedProducers` uses only the
//! artifacts whose signature verifies for one of them: a DSSE envelope signed
//! with one of `publicKeys`, a Sigstore bundle signed with one of those keys or
//! by one of the `keyless` identities (certificate chained to the trusted
//! root), or a classic cosign signature of the report manifest.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A producer of vulnerability evidence (a CI pipeline, a scanner service, a
/// vendor) and how to recognise its signatures: public keys, Sigstore keyless
/// identities, or both.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "TrustedProducer",
    plural = "trustedproducers",
    shortname = "tp",
    category = "portcullis",
    status = "TrustedProducerStatus",
    doc = "A producer of vulnerability findings and VEX that Portcullis rules may trust: its public keys and Sigstore keyless identities.",
    printcolumn(
        name = "Keyless Issuer",
        type_ = "string",
        json_path = ".spec.keyless[*].issuer"
    ),
    printcolumn(
        name = "Tlog",
        type_ = "boolean",
        json_path = ".spec.requireTransparencyLog"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.publicKeys) && size(self.publicKeys) > 0) || (has(self.keyless) && size(self.keyless) > 0)").message("set at least one of publicKeys and keyless"),
    validation = Rule::new("!has(self.keyless) || size(self.keyless) == 0 || has(self.trustedRootRef) || has(self.trustedRoot)").message("keyless identities need trustedRootRef or trustedRoot"),
    validation = Rule::new("!(has(self.trustedRootRef) && has(self.trustedRoot))").message("set at most one of trustedRootRef and trustedRoot"),
    validation = Rule::new("!has(self.requireTransparencyLog) || !self.requireTransparencyLog || has(self.trustedRootRef) || has(self.trustedRoot)").message("requireTransparencyLog needs trustedRootRef or trustedRoot (the log's keys are in it)")
)]
pub struct TrustedProducerSpec {
    /// Free text for people: who this producer is, who owns its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    /// Public keys whose signatures this producer makes: ECDSA P-256 or P-384,
    /// Ed25519, or RSA of at least 2048 bits, as PEM `PUBLIC KEY` blocks
    /// (SubjectPublicKeyInfo, what `cosign generate-key-pair` writes to
    /// `cosign.pub`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<PublicKeySource>,

    /// Sigstore keyless identities: a signature verifies for this producer when its
    /// Fulcio certificate chains to the trusted root and names one of these
    /// identities (OIDC issuer and subject).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyless: Vec<KeylessIdentity>,

    /// ConfigMap key holding a Sigstore `trusted_root.json` (Fulcio CAs, Rekor and
    /// CT log keys, timestamp authorities). Required with `keyless` or
    /// `requireTransparencyLog`. Verification is offline: nothing is fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_root_ref: Option<TrustedRootRef>,

    /// The `trusted_root.json` document itself, instead of `trustedRootRef` (for
    /// policy files, where no ConfigMap exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1_048_576))]
    pub trusted_root: Option<String>,

    /// Accept only signatures recorded in a transparency log of the trusted root
    /// (a Rekor entry with a verified inclusion proof or promise). A bare DSSE
    /// envelope or cosign signature, which carries no log entry, is then rejected.
    #[serde(default)]
    pub require_transparency_log: bool,
}

/// One public key, given inline or read from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.pem) != has(self.secretRef)").message("set exactly one of pem and secretRef")
)]
pub struct PublicKeySource {
    /// The key as a PEM `PUBLIC KEY` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"-----BEGIN PUBLIC KEY-----"), length(max = 16384))]
    pub pem: Option<String>,

    /// A Secret key holding the PEM block (e.g. the `cosign.pub` key of a Secret
    /// written by `cosign generate-key-pair k8s://NS/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<PublicKeySecretRef>,
}

/// A key of a Secret holding a PEM public key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeySecretRef {
    /// Namespace of the Secret.
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_public_key_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_public_key_key() -> String {
    "cosign.pub".to_owned()
}

/// A Sigstore keyless signer: the OIDC issuer and subject in its Fulcio certificate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.subject) != has(self.subjectRegExp)").message("set exactly one of subject and subjectRegExp")
)]
pub struct KeylessIdentity {
    /// OIDC issuer, compared exactly, e.g.
    /// `https://token.actions.githubusercontent.com`.
    #[schemars(length(min = 1))]
    pub issuer: String,

    /// Certificate subject (SAN: an email address or a URI), compared exactly, e.g.
    /// `https://github.com/acme/app/.github/workflows/scan.yml@refs/heads/main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub subject: Option<String>,

    /// A regular expression the whole subject must match (anchored at both ends),
    /// e.g. `https://github\.com/acme/[^/]+/\.github/workflows/scan\.yml@refs/heads/main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub subject_reg_exp: Option<String>,
}

/// A ConfigMap key holding a Sigstore `trusted_root.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustedRootRef {
    /// Namespace of the ConfigMap.
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// Name of the ConfigMap.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the ConfigMap.
    #[serde(default = "default_trusted_root_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_trusted_root_key() -> String {
    "trusted_root.json".to_owned()
}

/// Observed state of a trusted producer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustedProducerStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: every key parsed and the trusted root loaded; otherwise the reason
    /// (see [`ready_reason`]) and a message naming the entry at fault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Reasons of the `Ready` condition of a TrustedProducer.
pub mod ready_reason {
    /// Every key and the trusted root loaded (status `True`).
    pub const LOADED: &str = "Loaded";
    /// A `pem` (or Secret value) is not a PEM public key of a supported type and size.
    pub const UNPARSEABLE_KEY: &str = "UnparseableKey";
    /// A `secretRef` names a Secret or key that does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// `trustedRootRef` names a ConfigMap or key that does not exist.
    pub const TRUSTED_ROOT_NOT_FOUND: &str = "TrustedRootNotFound";
    /// The trusted root is not a usable `trusted_root.json`.
    pub const INVALID_TRUSTED_ROOT: &str = "InvalidTrustedRoot";
    /// A `subjectRegExp` does not compile.
    pub const INVALID_SUBJECT_REG_EXP: &str = "InvalidSubjectRegExp";
    /// The spec breaks a rule the API server would check (file mode).
    pub const INVALID_SPEC: &str = "InvalidSpec";
}

/// A producer the API server would reject, found when it arrives by another
/// path (policy files).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProducerSpecError {
    /// Neither `publicKeys` nor `keyless`.
    #[error("set at least one of publicKeys and keyless")]
    NoKeys,
    /// `keyless` (or `requireTransparencyLog`) without a trusted root.
    #[error("{0} needs trustedRootRef or trustedRoot")]
    MissingTrustedRoot(&'static str),
    /// Both `trustedRootRef` and `trustedRoot`.
    #[error("set at most one of trustedRootRef and trustedRoot")]
    TwoTrustedRoots,
    /// A `publicKeys` entry with both or neither of `pem` and `secretRef`.
    #[error("publicKeys[{0}]: set exactly one of pem and secretRef")]
    KeySource(usize),
    /// A `keyless` entry with both or neither of `subject` and `subjectRegExp`.
    #[error("keyless[{0}]: set exactly one of subject and subjectRegExp")]
    KeylessSubject(usize),
    /// An empty required string.
    #[error("{0}: must not be empty")]
    Empty(String),
}

impl TrustedProducerSpec {
    /// Checks what the CRD schema and its CEL rules check, for producers that do
    /// not pass through the API server. Whether keys parse and the trusted root
    /// loads is checked where they are loaded (`portcullis_core::trust`).
    pub fn validate(&self) -> Result<(), ProducerSpecError> {
        if self.public_keys.is_empty() && self.keyless.is_empty() {
            return Err(ProducerSpecError::NoKeys);
        }
        let has_root = self.trusted_root_ref.is_some() || self.trusted_root.is_some();
        if self.trusted_root_ref.is_some() && self.trusted_root.is_some() {
            return Err(ProducerSpecError::TwoTrustedRoots);
        }
        if !self.keyless.is_empty() && !has_root {
            return Err(ProducerSpecError::MissingTrustedRoot("keyless"));
        }
        if self.require_transparency_log && !has_root {
            return Err(ProducerSpecError::MissingTrustedRoot(
                "requireTransparencyLog",
            ));
        }
        for (i, key) in self.public_keys.iter().enumerate() {
            if key.pem.is_some() == key.secret_ref.is_some() {
                return Err(ProducerSpecError::KeySource(i));
            }
            if let Some(r) = &key.secret_ref {
                for (field, value) in [
                    ("namespace", &r.namespace),
                    ("name", &r.name),
                    ("key", &r.key),
                ] {
                    if value.is_empty() {
                        return Err(ProducerSpecError::Empty(format!(
                            "publicKeys[{i}].secretRef.{field}"
                        )));
                    }
                }
            }
        }
        for (i, id) in self.keyless.iter().enumerate() {
            if id.issuer.is_empty() {
                return Err(ProducerSpecError::Empty(format!("keyless[{i}].issuer")));
            }
            match (&id.subject, &id.subject_reg_exp) {
                (Some(s), None) | (None, Some(s)) if !s.is_empty() => {}
                (Some(_), None) => {
                    return Err(ProducerSpecError::Empty(format!("keyless[{i}].subject")));
                }
                (None, Some(_)) => {
                    return Err(ProducerSpecError::Empty(format!(
                        "keyless[{i}].subjectRegExp"
                    )));
                }
                _ => return Err(ProducerSpecError::KeylessSubject(i)),
            }
        }
        if let Some(r) = &self.trusted_root_ref {
            for (field, value) in [
                ("namespace", &r.namespace),
                ("name", &r.name),
                ("key", &r.key),
            ] {
                if value.is_empty() {
                    return Err(ProducerSpecError::Empty(format!("trustedRootRef.{field}")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem() -> PublicKeySource {
        PublicKeySource {
            pem: Some("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into()),
            secret_ref: None,
        }
    }

    fn spec() -> TrustedProducerSpec {
        TrustedProducerSpec {
            description: None,
            public_keys: vec![pem()],
            keyless: Vec::new(),
            trusted_root_ref: None,
            trusted_root: None,
            require_transparency_log: false,
        }
    }

    fn identity() -> KeylessIdentity {
        KeylessIdentity {
            issuer: "https://token.actions.githubusercontent.com".into(),
            subject: Some(
                "https://github.com/acme/app/.github/workflows/scan.yml@refs/heads/main".into(),
            ),
            subject_reg_exp: None,
        }
    }

    #[test]
    fn validate_mirrors_the_cel_rules() {
        assert_eq!(spec().validate(), Ok(()));
        let mut s = spec();
        s.public_keys.clear();
        assert_eq!(s.validate(), Err(ProducerSpecError::NoKeys));
        s.keyless.push(identity());
        assert_eq!(
            s.validate(),
            Err(ProducerSpecError::MissingTrustedRoot("keyless"))
        );
        s.trusted_root = Some("{}".into());
        assert_eq!(s.validate(), Ok(()));
        s.trusted_root_ref = Some(TrustedRootRef {
            namespace: "portcullis".into(),
            name: "sigstore".into(),
            key: default_trusted_root_key(),
        });
        assert_eq!(s.validate(), Err(ProducerSpecError::TwoTrustedRoots));

        let mut s = spec();
        s.require_transparency_log = true;
        assert_eq!(
            s.validate(),
            Err(ProducerSpecError::MissingTrustedRoot(
                "requireTransparencyLog"
            ))
        );

        let mut s = spec();
        s.public_keys[0].secret_ref = Some(PublicKeySecretRef {
            namespace: "ci".into(),
            name: "signer".into(),
            key: default_public_key_key(),
        });
        assert_eq!(s.validate(), Err(ProducerSpecError::KeySource(0)));
        s.public_keys[0].pem = None;
        assert_eq!(s.validate(), Ok(()));

        let mut s = spec();
        s.trusted_root = Some("{}".into());
        let mut both = identity();
        both.subject_reg_exp = Some(".*".into());
        s.keyless.push(both);
        assert_eq!(s.validate(), Err(ProducerSpecError::KeylessSubject(0)));
        s.keyless[0].subject = None;
        s.keyless[0].subject_reg_exp = None;
        assert_eq!(s.validate(), Err(ProducerSpecError::KeylessSubject(0)));
    }
}
