//! What the engine is told about an image: its findings, summarised once so
//! that evaluating many rules costs little, or why there are none.

use std::ops::Range;
use std::sync::Arc;

use jiff::Timestamp;

use super::decision::MAX_LISTED_CVES;
use super::intern::{Interner, LOCAL, Pinned};
use crate::findings::Finding;
use crate::severity::Severity;

/// The part of a finding the engine reads, as callers hand findings in. A
/// [`ScanSummary`] does not keep these: it keeps a handle per finding.
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

/// Positions into a summary: two bytes each while they fit.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Positions {
    Narrow(Box<[u16]>),
    Wide(Box<[u32]>),
}

impl Positions {
    fn new(list: Vec<usize>, wide: bool) -> Self {
        if wide {
            Positions::Wide(
                list.into_iter()
                    .map(|p| u32::try_from(p).unwrap_or(u32::MAX))
                    .collect(),
            )
        } else {
            Positions::Narrow(
                list.into_iter()
                    .map(|p| u16::try_from(p).unwrap_or(u16::MAX))
                    .collect(),
            )
        }
    }

    fn get(&self, i: usize) -> usize {
        match self {
            Positions::Narrow(v) => usize::from(v[i]),
            Positions::Wide(v) => v[i] as usize,
        }
    }

    fn len(&self) -> usize {
        match self {
            Positions::Narrow(v) => v.len(),
            Positions::Wide(v) => v.len(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Positions::Narrow(v) => v.len() * 2,
            Positions::Wide(v) => v.len() * 4,
        }
    }
}

/// A finding's severity (low three bits) and fixability.
const SEVERITY_BITS: u8 = 0x07;
const FIXABLE: u8 = 0x08;

fn severity_of(bits: u8) -> Severity {
    match bits & SEVERITY_BITS {
        5 => Severity::Critical,
        4 => Severity::High,
        3 => Severity::Medium,
        2 => Severity::Low,
        1 => Severity::Negligible,
        _ => Severity::Unknown,
    }
}

/// One list of first distinct IDs: where in `top`, how many, and whether
/// the level has more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u8,
    len: u8,
    more: bool,
}

/// An image's findings, indexed for evaluation. Build it once per image (it
/// is what a cache keeps) and evaluate any number of rules against it.
///
/// Findings are in the summary's order: by ID, then strongest severity
/// first, then fixable first; VEX suppressions ([`Artifact::vex`]) are
/// positions in that order. Per finding it keeps a handle into the
/// process-wide [`Interner`] (four bytes), the severity and fixability (one
/// byte) and its place in an index by handle (two bytes), which answers
/// "which findings have this ID" for the IDs rules name. The first
/// [`MAX_LISTED_CVES`] distinct IDs of each counted level are kept as
/// positions, so a violation message lists CVEs without a pass over the
/// findings. Nothing else of a finding is needed to decide or to explain.
#[derive(Debug)]
pub struct ScanSummary {
    ids: Box<[u32]>,
    flags: Box<[u8]>,
    /// Positions sorted by handle, then position.
    by_handle: Positions,
    /// IDs the interner had no room for (`LOCAL | i`), sorted.
    local: Box<[Box<str>]>,
    /// A two-probe Bloom filter of the interned handles in `ids` (about four
    /// bits per distinct ID): most IDs a rule ignores or forbids are absent,
    /// and the filter answers those without the binary search.
    filter: Box<[u64]>,
    /// First distinct IDs per counted level, as positions; `spans[0]` over
    /// all findings, `spans[1]` over fixable ones, each strongest level first.
    top: Box<[u16]>,
    spans: [[Span; 4]; 2],
    all: Counts,
    fixable: Counts,
    scanned_at: Option<Timestamp>,
    /// Where `ids` are interned.
    interner: &'static Interner,
}

/// The two bit positions of `handle` in a filter of `bits` bits (a power of two).
fn filter_bits(handle: u32, bits: usize) -> [usize; 2] {
    let x = u64::from(handle).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mask = bits - 1;
    [(x >> 40) as usize & mask, (x >> 20) as usize & mask]
}

/// The Bloom filter of the interned (not local) handles of `ids`.
fn handle_filter(ids: &[u32]) -> Box<[u64]> {
    let global = ids.iter().filter(|h| **h < LOCAL);
    let distinct = global.clone().count();
    let bits = (distinct * 4).next_power_of_two().max(64);
    let mut words = vec![0u64; bits / 64];
    for &h in global {
        for b in filter_bits(h, bits) {
            words[b / 64] |= 1 << (b % 64);
        }
    }
    words.into_boxed_slice()
}

/// False only when `handle` is certainly not in the filter's IDs.
fn filter_may_hold(filter: &[u64], handle: u32) -> bool {
    let bits = filter.len() * 64;
    bits == 0
        || filter_bits(handle, bits)
            .iter()
            .all(|b| filter[b / 64] & (1 << (b % 64)) != 0)
}

/// The summary's order of findings given as (ID, severity, fixable): by ID,
/// strongest first, fixable first, then as given.
fn order(items: &[(&str, Severity, bool)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&items[a], &items[b]);
        x.0.cmp(y.0).then(y.1.cmp(&x.1)).then(y.2.cmp(&x.2))
    });
    order
}

/// Entry `i`: where finding `i` is in `order`.
fn positions_of(order: &[usize]) -> Vec<u32> {
    let mut positions = vec![0u32; order.len()];
    for (pos, &i) in order.iter().enumerate() {
        positions[i] = u32::try_from(pos).unwrap_or(u32::MAX);
    }
    positions
}

/// The levels whose CVEs violation messages list, strongest first.
const LISTED: [Severity; 4] = Severity::COUNTED;

/// Allocations a summary makes (each costs the allocator a header).
const ALLOCATIONS: usize = 5;

impl ScanSummary {
    /// Summarises findings scanned at `scanned_at` (unknown: `None`).
    pub fn new(
        findings: impl IntoIterator<Item = GateFinding>,
        scanned_at: Option<Timestamp>,
    ) -> Self {
        let list: Vec<GateFinding> = findings.into_iter().collect();
        Self::build(
            list.iter()
                .map(|f| (&*f.id, f.severity, f.fixable))
                .collect(),
            scanned_at,
        )
        .0
    }

    /// Summarises a normalised report's findings.
    pub fn from_findings(findings: &[Finding], scanned_at: Option<Timestamp>) -> Self {
        Self::with_positions(findings, scanned_at).0
    }

    /// Summarises findings and says where each input finding went: entry `i`
    /// of the returned positions is finding `i`'s index in the summary's
    /// order (what [`Artifact::vex`] suppressions refer to).
    pub fn with_positions(findings: &[Finding], scanned_at: Option<Timestamp>) -> (Self, Vec<u32>) {
        Self::build(
            findings
                .iter()
                .map(|f| (f.id.as_str(), f.severity, f.is_fixable()))
                .collect(),
            scanned_at,
        )
    }

    /// Where each finding goes in the summary's order (what
    /// [`with_positions`](Self::with_positions) returns), without building one.
    pub fn positions(findings: &[Finding]) -> Vec<u32> {
        let items: Vec<(&str, Severity, bool)> = findings
            .iter()
            .map(|f| (f.id.as_str(), f.severity, f.is_fixable()))
            .collect();
        positions_of(&order(&items))
    }

    fn build(
        items: Vec<(&str, Severity, bool)>,
        scanned_at: Option<Timestamp>,
    ) -> (Self, Vec<u32>) {
        Self::build_in(Interner::global(), items, scanned_at)
    }

    /// [`build`](Self::build) with IDs interned in `interner`. Rules pin
    /// their IDs in the global interner: a summary built elsewhere is found
    /// by them only through IDs kept locally (a table with no room), which
    /// is what tests use it for.
    pub(super) fn build_in(
        interner: &'static Interner,
        items: Vec<(&str, Severity, bool)>,
        scanned_at: Option<Timestamp>,
    ) -> (Self, Vec<u32>) {
        let n = items.len();
        let order = order(&items);
        let positions = positions_of(&order);
        // Distinct IDs in order, each interned once (or kept here).
        let mut distinct: Vec<&str> = Vec::new();
        let mut which: Vec<usize> = Vec::with_capacity(n);
        for &i in &order {
            let id = items[i].0;
            if distinct.last() != Some(&id) {
                distinct.push(id);
            }
            which.push(distinct.len() - 1);
        }
        let mut handles = if distinct.is_empty() {
            Vec::new()
        } else {
            interner.acquire_all(distinct.iter().copied())
        };
        let mut local: Vec<Box<str>> = Vec::new();
        for (j, h) in handles.iter_mut().enumerate() {
            if *h >= LOCAL {
                *h = LOCAL | u32::try_from(local.len()).unwrap_or(LOCAL - 1);
                local.push(Box::from(distinct[j]));
            }
        }
        let ids: Box<[u32]> = which.iter().map(|&j| handles[j]).collect();
        let flags: Box<[u8]> = order
            .iter()
            .map(|&i| {
                let (_, severity, fixable) = items[i];
                severity as u8 | if fixable { FIXABLE } else { 0 }
            })
            .collect();
        let mut by: Vec<usize> = (0..n).collect();
        by.sort_unstable_by_key(|&p| (ids[p], p));
        let by_handle = Positions::new(by, n > usize::from(u16::MAX) + 1);

        let mut top: Vec<u16> = Vec::new();
        let mut spans = [[Span::default(); 4]; 2];
        for (variant, fixable_only) in [false, true].into_iter().enumerate() {
            for (l, level) in LISTED.into_iter().enumerate() {
                let start = top.len();
                let mut last = None;
                let mut more = false;
                for (p, &f) in flags.iter().enumerate() {
                    if severity_of(f) != level || (fixable_only && f & FIXABLE == 0) {
                        continue;
                    }
                    // One ID's findings at one level are adjacent.
                    if last == Some(ids[p]) {
                        continue;
                    }
                    last = Some(ids[p]);
                    if top.len() - start == MAX_LISTED_CVES || p > usize::from(u16::MAX) {
                        more = true;
                        break;
                    }
                    top.push(u16::try_from(p).unwrap_or(u16::MAX));
                }
                spans[variant][l] = Span {
                    start: u8::try_from(start).unwrap_or(u8::MAX),
                    len: u8::try_from(top.len() - start).unwrap_or(u8::MAX),
                    more,
                };
            }
        }
        let mut all: Counts = [0; Severity::ALL.len()];
        let mut fixable: Counts = [0; Severity::ALL.len()];
        for &f in flags.iter() {
            let level = (f & SEVERITY_BITS) as usize;
            all[level] += 1;
            if f & FIXABLE != 0 {
                fixable[level] += 1;
            }
        }
        let filter = handle_filter(&ids);
        let summary = ScanSummary {
            ids,
            flags,
            by_handle,
            local: local.into_boxed_slice(),
            filter,
            top: top.into_boxed_slice(),
            spans,
            all,
            fixable,
            scanned_at,
            interner,
        };
        (summary, positions)
    }

    /// When the scan ran, if known.
    pub fn scanned_at(&self) -> Option<Timestamp> {
        self.scanned_at
    }

    /// Number of findings.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the scan found nothing.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Approximate heap bytes held, for caches bounded by bytes. Interned
    /// IDs are the interner's, which is bounded on its own.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.ids.len() * 4
            + self.flags.len()
            + self.by_handle.bytes()
            + self.top.len() * 2
            + self.filter.len() * 8
            + self.local.iter().map(|l| l.len() + 32).sum::<usize>()
            + ALLOCATIONS * 16
    }

    pub(super) fn counts(&self, fixable_only: bool) -> Counts {
        if fixable_only { self.fixable } else { self.all }
    }

    /// Severity of the finding at `position`.
    pub(super) fn severity(&self, position: usize) -> Severity {
        severity_of(self.flags[position])
    }

    /// Whether the finding at `position` has a fix.
    pub(super) fn fixable(&self, position: usize) -> bool {
        self.flags[position] & FIXABLE != 0
    }

    /// Whether two positions hold the same ID.
    pub(super) fn same_id(&self, a: usize, b: usize) -> bool {
        self.ids[a] == self.ids[b]
    }

    /// The ID at `position`, as text.
    pub(super) fn id(&self, position: usize) -> Arc<str> {
        let h = self.ids[position];
        if h >= LOCAL {
            self.local
                .get((h & !LOCAL) as usize)
                .map_or_else(|| Arc::from(""), |l| Arc::from(&**l))
        } else {
            self.interner.resolve(h)
        }
    }

    /// The IDs at `positions`, as text.
    pub(super) fn ids(&self, positions: &[usize]) -> Vec<Arc<str>> {
        if positions.iter().any(|&p| self.ids[p] >= LOCAL) {
            return positions.iter().map(|&p| self.id(p)).collect();
        }
        self.interner
            .resolve_all(positions.iter().map(|&p| self.ids[p]))
    }

    /// Whether the ID at `position` is `id`.
    pub(super) fn is(&self, position: usize, id: &Pinned) -> bool {
        let h = self.ids[position];
        if h >= LOCAL {
            self.local
                .get((h & !LOCAL) as usize)
                .is_some_and(|l| **l == **id)
        } else {
            h == id.handle()
        }
    }

    fn range_of(&self, h: u32) -> Range<usize> {
        let n = self.by_handle.len();
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.ids[self.by_handle.get(mid)] < h {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == n || self.ids[self.by_handle.get(lo)] != h {
            return 0..0;
        }
        let start = self.by_handle.get(lo);
        let len = self.ids[start..].iter().take_while(|x| **x == h).count();
        start..start + len
    }

    /// The positions of the findings with ID `id` (one per package): a
    /// range, since they are adjacent in the summary's order.
    pub(super) fn find(&self, id: &Pinned) -> Range<usize> {
        let h = id.handle();
        let found = if filter_may_hold(&self.filter, h) {
            self.range_of(h)
        } else {
            0..0
        };
        if !found.is_empty() || self.local.is_empty() {
            return found;
        }
        match self.local.binary_search_by(|l| (**l).cmp(&**id)) {
            Ok(j) => self.range_of(LOCAL | u32::try_from(j).unwrap_or(LOCAL - 1)),
            Err(_) => 0..0,
        }
    }

    /// The first distinct IDs of counted level `level` (over fixable
    /// findings only, if asked), as positions, and whether there are more.
    pub(super) fn first_ids(
        &self,
        level: Severity,
        fixable_only: bool,
    ) -> Option<(Vec<usize>, bool)> {
        let l = LISTED.iter().position(|x| *x == level)?;
        let span = self.spans[usize::from(fixable_only)][l];
        let start = usize::from(span.start);
        Some((
            self.top[start..start + usize::from(span.len)]
                .iter()
                .map(|p| usize::from(*p))
                .collect(),
            span.more,
        ))
    }

    /// Distinct global handles, once each (IDs of one handle are adjacent).
    fn distinct_global(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids
            .iter()
            .enumerate()
            .filter(|(p, h)| **h < LOCAL && (*p == 0 || self.ids[p - 1] != **h))
            .map(|(_, h)| *h)
    }
}

impl Clone for ScanSummary {
    fn clone(&self) -> Self {
        if !self.ids.is_empty() {
            self.interner.retain_all(self.distinct_global());
        }
        ScanSummary {
            ids: self.ids.clone(),
            flags: self.flags.clone(),
            by_handle: self.by_handle.clone(),
            local: self.local.clone(),
            filter: self.filter.clone(),
            top: self.top.clone(),
            spans: self.spans,
            all: self.all,
            fixable: self.fixable,
            scanned_at: self.scanned_at,
            interner: self.interner,
        }
    }
}

impl Drop for ScanSummary {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            self.interner.release_all(self.distinct_global());
        }
    }
}

impl PartialEq for ScanSummary {
    fn eq(&self, other: &Self) -> bool {
        self.scanned_at == other.scanned_at
            && self.flags == other.flags
            && (0..self.len()).all(|p| {
                let (a, b) = (self.ids[p], other.ids[p]);
                (a == b && a < LOCAL && std::ptr::eq(self.interner, other.interner))
                    || self.id(p) == other.id(p)
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
