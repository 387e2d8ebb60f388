//! In-toto Statements (v0.1 and v1): subjects, predicate type, and the signed
//! time read from the predicate.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use super::Rejection;
use crate::findings;

/// The `_type`s of an in-toto Statement.
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
/// In-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// How far a signed time may lie ahead of `now` (clock skew between the
/// producer and the cluster) before the artifact is refused.
pub const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// One subject of a Statement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Subject {
    /// Name (often the repository), may be empty.
    #[serde(default)]
    pub name: String,
    /// Algorithm → lower-case hex digest.
    #[serde(default)]
    pub digest: BTreeMap<String, String>,
}

/// A decoded in-toto Statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `_type` (v0.1 or v1).
    pub statement_type: String,
    /// The artifacts the statement is about.
    pub subjects: Vec<Subject>,
    /// The predicate type, e.g. `https://cosign.sigstore.dev/attestation/vuln/v1`.
    pub predicate_type: String,
    /// When the predicate says it was made: the scan's finish (or start) time, or
    /// the embedded report's or VEX document's own creation time.
    pub signed_time: Option<Timestamp>,
}

#[derive(Deserialize)]
struct RawStatement {
    #[serde(rename = "_type")]
    statement_type: String,
    #[serde(default)]
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
}

impl Statement {
    /// Decodes the Statement in a DSSE payload.
    pub fn from_payload(payload: &[u8]) -> Result<Self, Rejection> {
        let raw: RawStatement = serde_json::from_slice(payload)
            .map_err(|e| Rejection::MalformedEnvelope(format!("not an in-toto statement: {e}")))?;
        if raw.statement_type != STATEMENT_V01 && raw.statement_type != STATEMENT_V1 {
            return Err(Rejection::MalformedEnvelope(format!(
                "statement _type {:?} is neither {STATEMENT_V01} nor {STATEMENT_V1}",
                raw.statement_type
            )));
        }
        if raw.subject.is_empty() {
            return Err(Rejection::MalformedEnvelope(
                "the statement names no subject".into(),
            ));
        }
        Ok(Statement {
            statement_type: raw.statement_type,
            subjects: raw.subject,
            predicate_type: raw.predicate_type,
            signed_time: findings::statement_time(payload),
        })
    }

    /// The first subject whose sha256 digest is one of `acceptable`; else
    /// [`Rejection::SubjectMismatch`].
    pub fn subject_for(&self, acceptable: &DigestSet) -> Result<&Subject, Rejection> {
        self.subjects
            .iter()
            .find(|s| {
                s.digest
                    .get("sha256")
                    .is_some_and(|hex| acceptable.contains_hex(hex))
            })
            .ok_or_else(|| Rejection::SubjectMismatch {
                named: self
                    .subjects
                    .iter()
                    .filter_map(|s| s.digest.get("sha256"))
                    .map(|hex| format!("sha256:{hex}"))
                    .collect(),
            })
    }
}

/// The digests an artifact may name to count for the image being judged: the
/// platform manifest, the image index it belongs to, the tag's digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestSet {
    hex: Vec<String>,
}

impl DigestSet {
    /// From digests written `sha256:<hex>` (or bare hex). Other algorithms and
    /// malformed entries are dropped: they can never match.
    pub fn new<'a>(digests: impl IntoIterator<Item = &'a str>) -> Self {
        let hex = digests
            .into_iter()
            .filter_map(|d| {
                let h = d.strip_prefix("sha256:").unwrap_or(d).to_ascii_lowercase();
                (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(h)
            })
            .collect();
        DigestSet { hex }
    }

    /// True when `hex` (lower or upper case) is one of the digests.
    pub fn contains_hex(&self, hex: &str) -> bool {
        self.hex.iter().any(|h| h.eq_ignore_ascii_case(hex))
    }

    /// True when `sha256:<hex>` (or bare hex) is one of the digests.
    pub fn contains(&self, digest: &str) -> bool {
        self.contains_hex(digest.strip_prefix("sha256:").unwrap_or(digest))
    }

    /// The digests, as `sha256:<hex>`.
    pub fn iter(&self) -> impl Iterator<Item = String> + '_ {
        self.hex.iter().map(|h| format!("sha256:{h}"))
    }

    /// True when empty (nothing can match).
    pub fn is_empty(&self) -> bool {
        self.hex.is_empty()
    }
}

/// Refuses a time more than [`MAX_CLOCK_SKEW`] after `now` (a producer cannot
/// have scanned in the future; such a time would win "newest" forever).
pub fn check_not_future(time: Timestamp, now: Timestamp) -> Result<(), Rejection> {
    match now.checked_add(MAX_CLOCK_SKEW) {
        Ok(limit) if time > limit => Err(Rejection::FutureTime { time, now }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "fbd8b5ab44e04c26784a32287f99d7721bed4e34db000f855a2f5be692faec99";
    const B: &str = "65f7fe1c018bdfd3a9e600e17b043acc19bea8988c55d238a994ad4814dae10b";

    #[test]
    fn digest_set_matches_sha256_only_and_ignores_case() {
        let set = DigestSet::new([format!("sha256:{A}").as_str(), "sha512:abcd", "nonsense"]);
        assert!(set.contains(&format!("sha256:{A}")));
        assert!(set.contains_hex(&A.to_uppercase()));
        assert!(!set.contains(B));
        assert_eq!(set.iter().count(), 1);
        assert!(DigestSet::new(["sha256:abc"]).is_empty());
    }

    #[test]
    fn statement_subject_must_name_an_acceptable_digest() {
        let payload = format!(
            r#"{{"_type":"{STATEMENT_V1}","subject":[{{"name":"x","digest":{{"sha256":"{A}"}}}}],"predicateType":"p","predicate":{{}}}}"#
        );
        let st = Statement::from_payload(payload.as_bytes()).unwrap();
        assert_eq!(st.subject_for(&DigestSet::new([A, B])).unwrap().name, "x");
        let err = st.subject_for(&DigestSet::new([B])).unwrap_err();
        assert_eq!(
            err,
            Rejection::SubjectMismatch {
                named: vec![format!("sha256:{A}")]
            }
        );
        assert!(err.to_string().contains(A));
    }

    #[test]
    fn unknown_statement_types_and_empty_subjects_are_malformed() {
        for payload in [
            r#"{"_type":"https://example.com/Statement","subject":[{"digest":{"sha256":"aa"}}],"predicateType":"p"}"#,
            r#"{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"p"}"#,
            r#"{"_type":"https://in-toto.io/Statement/v1"}"#,
            "[]",
        ] {
            assert!(
                matches!(
                    Statement::from_payload(payload.as_bytes()),
                    Err(Rejection::MalformedEnvelope(_))
                ),
                "{payload}"
            );
        }
    }

    #[test]
    fn five_minutes_of_skew_are_tolerated_not_more() {
        let now: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
        assert!(check_not_future("2026-11-20T10:05:00Z".parse().unwrap(), now).is_ok());
        assert!(check_not_future("2020-01-01T00:00:00Z".parse().unwrap(), now).is_ok());
        assert!(matches!(
            check_not_future("2026-11-20T10:05:01Z".parse().unwrap(), now),
            Err(Rejection::FutureTime { .. })
        ));
    }
}
