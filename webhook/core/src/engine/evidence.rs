//! What the engine is told about an image: its findings, summarised once so
//! that evaluating many rules costs little, or why there are none.

use std::sync::Arc;

use jiff::Timestamp;

use crate::findings::Finding;
use crate::severity::Severity;

/// The part of a finding the engine reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GateFinding {
    /// Vulnerability ID.
    pub id: Arc<str>,
    /// Severity.
    pub severity: Severity,
    /// A fixed version exists.
    pub fixable: bool,
}

impl From<&Finding> for GateFinding {
    fn from(f: &Finding) -> Self {
        GateFinding {
            id: Arc::from(f.id.as_str()),
            severity: f.severity,
            fixable: f.is_fixable(),
        }
    }
}

/// Per-level counts, indexed by `Severity as usize`.
pub(super) type Counts = [u32; Severity::ALL.len()];

/// An image's findings, indexed for evaluation. Build it once per image (it is
/// what a cache keeps) and evaluate any number of rules against it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSummary {
    /// Sorted by ID, then severity (strongest first).
    by_id: Box<[GateFinding]>,
    all: Counts,
    fixable: Counts,
    scanned_at: Option<Timestamp>,
    /// Bloom filter over the IDs (about one byte per finding, two probes):
    /// most IDs a rule asks about (ignored, forbidden) are absent, and this
    /// answers that without string comparisons.
    id_filter: Box<[u64]>,
}

/// FNV-1a; hand-written because it is five lines and only feeds the filter.
fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Two bit positions; `words` is a power of two, so masking replaces division.
fn filter_probes(hash: u64, words: usize) -> [(usize, u64); 2] {
    let mask = (words as u64 * 64) - 1;
    let a = hash & mask;
    let b = (hash >> 32) & mask;
    // Truncation is impossible: both are below words * 64.
    let (a, b) = (a as usize, b as usize);
    [(a / 64, 1 << (a % 64)), (b / 64, 1 << (b % 64))]
}

impl ScanSummary {
    /// Summarises findings scanned at `scanned_at` (unknown: `None`).
    pub fn new(
        findings: impl IntoIterator<Item = GateFinding>,
        scanned_at: Option<Timestamp>,
    ) -> Self {
        let mut by_id: Vec<GateFinding> = findings.into_iter().collect();
        by_id.sort_by(|a, b| {
            a.id.cmp(&b.id)
                .then(b.severity.cmp(&a.severity))
                .then(b.fixable.cmp(&a.fixable))
        });
        let mut all: Counts = [0; Severity::ALL.len()];
        let mut fixable: Counts = [0; Severity::ALL.len()];
        for f in &by_id {
            all[f.severity as usize] += 1;
            if f.fixable {
                fixable[f.severity as usize] += 1;
            }
        }
        let words = (by_id.len() * 8).div_ceil(64).next_power_of_two().max(1);
        let mut id_filter = vec![0u64; words];
        for f in &by_id {
            for (word, bit) in filter_probes(id_hash(&f.id), words) {
                id_filter[word] |= bit;
            }
        }
        ScanSummary {
            by_id: by_id.into_boxed_slice(),
            all,
            fixable,
            scanned_at,
            id_filter: id_filter.into_boxed_slice(),
        }
    }

    /// Summarises a normalised report's findings.
    pub fn from_findings(findings: &[Finding], scanned_at: Option<Timestamp>) -> Self {
        Self::new(findings.iter().map(GateFinding::from), scanned_at)
    }

    /// When the scan ran, if known.
    pub fn scanned_at(&self) -> Option<Timestamp> {
        self.scanned_at
    }

    /// Number of findings.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Approximate heap bytes held, for caches bounded by bytes.
    pub fn approx_bytes(&self) -> usize {
        let ids: usize = self.by_id.iter().map(|f| f.id.len() + 16).sum();
        std::mem::size_of::<Self>()
            + self.by_id.len() * std::mem::size_of::<GateFinding>()
            + ids
            + self.id_filter.len() * 8
    }

    /// True when the scan found nothing.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub(super) fn counts(&self, fixable_only: bool) -> Counts {
        if fixable_only { self.fixable } else { self.all }
    }

    /// All findings with this ID (one per package), and the position of the
    /// first in the summary's order (what VEX suppressions index).
    pub(super) fn with_id_at(&self, id: &str) -> (usize, &[GateFinding]) {
        let absent = filter_probes(id_hash(id), self.id_filter.len())
            .iter()
            .any(|&(word, bit)| self.id_filter[word] & bit == 0);
        if absent {
            return (0, &[]);
        }
        let start = self.by_id.partition_point(|f| &*f.id < id);
        let len = self.by_id[start..]
            .iter()
            .take_while(|f| &*f.id == id)
            .count();
        (start, &self.by_id[start..start + len])
    }

    /// The finding at `index` in the summary's order.
    pub(super) fn at(&self, index: usize) -> Option<&GateFinding> {
        self.by_id.get(index)
    }

    /// Summarises findings and says where each input finding went: entry `i`
    /// of the returned positions is finding `i`'s index in the summary's
    /// order (what [`Artifact::vex`] suppressions refer to).
    pub fn with_positions(findings: &[Finding], scanned_at: Option<Timestamp>) -> (Self, Vec<u32>) {
        let mut order: Vec<u32> = (0..u32::try_from(findings.len()).unwrap_or(u32::MAX)).collect();
        let gate: Vec<GateFinding> = findings.iter().map(GateFinding::from).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&gate[a as usize], &gate[b as usize]);
            a.id.cmp(&b.id)
                .then(b.severity.cmp(&a.severity))
                .then(b.fixable.cmp(&a.fixable))
        });
        let mut positions = vec![0u32; order.len()];
        for (pos, &orig) in order.iter().enumerate() {
            positions[orig as usize] = u32::try_from(pos).unwrap_or(u32::MAX);
        }
        let summary = Self::new(order.iter().map(|&i| gate[i as usize].clone()), scanned_at);
        (summary, positions)
    }

    /// Findings strongest first, with their positions.
    pub(super) fn strongest_first(&self) -> impl Iterator<Item = (usize, &GateFinding)> {
        // One pass per level over the ID-sorted findings, instead of a second
        // index: this runs only to list CVEs in a violation message, and
        // saving 4 bytes per cached finding keeps 5 M findings in budget.
        Severity::ALL.into_iter().flat_map(move |level| {
            self.by_id
                .iter()
                .enumerate()
                .filter(move |(_, f)| f.severity == level)
        })
    }
}

/// Why there are no findings to judge (DESIGN §3.5). Each class has a
/// configured action and is the reason code of the decisions it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// No findings artifact is attached to the image.
    NoFindings,
    /// The newest findings are older than a rule's `maximumAge`.
    StaleFindings,
    /// Findings exist but none could be read.
    MalformedFindings,
    /// The image (tag or digest) does not exist.
    ImageNotFound,
    /// The registry refused the credentials, or there were none.
    RegistryAuth,
    /// The registry answered 429.
    RegistryThrottled,
    /// Timeout, 5xx or connection failure.
    RegistryUnavailable,
    /// The image reference does not parse.
    InvalidReference,
    /// The registry address is link-local, loopback or cluster-internal.
    BlockedDestination,
    /// Too many images, platforms or artifacts to judge within the bounds.
    LimitExceeded,
    /// Findings are attached, but none verifies for the rule's trusted producers.
    UntrustedFindings,
}

impl FailureClass {
    /// Every class.
    pub const ALL: [FailureClass; 11] = [
        Self::NoFindings,
        Self::StaleFindings,
        Self::MalformedFindings,
        Self::ImageNotFound,
        Self::RegistryAuth,
        Self::RegistryThrottled,
        Self::RegistryUnavailable,
        Self::InvalidReference,
        Self::BlockedDestination,
        Self::LimitExceeded,
        Self::UntrustedFindings,
    ];

    /// The reason code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoFindings => "NoFindings",
            Self::StaleFindings => "StaleFindings",
            Self::MalformedFindings => "MalformedFindings",
            Self::ImageNotFound => "ImageNotFound",
            Self::RegistryAuth => "RegistryAuth",
            Self::RegistryThrottled => "RegistryThrottled",
            Self::RegistryUnavailable => "RegistryUnavailable",
            Self::InvalidReference => "InvalidReference",
            Self::BlockedDestination => "BlockedDestination",
            Self::LimitExceeded => "LimitExceeded",
            Self::UntrustedFindings => "UntrustedFindings",
        }
    }

    /// What happened, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NoFindings => "no vulnerability findings are attached to the image",
            Self::StaleFindings => "the vulnerability findings are older than allowed",
            Self::MalformedFindings => "the vulnerability findings could not be read",
            Self::ImageNotFound => "the image was not found in its registry",
            Self::RegistryAuth => "the registry refused access",
            Self::RegistryThrottled => "the registry is throttling requests",
            Self::RegistryUnavailable => "the registry is unavailable",
            Self::InvalidReference => "the image reference is invalid",
            Self::BlockedDestination => "the registry address is not allowed",
            Self::LimitExceeded => "there is more to judge than the webhook's limits allow",
            Self::UntrustedFindings => {
                "vulnerability findings are attached, but none is verified for a trusted producer"
            }
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One findings artifact attached to a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// Digest of the artifact's manifest.
    pub digest: Arc<str>,
    /// Its findings.
    pub summary: Arc<ScanSummary>,
    /// The time it claims without a signature (the `created` annotation,
    /// else the report's own scan time): how rules without trusted producers
    /// order artifacts, as they always did.
    pub claimed_time: Option<Timestamp>,
    /// The producers it verified for, each with the time taken from signed
    /// content (or the verified log time): how rules with trusted producers
    /// order artifacts. An unsigned annotation never lands here.
    pub verified: Vec<(Arc<str>, Option<Timestamp>)>,
    /// Findings suppressed by VEX verified for a producer: (producer,
    /// positions in `summary`'s order, sorted).
    pub vex: Vec<(Arc<str>, Arc<[u32]>)>,
}

/// Everything usable attached to one manifest, as bounded by the lookup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArtifactSet {
    /// Readable findings artifacts.
    pub artifacts: Vec<Artifact>,
    /// Signed artifacts that verified for no producer, with why (digest,
    /// reason): their presence makes a rule's missing evidence
    /// `UntrustedFindings` rather than `NoFindings`.
    pub rejected: Vec<(Arc<str>, String)>,
}

/// What the engine judges for one image.
#[derive(Debug, Clone, Copy)]
pub enum Evidence<'a> {
    /// One unsigned report (what a rule without trusted producers reads).
    Scanned(&'a ScanSummary),
    /// The artifacts attached, signed or not: each rule picks its evidence.
    Artifacts(&'a ArtifactSet),
    /// No findings could be had, and why; `detail` is shown to the user.
    Failed {
        /// The failure class.
        class: FailureClass,
        /// Specifics (status code, error text), already safe to show.
        detail: &'a str,
    },
}
