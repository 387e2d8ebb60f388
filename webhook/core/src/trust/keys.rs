//! Producer public keys: PEM SubjectPublicKeyInfo in, a verifier out.
//!
//! Accepted: ECDSA P-256 and P-384, Ed25519, RSA of at least 2048 bits (up to
//! 8192, ring's limit). Everything else is refused with a [`KeyError`] that says
//! what the key is and why it is not accepted.

use std::fmt;

use der::asn1::UintRef;
use der::{Decode, Sequence};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use spki::ObjectIdentifier;
use spki::SubjectPublicKeyInfoRef;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_SECP256K1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.10");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_DSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus ring verifies, in bits.
pub const MAX_RSA_BITS: usize = 8192;

/// Algorithm of a producer key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256.
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA (PKCS#1 v1.5 or PSS, SHA-256/384/512), with its modulus size in bits.
    Rsa {
        /// Modulus size.
        bits: usize,
    },
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyAlgorithm::Ed25519 => f.write_str("Ed25519"),
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
        }
    }
}

/// Stable identity of a key: the SHA-256 of its DER SubjectPublicKeyInfo, for
/// cache keys, log lines and DSSE `keyid` / Sigstore key hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 32]);

impl KeyId {
    /// The id of a DER SubjectPublicKeyInfo.
    pub fn of_spki(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut id = [0u8; 32];
        id.copy_from_slice(digest.as_ref());
        KeyId(id)
    }

    /// Lower-case hex, as written in DSSE `keyid` fields.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// True when a signature's key hint names this key: its hex form, its
    /// `sha256:`-prefixed hex form, or its standard base64 form (Sigstore's
    /// public key hint).
    pub fn matches_hint(&self, hint: &str) -> bool {
        use base64::Engine as _;
        let hint = hint.trim();
        let hex_hint = hint.strip_prefix("sha256:").unwrap_or(hint);
        hex_hint.eq_ignore_ascii_case(&self.to_hex())
            || base64::engine::general_purpose::STANDARD
                .decode(hint)
                .is_ok_and(|b| b == self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

/// Why a PEM block is not an accepted producer key (TrustedProducer reason
/// `UnparseableKey`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not PEM, or not a `PUBLIC KEY` block.
    #[error("not a PEM PUBLIC KEY block: {0}")]
    NotPem(String),
    /// PEM, but the DER inside is not a SubjectPublicKeyInfo.
    #[error("not a SubjectPublicKeyInfo: {0}")]
    NotSpki(String),
    /// An elliptic curve other than P-256 and P-384.
    #[error("ECDSA key on curve {0}: only P-256 and P-384 are accepted")]
    UnsupportedCurve(String),
    /// An RSA key below [`MIN_RSA_BITS`] or above [`MAX_RSA_BITS`].
    #[error("RSA key of {bits} bits: {MIN_RSA_BITS} to {MAX_RSA_BITS} bits are accepted")]
    RsaSize {
        /// Modulus size of the key.
        bits: usize,
    },
    /// Another key type (DSA, Ed448, RSA-PSS-restricted, ...).
    #[error(
        "{0} keys are not accepted: use ECDSA P-256/P-384, Ed25519 or RSA of at least 2048 bits"
    )]
    UnsupportedType(String),
    /// The key bytes do not decode for their algorithm.
    #[error("malformed {algorithm} key: {message}")]
    Malformed {
        /// The algorithm named by the SPKI.
        algorithm: String,
        /// What is wrong.
        message: String,
    },
}

/// A parsed producer public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    id: KeyId,
    algorithm: KeyAlgorithm,
    /// The DER SubjectPublicKeyInfo.
    spki: Vec<u8>,
    /// The `subjectPublicKey` bit string contents (SEC1 point, raw Ed25519 key,
    /// PKCS#1 RSAPublicKey), which ring takes.
    raw: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.algorithm, self.id)
    }
}

#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    #[allow(dead_code, reason = "decoded to validate the structure")]
    public_exponent: UintRef<'a>,
}

impl PublicKey {
    /// Parses one PEM `PUBLIC KEY` block (surrounding whitespace allowed).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = sigstore_types::DerPublicKey::from_pem(pem.trim())
            .map_err(|e| KeyError::NotPem(e.to_string()))?;
        Self::from_spki_der(der.as_bytes())
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let spki =
            SubjectPublicKeyInfoRef::from_der(der).map_err(|e| KeyError::NotSpki(e.to_string()))?;
        let raw = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| KeyError::NotSpki("public key bit string has unused bits".into()))?;
        let oid = spki.algorithm.oid;
        let malformed = |algorithm: &str, message: &str| KeyError::Malformed {
            algorithm: algorithm.to_owned(),
            message: message.to_owned(),
        };
        let algorithm = if oid == OID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|_| malformed("ECDSA", "no named curve"))?;
            let (algorithm, len) = if curve == OID_P256 {
                (KeyAlgorithm::EcdsaP256, 65)
            } else if curve == OID_P384 {
                (KeyAlgorithm::EcdsaP384, 97)
            } else {
                return Err(KeyError::UnsupportedCurve(curve_name(curve)));
            };
            if raw.len() != len || raw.first() != Some(&0x04) {
                return Err(malformed(
                    "ECDSA",
                    "the point must be uncompressed (0x04 || X || Y)",
                ));
            }
            algorithm
        } else if oid == OID_ED25519 {
            if raw.len() != 32 {
                return Err(malformed("Ed25519", "the key must be 32 bytes"));
            }
            KeyAlgorithm::Ed25519
        } else if oid == OID_RSA {
            let rsa = RsaPublicKey::from_der(raw).map_err(|e| malformed("RSA", &e.to_string()))?;
            let m = rsa.modulus.as_bytes();
            let bits = m
                .first()
                .map_or(0, |b| (m.len() - 1) * 8 + (8 - b.leading_zeros() as usize));
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(KeyError::RsaSize { bits });
            }
            KeyAlgorithm::Rsa { bits }
        } else {
            let name = if oid == OID_DSA {
                "DSA".to_owned()
            } else if oid == OID_ED448 {
                "Ed448".to_owned()
            } else if oid == OID_RSA_PSS {
                "RSASSA-PSS (restricted)".to_owned()
            } else {
                format!("algorithm {oid}")
            };
            return Err(KeyError::UnsupportedType(name));
        };
        Ok(PublicKey {
            id: KeyId::of_spki(der),
            algorithm,
            spki: der.to_vec(),
            raw: raw.to_vec(),
        })
    }

    /// The key's stable id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// True when `signature` over `message` verifies with this key. ECDSA
    /// signatures are accepted DER-encoded (what cosign, securesystemslib and
    /// Sigstore write) or as fixed-size `r || s`; RSA as PKCS#1 v1.5 or PSS
    /// with SHA-256, SHA-384 or SHA-512.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithms: &[&'static dyn VerificationAlgorithm] = match self.algorithm {
            KeyAlgorithm::EcdsaP256 => &[
                &signature::ECDSA_P256_SHA256_ASN1,
                &signature::ECDSA_P256_SHA256_FIXED,
            ],
            KeyAlgorithm::EcdsaP384 => &[
                &signature::ECDSA_P384_SHA384_ASN1,
                &signature::ECDSA_P384_SHA384_FIXED,
            ],
            KeyAlgorithm::Ed25519 => &[&signature::ED25519],
            KeyAlgorithm::Rsa { .. } => &[
                &signature::RSA_PKCS1_2048_8192_SHA256,
                &signature::RSA_PSS_2048_8192_SHA256,
                &signature::RSA_PKCS1_2048_8192_SHA384,
                &signature::RSA_PSS_2048_8192_SHA384,
                &signature::RSA_PKCS1_2048_8192_SHA512,
                &signature::RSA_PSS_2048_8192_SHA512,
            ],
        };
        algorithms.iter().any(|alg| {
            UnparsedPublicKey::new(*alg, &self.raw)
                .verify(message, signature)
                .is_ok()
        })
    }
}

fn curve_name(oid: ObjectIdentifier) -> String {
    if oid == OID_SECP256K1 {
        "secp256k1".to_owned()
    } else if oid == OID_P521 {
        "P-521".to_owned()
    } else {
        oid.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEjqJ8f3xqzEC7+TiBq9jMI8aAnXes
qe5bYdDGRBnxqtKzPujvaeNdEdwe95Fzuh/bUjAmRO9ILRvxVd0z6fkPAQ==
-----END PUBLIC KEY-----";

    #[test]
    fn key_id_is_the_spki_digest_and_matches_hints() {
        let key = PublicKey::from_pem(P256).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256);
        let id = key.id();
        assert_eq!(id, KeyId::of_spki(key.spki_der()));
        assert!(id.matches_hint(&id.to_hex()));
        assert!(id.matches_hint(&format!("sha256:{}", id.to_hex().to_uppercase())));
        use base64::Engine as _;
        assert!(id.matches_hint(&base64::engine::general_purpose::STANDARD.encode(id.0)));
        assert!(!id.matches_hint(""));
        assert!(!id.matches_hint("0123"));
        assert_eq!(id.to_string(), format!("sha256:{}", id.to_hex()));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(matches!(
            PublicKey::from_pem("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"),
            Err(KeyError::NotPem(_))
        ));
        let not_spki = "-----BEGIN PUBLIC KEY-----\nAAECAwQ=\n-----END PUBLIC KEY-----";
        assert!(matches!(
            PublicKey::from_pem(not_spki),
            Err(KeyError::NotSpki(_))
        ));
    }
}
