//! Severity levels and their derivation from scanner words, CVSS scores and
//! CVSS vectors (DESIGN §3.3).

use serde::{Deserialize, Serialize};

/// Severity of a finding, weakest first so that `Ord` reads "more severe is greater".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Missing or unrecognised.
    Unknown,
    /// Grype's and Debian's lowest level (also CycloneDX `info`/`none`).
    Negligible,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The four levels that `maxAllowedSeverities` counts, strongest first.
    pub const COUNTED: [Severity; 4] = [Self::Critical, Self::High, Self::Medium, Self::Low];

    /// All levels, strongest first.
    pub const ALL: [Severity; 6] = [
        Self::Critical,
        Self::High,
        Self::Medium,
        Self::Low,
        Self::Negligible,
        Self::Unknown,
    ];

    /// Reads a scanner's severity word (`CRITICAL`, `High`, `moderate`, `info`, ...).
    /// Anything else is `None`, so callers can try other fields before `Unknown`.
    pub fn from_word(word: &str) -> Option<Severity> {
        let w = word.trim();
        let eq = |s: &str| w.eq_ignore_ascii_case(s);
        if eq("critical") {
            Some(Self::Critical)
        } else if eq("high") || eq("important") {
            Some(Self::High)
        } else if eq("medium") || eq("moderate") {
            Some(Self::Medium)
        } else if eq("low") {
            Some(Self::Low)
        } else if eq("negligible") || eq("info") || eq("informational") || eq("none") {
            Some(Self::Negligible)
        } else if eq("unknown") {
            Some(Self::Unknown)
        } else {
            None
        }
    }

    /// CVSS v3 qualitative bands: ≥ 9.0 Critical, ≥ 7.0 High, ≥ 4.0 Medium, > 0 Low.
    /// A score of 0, or one outside 0–10, says nothing: `None`.
    pub fn from_cvss_score(score: f64) -> Option<Severity> {
        if !(score > 0.0 && score <= 10.0) {
            return None;
        }
        Some(if score >= 9.0 {
            Self::Critical
        } else if score >= 7.0 {
            Self::High
        } else if score >= 4.0 {
            Self::Medium
        } else {
            Self::Low
        })
    }

    /// Lower-case name, as used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
            Self::Negligible => "negligible",
            Self::Unknown => "unknown",
        }
    }

    /// True for the levels `maxAllowedSeverities` counts.
    pub fn is_counted(self) -> bool {
        self >= Self::Low
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Base score of a CVSS v3.x vector (`CVSS:3.1/AV:N/...`). Vectors of other
/// versions, or malformed ones, give `None`.
pub fn cvss_base_score(vector: &str) -> Option<f64> {
    let base: cvss::v3::Vector = vector.trim().parse().ok()?;
    Some(base.score().value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_cvss_v3() {
        assert_eq!(Severity::from_cvss_score(9.0), Some(Severity::Critical));
        assert_eq!(Severity::from_cvss_score(8.9), Some(Severity::High));
        assert_eq!(Severity::from_cvss_score(7.0), Some(Severity::High));
        assert_eq!(Severity::from_cvss_score(6.9), Some(Severity::Medium));
        assert_eq!(Severity::from_cvss_score(4.0), Some(Severity::Medium));
        assert_eq!(Severity::from_cvss_score(0.1), Some(Severity::Low));
        assert_eq!(Severity::from_cvss_score(0.0), None);
        assert_eq!(Severity::from_cvss_score(f64::NAN), None);
        assert_eq!(Severity::from_cvss_score(11.0), None);
    }

    #[test]
    fn vectors_are_scored() {
        let score = cvss_base_score("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:C/C:H/I:H/A:H");
        assert_eq!(score, Some(9.0));
        assert_eq!(
            cvss_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(9.8)
        );
        assert_eq!(cvss_base_score("AV:N/AC:L/Au:N/C:P/I:P/A:P"), None);
        assert_eq!(cvss_base_score("garbage"), None);
    }

    #[test]
    fn words_are_case_insensitive() {
        assert_eq!(Severity::from_word("CRITICAL"), Some(Severity::Critical));
        assert_eq!(
            Severity::from_word("Negligible"),
            Some(Severity::Negligible)
        );
        assert_eq!(Severity::from_word("moderate"), Some(Severity::Medium));
        assert_eq!(Severity::from_word("severe"), None);
        assert!(Severity::Critical > Severity::High && Severity::Negligible > Severity::Unknown);
    }
}
