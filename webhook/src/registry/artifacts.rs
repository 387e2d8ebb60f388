//! What is attached to one manifest, as the engine's evidence (issue 9): the
//! referrers, filtered to findings candidates before any cap, each fetched,
//! verified for the trusted producers in force and parsed; VEX verified for a
//! producer applied per report. Nothing here chooses: each rule picks its
//! evidence from the resulting [`ArtifactSet`] (`engine::choose`).
//!
//! Verified shapes (see `portcullis_core::trust`): DSSE envelopes and
//! Sigstore bundles whose statement names the judged digest, and signatures
//! over a report manifest (a message-signature bundle among the report's own
//! referrers, or a classic cosign `sha256-<report>.sig`).

use std::sync::{Arc, Weak};

use futures::StreamExt;
use jiff::Timestamp;
use portcullis_core::engine::{Artifact, ArtifactSet, ScanSummary};
use portcullis_core::findings::vex::{VexDocument, VexSource, apply_vex, parse_vex};
use portcullis_core::findings::{Finding, FindingsError, FormatHint, parse_report_with};
use portcullis_core::trust::{
    BUNDLE_MEDIA_TYPES, BundleArtifact, COSIGN_SIGNATURE_ANNOTATION, DSSE_ENVELOPE_MEDIA_TYPE,
    DigestSet, Producer, Rejection, SIMPLE_SIGNING_MEDIA_TYPE, Verified,
};
use sha2::{Digest as _, Sha256};

use super::client::{ARTIFACT_ACCEPT, Target, is_digest};
use super::error::{Operation, RegistryError};
use super::lookup::{Descriptor, LookupState, Manifest};
use crate::metrics::Metrics;

/// The TrustedProducers in force, loaded, with a fingerprint of everything
/// that verification depends on (names, keys, identities, roots): caches of
/// verified evidence are keyed by it, so removing a key takes effect at once.
#[derive(Debug, Clone, Default)]
pub struct ProducerSet {
    producers: Vec<Producer>,
    fingerprint: Arc<str>,
}

impl ProducerSet {
    /// `producers` with the material each was loaded from (spec and secret
    /// contents), which the fingerprint covers.
    pub fn new(producers: Vec<(Producer, String)>) -> Self {
        let mut h = Sha256::new();
        for (p, material) in &producers {
            h.update(p.name().as_bytes());
            h.update([0]);
            h.update(material.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        let fingerprint: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        ProducerSet {
            producers: producers.into_iter().map(|(p, _)| p).collect(),
            fingerprint: Arc::from(if fingerprint.is_empty() {
                "none"
            } else {
                &fingerprint
            }),
        }
    }

    /// True when no producer is in force (verification is skipped entirely).
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The fingerprint for cache keys.
    pub fn fingerprint(&self) -> &str {
        if self.producers.is_empty() {
            "none"
        } else {
            &self.fingerprint
        }
    }

    /// The producers.
    pub fn iter(&self) -> impl Iterator<Item = &Producer> {
        self.producers.iter()
    }
}

/// How a referrer is treated, from its descriptor alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Candidate {
    /// A Sigstore bundle: signed, examined first.
    Bundle,
    /// A DSSE envelope or in-toto attestation: signed, examined first.
    Envelope,
    /// Anything else that may be a report (examined after the signed ones).
    Plain,
}

/// Artifact types that are never findings: signatures (examined only as
/// signatures of a report), SBOMs, and unsigned VEX (which no rule may use).
fn candidate(d: &Descriptor) -> Option<Candidate> {
    let t = d.artifact_type.as_deref().unwrap_or_default();
    let base = t.split(';').next().unwrap_or_default().trim();
    match base {
        "application/vnd.dev.cosign.artifact.sig.v1+json"
        | "application/vnd.cncf.notary.signature"
        | "application/spdx+json"
        | "text/spdx"
        | "application/vnd.syft+json"
        | "application/openvex+json"
        | "application/vnd.openvex+json" => None,
        _ if BUNDLE_MEDIA_TYPES
            .iter()
            .any(|b| b.starts_with(base) && !base.is_empty())
            || base.starts_with("application/vnd.dev.sigstore.bundle") =>
        {
            Some(Candidate::Bundle)
        }
        DSSE_ENVELOPE_MEDIA_TYPE => Some(Candidate::Envelope),
        _ if base.starts_with("application/vnd.in-toto") => Some(Candidate::Envelope),
        _ => Some(Candidate::Plain),
    }
}

/// One thing learned from one referrer, as the artifacts cache keeps it:
/// a report's summary is referred to, not kept (image evidence keeps it and
/// pays for it; a refresh of that evidence finds it here).
#[derive(Debug, Clone)]
pub(super) enum Piece {
    /// A findings report.
    Report {
        artifact: Arc<str>,
        summary: Weak<ScanSummary>,
        /// The report's layer, to read its findings again for VEX.
        layer: Option<String>,
        claimed_time: Option<Timestamp>,
        verified: Vec<(Arc<str>, Option<Timestamp>)>,
    },
    /// A VEX document verified for a producer.
    Vex {
        producer: Arc<str>,
        document: Arc<VexDocument>,
    },
    /// A signed artifact no producer verified.
    Rejected { artifact: Arc<str>, why: String },
    /// Not findings (an SBOM, a signature), or unreadable.
    Unusable(String),
}

impl Piece {
    /// Approximate bytes held, for the cache.
    pub(super) fn approx_bytes(&self) -> usize {
        match self {
            Piece::Report {
                artifact,
                layer,
                verified,
                ..
            } => {
                160 + artifact.len()
                    + layer.as_ref().map_or(0, String::len)
                    + verified.iter().map(|(p, _)| p.len() + 48).sum::<usize>()
            }
            Piece::Vex { document, .. } => 256 + document.statements.len() * 256,
            Piece::Rejected { why, .. } => 96 + why.len(),
            Piece::Unusable(why) => why.len(),
        }
    }
}

/// A piece in use: a report's summary held.
#[derive(Debug, Clone)]
pub(super) enum Live {
    /// A findings report.
    Report {
        artifact: Arc<str>,
        summary: Arc<ScanSummary>,
        layer: Option<String>,
        claimed_time: Option<Timestamp>,
        verified: Vec<(Arc<str>, Option<Timestamp>)>,
    },
    /// Anything else, as cached.
    Other(Piece),
}

impl Live {
    /// As the cache keeps it.
    fn cached(&self) -> Piece {
        match self {
            Live::Report {
                artifact,
                summary,
                layer,
                claimed_time,
                verified,
            } => Piece::Report {
                artifact: artifact.clone(),
                summary: Arc::downgrade(summary),
                layer: layer.clone(),
                claimed_time: *claimed_time,
                verified: verified.clone(),
            },
            Live::Other(p) => p.clone(),
        }
    }

    /// In use again, if its summary is still held.
    fn revive(piece: &Piece) -> Option<Live> {
        Some(match piece {
            Piece::Report {
                artifact,
                summary,
                layer,
                claimed_time,
                verified,
            } => Live::Report {
                artifact: artifact.clone(),
                summary: summary.upgrade()?,
                layer: layer.clone(),
                claimed_time: *claimed_time,
                verified: verified.clone(),
            },
            other => Live::Other(other.clone()),
        })
    }
}

/// The outcome of gathering.
pub(super) enum Gathered {
    /// Nothing attached (or only what is never evidence).
    Nothing,
    /// Candidates attached, none readable.
    Unreadable(String),
    /// The artifacts.
    Set(ArtifactSet),
}

/// Bound on report signatures examined per report (bundles among its referrers).
const SIGNATURES_PER_REPORT: usize = 4;

/// Referrers examined at once for one manifest.
const ARTIFACT_FAN_OUT: usize = 4;

impl LookupState {
    /// Everything usable attached to `digest`; `acceptable` are the digests a
    /// statement may name (the manifest, and the index it belongs to).
    pub(super) async fn gather(
        &self,
        target: &Target,
        digest: &str,
        acceptable: &[String],
        producers: &ProducerSet,
        referrers: &[u8],
    ) -> Result<Gathered, RegistryError> {
        let index: Manifest =
            serde_json::from_slice(referrers).map_err(|e| RegistryError::BadContent {
                url: format!("referrers of {digest}"),
                message: format!("not an image index: {e}"),
            })?;
        let mut candidates: Vec<(Candidate, Descriptor)> = index
            .manifests
            .unwrap_or_default()
            .into_iter()
            .filter(|d| is_digest(&d.digest))
            .filter_map(|d| candidate(&d).map(|c| (c, d)))
            .collect();
        if candidates.is_empty() {
            return Ok(Gathered::Nothing);
        }
        // Bounded after filtering, so SBOMs, VEX and signatures never push a
        // report out; overflow fails closed (LimitExceeded) rather than
        // letting whoever pushes many artifacts hide the real one.
        if candidates.len() > self.settings.max_artifacts {
            return Err(RegistryError::Limit {
                what: format!(
                    "{digest} has {} findings candidates attached, more than the {} examined (--max-artifacts-per-image)",
                    candidates.len(),
                    self.settings.max_artifacts
                ),
            });
        }
        // Signed candidates first, then newest claim first; the registry's
        // order breaks ties, which keeps the result deterministic.
        candidates.sort_by(|(ka, a), (kb, b)| ka.cmp(kb).then(b.created().cmp(&a.created())));
        let digests = DigestSet::new(acceptable.iter().map(String::as_str));
        let now = Timestamp::now();
        let examined: Vec<Result<Vec<Live>, RegistryError>> = futures::stream::iter(candidates)
            .map(|(kind, d)| {
                let digests = &digests;
                async move {
                    self.examine(target, kind, &d, digests, producers, now)
                        .await
                }
            })
            .buffered(ARTIFACT_FAN_OUT)
            .collect()
            .await;
        let mut pieces: Vec<Live> = Vec::new();
        for e in examined {
            pieces.extend(e?);
        }
        self.assemble(target, acceptable, pieces).await
    }

    /// One referrer, cached by (its digest, what it is judged against, the
    /// producers in force): its content never changes under its digest.
    async fn examine(
        &self,
        target: &Target,
        kind: Candidate,
        d: &Descriptor,
        digests: &DigestSet,
        producers: &ProducerSet,
        now: Timestamp,
    ) -> Result<Vec<Live>, RegistryError> {
        let mut acceptable: Vec<String> = digests.iter().collect();
        acceptable.sort();
        let mut key = super::lookup::repo_key("artifact", target, &d.digest);
        for a in &acceptable {
            key.push(a);
        }
        let key = key
            .push(producers.fingerprint())
            .push_u64(kind as u64)
            .finish();
        if let Some(cached) = self.artifacts.get(&key).await
            && let Some(live) = cached.iter().map(Live::revive).collect::<Option<Vec<_>>>()
        {
            self.artifact_counters.hit();
            return Ok(live);
        }
        self.artifact_counters.miss();
        let live: Vec<Live> = match self
            .examine_uncached(target, kind, d, digests, producers, now)
            .await
        {
            Ok(p) => p,
            Err(e)
                if e.class(Operation::Blob)
                    == portcullis_core::engine::FailureClass::MalformedFindings =>
            {
                vec![Live::Other(Piece::Unusable(e.to_string()))]
            }
            Err(e) => return Err(e),
        };
        let cached: Arc<[Piece]> = live.iter().map(Live::cached).collect();
        self.artifacts.insert(key, cached).await;
        Ok(live)
    }

    async fn examine_uncached(
        &self,
        target: &Target,
        kind: Candidate,
        d: &Descriptor,
        digests: &DigestSet,
        producers: &ProducerSet,
        now: Timestamp,
    ) -> Result<Vec<Live>, RegistryError> {
        let artifact: Arc<str> = Arc::from(d.digest.as_str());
        let (manifest_bytes, manifest) = self.artifact_manifest(target, &d.digest).await?;
        let Some(layer) = manifest
            .layers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|l| is_digest(&l.digest))
        else {
            return Ok(vec![Live::Other(Piece::Unusable(format!(
                "artifact {}: no layer",
                d.digest
            )))]);
        };
        let limits = self.settings.report_limits;
        if usize::try_from(layer.size).map_or(true, |s| s > limits.max_bytes) {
            return Ok(vec![Live::Other(Piece::Unusable(format!(
                "artifact {}: findings of {} bytes exceed the {}-byte limit",
                d.digest, layer.size, limits.max_bytes
            )))]);
        }
        let blob = self
            .client
            .blob(target, &layer.digest, limits.max_bytes)
            .await?;
        let claimed = manifest.created().or(d.created());
        let media = layer
            .media_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        let is_bundle = kind == Candidate::Bundle
            || BUNDLE_MEDIA_TYPES
                .iter()
                .any(|b| b.split(';').next() == Some(media));
        let is_envelope = !is_bundle
            && (kind == Candidate::Envelope
                || media == DSSE_ENVELOPE_MEDIA_TYPE
                || looks_like_dsse(&blob));

        if is_bundle || is_envelope {
            // Signed content: verified for each producer that can.
            let mut verified: Vec<Verified> = Vec::new();
            let mut rejections: Vec<String> = Vec::new();
            for p in producers.iter() {
                let result = if is_bundle {
                    p.verify_bundle(&blob, BundleArtifact::Image(digests), now)
                } else {
                    p.verify_dsse(&blob, digests, now)
                };
                record(&self.metrics, &result);
                match result {
                    Ok(v) => verified.push(v),
                    Err(r) => rejections.push(format!("{}: {r}", p.name())),
                }
            }
            let payload: Option<Vec<u8>> = verified
                .iter()
                .find_map(|v| v.statement().map(|(_, payload)| payload.to_vec()));
            let mut pieces = Vec::new();
            if verified.is_empty() && !producers.is_empty() {
                pieces.push(Live::Other(Piece::Rejected {
                    artifact: artifact.clone(),
                    why: rejections.join("; "),
                }));
            }
            // Unverified envelopes still serve rules without trusted producers
            // (as before); unverified bundles were never read and are not now.
            let content: Option<Vec<u8>> = payload.or_else(|| is_envelope.then(|| blob.to_vec()));
            let Some(content) = content else {
                return Ok(pieces);
            };
            let hint = FormatHint {
                artifact_type: d.artifact_type.as_deref(),
                media_type: None,
                predicate_type: None,
            };
            match parse_report_with(&content, hint, limits) {
                Ok(report) => {
                    let summary =
                        ScanSummary::from_findings(&report.findings, claimed.or(report.scanned_at));
                    pieces.push(Live::Report {
                        artifact,
                        summary: Arc::new(summary),
                        layer: Some(layer.digest.clone()),
                        claimed_time: claimed.or(report.scanned_at),
                        verified: verified
                            .iter()
                            .map(|v| {
                                (
                                    Arc::from(v.producer.as_str()),
                                    v.time().or(report.scanned_at),
                                )
                            })
                            .collect(),
                    });
                }
                // Not a report: a VEX statement (used only when verified),
                // or an attestation of another kind.
                Err(e) => match parse_vex(&content) {
                    Ok(document) => {
                        let document = Arc::new(document);
                        for v in &verified {
                            pieces.push(Live::Other(Piece::Vex {
                                producer: Arc::from(v.producer.as_str()),
                                document: document.clone(),
                            }));
                        }
                    }
                    Err(_) if matches!(e, FindingsError::NotFindings(_)) => {
                        pieces.push(Live::Other(Piece::Unusable(format!("{NOT_FINDINGS}{e}"))));
                    }
                    Err(_) => pieces.push(Live::Other(Piece::Unusable(format!(
                        "artifact {}: {e}",
                        d.digest
                    )))),
                },
            }
            return Ok(pieces);
        }

        // A plain report, and when producers are in force, signatures over
        // its manifest (image ← report ← signature).
        let hint = FormatHint {
            artifact_type: manifest
                .artifact_type
                .as_deref()
                .or(d.artifact_type.as_deref())
                .or(manifest.config.as_ref().map(|c| c.media_type.as_str())),
            media_type: Some(layer.media_type.as_str()),
            predicate_type: None,
        };
        let report = match parse_report_with(&blob, hint, limits) {
            Ok(r) => r,
            Err(FindingsError::NotFindings(what)) => {
                return Ok(vec![Live::Other(Piece::Unusable(format!(
                    "{NOT_FINDINGS}{what}"
                )))]);
            }
            Err(e) => {
                return Ok(vec![Live::Other(Piece::Unusable(format!(
                    "artifact {}: {e}",
                    d.digest
                )))]);
            }
        };
        let summary = ScanSummary::from_findings(&report.findings, claimed.or(report.scanned_at));
        let mut pieces = Vec::new();
        let mut verified = Vec::new();
        if !producers.is_empty() {
            let (ok, rejected) = self
                .report_signatures(target, &d.digest, &manifest_bytes, producers, now)
                .await;
            for v in ok {
                verified.push((
                    Arc::from(v.producer.as_str()),
                    report.scanned_at.or(v.log_time),
                ));
            }
            if verified.is_empty() && !rejected.is_empty() {
                pieces.push(Live::Other(Piece::Rejected {
                    artifact: artifact.clone(),
                    why: rejected.join("; "),
                }));
            }
        }
        pieces.push(Live::Report {
            artifact,
            summary: Arc::new(summary),
            layer: Some(layer.digest.clone()),
            claimed_time: claimed.or(report.scanned_at),
            verified,
        });
        Ok(pieces)
    }

    async fn artifact_manifest(
        &self,
        target: &Target,
        digest: &str,
    ) -> Result<(bytes::Bytes, Manifest), RegistryError> {
        let fetched = self
            .client
            .manifest(target, digest, ARTIFACT_ACCEPT, Operation::ArtifactManifest)
            .await?;
        let parsed: Manifest =
            serde_json::from_slice(&fetched.bytes).map_err(|e| RegistryError::BadContent {
                url: format!("artifact {digest}"),
                message: format!("invalid manifest: {e}"),
            })?;
        Ok((fetched.bytes, parsed))
    }

    /// Signatures over a report manifest: message-signature bundles among its
    /// referrers, and a classic cosign `sha256-<hex>.sig`. Registry trouble
    /// here leaves the report unverified rather than failing the lookup.
    async fn report_signatures(
        &self,
        target: &Target,
        report: &str,
        manifest_bytes: &[u8],
        producers: &ProducerSet,
        now: Timestamp,
    ) -> (Vec<Verified>, Vec<String>) {
        let mut ok = Vec::new();
        let mut rejected = Vec::new();
        // Both places a signature may be, asked at once.
        let tag = format!("{}.sig", report.replacen(':', "-", 1));
        let (listed, cosign) = futures::join!(
            self.referrers(target, report),
            self.client
                .manifest(target, &tag, ARTIFACT_ACCEPT, Operation::ArtifactManifest)
        );
        if let Ok(Some(bytes)) = listed
            && let Ok(index) = serde_json::from_slice::<Manifest>(&bytes)
        {
            let bundles = index
                .manifests
                .unwrap_or_default()
                .into_iter()
                .filter(|d| is_digest(&d.digest) && candidate(d) == Some(Candidate::Bundle))
                .take(SIGNATURES_PER_REPORT);
            for d in bundles {
                let Ok((_, m)) = self.artifact_manifest(target, &d.digest).await else {
                    continue;
                };
                let Some(layer) = m
                    .layers
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .find(|l| is_digest(&l.digest))
                else {
                    continue;
                };
                let Ok(blob) = self.client.blob(target, &layer.digest, 1 << 20).await else {
                    continue;
                };
                for p in producers.iter() {
                    let result = p.verify_bundle(&blob, BundleArtifact::Blob(manifest_bytes), now);
                    record(&self.metrics, &result);
                    match result {
                        Ok(v) => ok.push(v),
                        Err(r) => rejected.push(format!("{} (bundle {}): {r}", p.name(), d.digest)),
                    }
                }
            }
        }
        if let Ok(sig) = cosign
            && let Ok(m) = serde_json::from_slice::<Manifest>(&sig.bytes)
        {
            for layer in m
                .layers
                .unwrap_or_default()
                .into_iter()
                .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE && is_digest(&l.digest))
                .take(SIGNATURES_PER_REPORT)
            {
                let Some(signature) = layer
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(COSIGN_SIGNATURE_ANNOTATION))
                    .cloned()
                else {
                    continue;
                };
                let Ok(payload) = self.client.blob(target, &layer.digest, 64 * 1024).await else {
                    continue;
                };
                for p in producers.iter() {
                    let result = p.verify_simple_signing(&payload, &signature, report, now);
                    record(&self.metrics, &result);
                    match result {
                        Ok(v) => ok.push(v),
                        Err(r) => rejected.push(format!("{} (cosign signature): {r}", p.name())),
                    }
                }
            }
        }
        (ok, rejected)
    }

    /// The artifact set from the pieces, with VEX applied per report.
    async fn assemble(
        &self,
        target: &Target,
        acceptable: &[String],
        pieces: Vec<Live>,
    ) -> Result<Gathered, RegistryError> {
        let mut set = ArtifactSet::default();
        let mut vex: Vec<(Arc<str>, Arc<VexDocument>)> = Vec::new();
        let mut unusable = String::new();
        let mut reports = Vec::new();
        for p in pieces {
            match p {
                Live::Report { .. } => reports.push(p),
                Live::Other(Piece::Vex { producer, document }) => vex.push((producer, document)),
                Live::Other(Piece::Rejected { artifact, why }) => {
                    set.rejected.push((artifact, why))
                }
                Live::Other(Piece::Unusable(why)) => unusable = why,
                Live::Other(Piece::Report { .. }) => {}
            }
        }
        let image_digests: Vec<&str> = acceptable.iter().map(String::as_str).collect();
        for r in reports {
            let Live::Report {
                artifact,
                summary,
                layer,
                claimed_time,
                verified,
            } = r
            else {
                continue;
            };
            let mut per_producer: Vec<(Arc<str>, Arc<[u32]>)> = Vec::new();
            if !vex.is_empty()
                && let Some(findings) = self.report_findings(target, layer.as_deref()).await
            {
                // Where each finding sits in the summary's order.
                let positions = ScanSummary::positions(&findings);
                let mut producers: Vec<&Arc<str>> = vex.iter().map(|(p, _)| p).collect();
                producers.sort();
                producers.dedup();
                for producer in producers {
                    let sources: Vec<VexSource<'_>> = vex
                        .iter()
                        .filter(|(p, _)| p == producer)
                        .map(|(p, d)| VexSource {
                            producer: p,
                            document: d,
                        })
                        .collect();
                    let outcome = apply_vex(&findings, &image_digests, &sources);
                    let mut at: Vec<u32> = outcome
                        .suppressed
                        .iter()
                        .filter_map(|s| positions.get(s.finding).copied())
                        .collect();
                    at.sort_unstable();
                    if !at.is_empty() {
                        per_producer.push((producer.clone(), Arc::from(at)));
                    }
                }
            }
            set.artifacts.push(Artifact {
                digest: artifact,
                summary,
                claimed_time,
                verified,
                vex: per_producer,
            });
        }
        if set.artifacts.is_empty() && set.rejected.is_empty() {
            if unusable.is_empty() || unusable.starts_with(NOT_FINDINGS) {
                // Only SBOMs, unsigned VEX and the like: nothing about vulnerabilities.
                return Ok(Gathered::Nothing);
            }
            return Ok(Gathered::Unreadable(unusable));
        }
        Ok(Gathered::Set(set))
    }

    /// A report's findings read again (for VEX, which needs packages).
    async fn report_findings(&self, target: &Target, layer: Option<&str>) -> Option<Vec<Finding>> {
        let limits = self.settings.report_limits;
        let blob = self
            .client
            .blob(target, layer?, limits.max_bytes)
            .await
            .ok()?;
        parse_report_with(&blob, FormatHint::default(), limits)
            .ok()
            .map(|r| r.findings)
    }
}

/// The prefix of an "only SBOMs and the like" problem.
pub(super) const NOT_FINDINGS: &str = "not findings: ";

fn looks_like_dsse(blob: &[u8]) -> bool {
    let head = &blob[..blob.len().min(512)];
    let text = String::from_utf8_lossy(head);
    text.contains("\"payloadType\"") && text.contains("\"signatures\"")
}

fn record(metrics: &Metrics, result: &Result<Verified, Rejection>) {
    metrics.verification(match result {
        Ok(_) => "verified",
        Err(r) => rejection_label(r),
    });
}

/// A bounded label per rejection kind.
fn rejection_label(r: &Rejection) -> &'static str {
    match r {
        Rejection::MalformedEnvelope(_) => "malformed",
        Rejection::NoSignature => "unsigned",
        Rejection::BadSignature { .. } => "bad_signature",
        Rejection::UnknownKey { .. } => "unknown_key",
        Rejection::SubjectMismatch { .. } => "subject_mismatch",
        Rejection::DigestMismatch { .. } => "digest_mismatch",
        Rejection::FutureTime { .. } => "future_time",
        Rejection::UntrustedIdentity { .. } => "untrusted_identity",
        Rejection::NoTrustedRoot => "no_trusted_root",
        Rejection::NoTlogEntry => "no_tlog_entry",
        Rejection::TransparencyLog(_) => "tlog",
        Rejection::Certificate(_) => "certificate",
        Rejection::NoVerifiedTime(_) => "no_verified_time",
        Rejection::Unsupported(_) => "unsupported",
    }
}
