//! Sigstore bundles, verified offline by `sigstore-verify` with a crypto
//! provider on ring (its default, aws-lc-rs, is kept out of the tree).

use std::sync::Once;

use sigstore_crypto::{CryptoProvider, HashContext, SigningScheme};
use sigstore_types::HashAlgorithm;

/// Bundle media types accepted (v0.1 to v0.3).
pub const BUNDLE_MEDIA_TYPES: [&str; 3] = [
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
];

/// What a bundle is checked against.
#[derive(Debug, Clone, Copy)]
pub enum BundleArtifact<'a> {
    /// The image being judged: a DSSE bundle's statement must name one of these
    /// digests; a message-signature bundle must be over one of them.
    Image(&'a super::DigestSet),
    /// The bytes of a blob (a report manifest, a report): a message signature
    /// must be over them; a DSSE statement must name their digest.
    Blob(&'a [u8]),
}

#[derive(Debug)]
struct RingProvider;

static RING: RingProvider = RingProvider;

/// Installs the ring provider as `sigstore-crypto`'s process-wide provider.
/// Idempotent; every bundle verification calls it. Returns false when no
/// provider is available (cannot happen unless another install raced with a
/// failure), in which case bundle verification refuses.
pub fn install_crypto_provider() -> bool {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means another provider was installed first; that one is then used.
        let _ = sigstore_crypto::install_default_provider(&RING);
    });
    sigstore_crypto::try_default_provider().is_some()
}

struct RingHash(ring::digest::Context);

impl HashContext for RingHash {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(self: Box<Self>) -> Vec<u8> {
        self.0.finish().as_ref().to_vec()
    }
}

fn unsupported(what: String) -> sigstore_crypto::Error {
    sigstore_crypto::Error::UnsupportedAlgorithm(what)
}

fn invalid(scheme: SigningScheme) -> sigstore_crypto::Error {
    sigstore_crypto::Error::Verification(format!("{} signature invalid", scheme.name()))
}

impl CryptoProvider for RingProvider {
    fn hash(&self, algorithm: HashAlgorithm) -> sigstore_crypto::Result<Box<dyn HashContext>> {
        let alg = match algorithm {
            HashAlgorithm::Sha2256 => &ring::digest::SHA256,
            HashAlgorithm::Sha2384 => &ring::digest::SHA384,
            HashAlgorithm::Sha2512 => &ring::digest::SHA512,
            other => return Err(unsupported(format!("cannot compute {other} digests"))),
        };
        Ok(Box::new(RingHash(ring::digest::Context::new(alg))))
    }

    fn verify_raw(
        &self,
        scheme: SigningScheme,
        key: &[u8],
        data: &[u8],
        signature: &[u8],
    ) -> sigstore_crypto::Result<()> {
        use ring::signature as s;
        let alg: &'static dyn s::VerificationAlgorithm = match scheme {
            SigningScheme::EcdsaP256Sha256 => &s::ECDSA_P256_SHA256_ASN1,
            SigningScheme::EcdsaP256Sha384 => &s::ECDSA_P256_SHA384_ASN1,
            SigningScheme::EcdsaP384Sha256 => &s::ECDSA_P384_SHA256_ASN1,
            SigningScheme::EcdsaP384Sha384 => &s::ECDSA_P384_SHA384_ASN1,
            SigningScheme::Ed25519 => &s::ED25519,
            SigningScheme::RsaPssSha256 => &s::RSA_PSS_2048_8192_SHA256,
            SigningScheme::RsaPssSha384 => &s::RSA_PSS_2048_8192_SHA384,
            SigningScheme::RsaPssSha512 => &s::RSA_PSS_2048_8192_SHA512,
            SigningScheme::RsaPkcs1Sha256 => &s::RSA_PKCS1_2048_8192_SHA256,
            SigningScheme::RsaPkcs1Sha384 => &s::RSA_PKCS1_2048_8192_SHA384,
            SigningScheme::RsaPkcs1Sha512 => &s::RSA_PKCS1_2048_8192_SHA512,
            other => return Err(unsupported(format!("{} is not supported", other.name()))),
        };
        s::UnparsedPublicKey::new(alg, key)
            .verify(data, signature)
            .map_err(|_| invalid(scheme))
    }

    /// ring verifies messages only; an ECDSA signature over a precomputed
    /// digest (Sigstore message signatures) goes through RustCrypto's p256/p384.
    fn verify_prehashed(
        &self,
        scheme: SigningScheme,
        key: &[u8],
        digest: &[u8],
        signature: &[u8],
    ) -> sigstore_crypto::Result<()> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let ok = match scheme {
            SigningScheme::EcdsaP256Sha256 | SigningScheme::EcdsaP256Sha384 => {
                let key =
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| invalid(scheme))?;
                let sig =
                    p256::ecdsa::Signature::from_der(signature).map_err(|_| invalid(scheme))?;
                key.verify_prehash(digest, &sig).is_ok()
            }
            SigningScheme::EcdsaP384Sha256 | SigningScheme::EcdsaP384Sha384 => {
                let key =
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| invalid(scheme))?;
                let sig =
                    p384::ecdsa::Signature::from_der(signature).map_err(|_| invalid(scheme))?;
                key.verify_prehash(digest, &sig).is_ok()
            }
            other => {
                return Err(unsupported(format!(
                    "{} signatures over a digest are not supported (ring verifies messages only); sign a DSSE bundle instead",
                    other.name()
                )));
            }
        };
        if ok { Ok(()) } else { Err(invalid(scheme)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_hashes_like_ring_and_refuses_unknown_schemes() {
        let mut ctx = RING.hash(HashAlgorithm::Sha2256).unwrap();
        ctx.update(b"abc");
        assert_eq!(
            hex::encode(ctx.finalize()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(
            RING.verify_raw(SigningScheme::MlDsa44, &[], b"", &[])
                .is_err()
        );
        assert!(
            RING.verify_prehashed(SigningScheme::Ed25519, &[0; 32], &[0; 32], &[0; 64])
                .is_err()
        );
    }

    #[test]
    fn prehashed_ecdsa_verifies_what_ring_signed() {
        use ring::rand::SystemRandom;
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let sig = kp.sign(&rng, b"report manifest").unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, b"report manifest");
        let public = kp.public_key().as_ref();
        assert!(
            RING.verify_prehashed(
                SigningScheme::EcdsaP256Sha256,
                public,
                digest.as_ref(),
                sig.as_ref()
            )
            .is_ok()
        );
        let other = ring::digest::digest(&ring::digest::SHA256, b"another manifest");
        assert!(
            RING.verify_prehashed(
                SigningScheme::EcdsaP256Sha256,
                public,
                other.as_ref(),
                sig.as_ref()
            )
            .is_err()
        );
        assert!(
            RING.verify_raw(
                SigningScheme::EcdsaP256Sha256,
                public,
                b"report manifest",
                sig.as_ref()
            )
            .is_ok()
        );
    }
}
