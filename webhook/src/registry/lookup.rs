//! Image → findings: resolve the tag, expand an index into platforms, find
//! each target's newest usable findings artifact among its referrers, fetch
//! and normalise it. Every step is cached as DESIGN §4 says and concurrent
//! identical lookups share one registry request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use moka::future::Cache;
use serde::Deserialize;

use super::artifacts::{Gathered, Piece, ProducerSet};
use super::client::{IMAGE_ACCEPT, RegistryClient, Target, is_digest};
use super::error::{Operation, RegistryError};
use crate::cache::{Freshness, SwrCache, weight};
use crate::engine::{ArtifactSet, FailureClass};
use crate::findings::Limits;
use crate::metrics::Metrics;
use crate::reference::ImageRef;

/// Cache and selection settings.
#[derive(Debug, Clone, Copy)]
pub struct LookupSettings {
    /// How long tag → digest and referrer lists are fresh.
    pub fresh: Duration,
    /// How long after that they may still be served while refreshing.
    pub max_stale: Duration,
    /// How long "no findings attached" is believed.
    pub no_findings: Duration,
    /// Memory for the lookup caches together (tags, referrer results,
    /// manifests, reports), in bytes; split by [`CacheBudget`].
    pub max_cache_bytes: u64,
    /// Platforms judged per index; an index with more is `LimitExceeded`.
    pub max_platforms: usize,
    /// Findings candidates examined per manifest (after SBOMs, unsigned VEX
    /// and signatures are set aside); more is `LimitExceeded`.
    pub max_artifacts: usize,
    /// Limits on one findings document.
    pub report_limits: Limits,
}

impl Default for LookupSettings {
    fn default() -> Self {
        LookupSettings {
            fresh: Duration::from_secs(60),
            max_stale: Duration::from_secs(600),
            no_findings: Duration::from_secs(10),
            max_cache_bytes: 128 << 20,
            max_platforms: 32,
            max_artifacts: 32,
            report_limits: Limits::default(),
        }
    }
}

/// Why there are no findings for a target, as the engine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupFailure {
    /// Failure class.
    pub class: FailureClass,
    /// Detail shown to the user.
    pub detail: String,
}

/// What a digest's referrers yielded (the cacheable outcomes).
#[derive(Debug, Clone)]
pub enum TargetFindings {
    /// The findings artifacts attached, signed or not; each rule picks.
    Artifacts(Arc<ArtifactSet>),
    /// No findings artifact attached.
    NotScanned,
    /// Artifacts attached, none readable.
    Malformed(String),
}

/// One thing judged for an image: the image itself, or one platform of it.
#[derive(Debug, Clone)]
pub struct TargetEvidence {
    /// `os/arch[/variant]` for platforms of an index; `index` for an index's own
    /// artifact; `None` for a single-platform image.
    pub platform: Option<String>,
    /// Manifest digest.
    pub digest: String,
    /// Its findings.
    pub findings: Result<TargetFindings, LookupFailure>,
}

/// Everything known about one image.
#[derive(Debug, Clone)]
pub struct ImageEvidence {
    /// The resolved digest, or why it could not be resolved.
    pub digest: Result<String, LookupFailure>,
    /// What to judge (empty when the digest is unknown).
    pub targets: Vec<TargetEvidence>,
}

impl ImageEvidence {
    /// Evidence for an image that could not be looked up at all.
    pub fn failed(class: FailureClass, detail: impl Into<String>) -> Self {
        ImageEvidence {
            digest: Err(LookupFailure {
                class,
                detail: detail.into(),
            }),
            targets: Vec::new(),
        }
    }
}

/// How one `--cache-max-bytes` budget is shared: reports hold almost all
/// the bytes; the rest are small, numerous entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBudget {
    /// Examined artifacts (findings summaries) by digest.
    pub reports: u64,
    /// Manifests by digest.
    pub manifests: u64,
    /// Tag → digest.
    pub tags: u64,
    /// Referrer results by digest.
    pub referrers: u64,
    /// Registry bearer tokens (held by the client).
    pub tokens: u64,
}

impl CacheBudget {
    /// Splits `total` bytes.
    pub fn split(total: u64) -> Self {
        let part = |pct: u64| total / 100 * pct;
        CacheBudget {
            reports: part(76),
            manifests: part(8),
            tags: part(6),
            referrers: part(6),
            tokens: part(4),
        }
    }
}

#[derive(Debug, Clone)]
enum ManifestKind {
    Image,
    Index(Vec<(String, String)>),
    /// An index with more platforms than are judged (kept, since a digest's
    /// content never changes, so it is not fetched again).
    OverLimit(usize),
}

impl ManifestKind {
    fn approx_bytes(&self) -> usize {
        match self {
            ManifestKind::Image | ManifestKind::OverLimit(_) => 16,
            ManifestKind::Index(p) => p.iter().map(|(a, b)| a.len() + b.len() + 48).sum(),
        }
    }
}

/// Looks up images' findings; cheap to clone (one `Arc`), which matters
/// because every cached lookup hands a clone to its would-be refresh.
#[derive(Clone)]
pub struct ImageLookup(Arc<LookupState>);

impl std::ops::Deref for ImageLookup {
    type Target = LookupState;

    fn deref(&self) -> &LookupState {
        &self.0
    }
}

/// The caches and client behind an [`ImageLookup`].
pub struct LookupState {
    pub(super) client: RegistryClient,
    pub(super) settings: LookupSettings,
    tags: SwrCache<String>,
    findings: SwrCache<TargetFindings>,
    /// Manifests by digest are immutable.
    manifests: Cache<String, Arc<ManifestKind>>,
    /// What each referrer yielded, by its digest, what it was judged
    /// against and the producers in force (see `artifacts.rs`).
    pub(super) artifacts: Cache<String, Arc<[Piece]>>,
    pub(super) metrics: Arc<Metrics>,
}

impl ImageLookup {
    /// A lookup over `client`.
    pub fn new(client: RegistryClient, settings: LookupSettings, metrics: Arc<Metrics>) -> Self {
        let budget = CacheBudget::split(settings.max_cache_bytes);
        ImageLookup(Arc::new(LookupState {
            tags: SwrCache::new(
                "tag",
                budget.tags,
                settings.fresh + settings.max_stale,
                String::len,
                metrics.clone(),
            ),
            findings: SwrCache::new(
                "referrers",
                budget.referrers,
                settings.fresh + settings.max_stale,
                |f: &TargetFindings| match f {
                    // The summaries themselves are weighed in `artifacts`.
                    TargetFindings::Artifacts(set) => {
                        64 + set
                            .artifacts
                            .iter()
                            .map(|a| {
                                a.digest.len()
                                    + 64
                                    + a.verified.len() * 32
                                    + a.vex.iter().map(|(_, v)| v.len() * 4 + 32).sum::<usize>()
                            })
                            .sum::<usize>()
                            + set
                                .rejected
                                .iter()
                                .map(|(d, w)| d.len() + w.len())
                                .sum::<usize>()
                    }
                    TargetFindings::NotScanned => 8,
                    TargetFindings::Malformed(why) => why.len(),
                },
                metrics.clone(),
            ),
            manifests: Cache::builder()
                .weigher(|k: &String, v: &Arc<ManifestKind>| weight(k.len() + v.approx_bytes()))
                .max_capacity(budget.manifests)
                .build(),
            artifacts: Cache::builder()
                .weigher(|k: &String, v: &Arc<[Piece]>| {
                    weight(k.len() + v.iter().map(Piece::approx_bytes).sum::<usize>())
                })
                .max_capacity(budget.reports)
                .build(),
            client,
            settings,
            metrics,
        }))
    }

    /// The registry client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Entries and weighted size of the findings cache (bytes), for tests
    /// and the memory benchmark.
    pub async fn cached_findings(&self) -> (u64, u64) {
        self.artifacts.run_pending_tasks().await;
        (self.artifacts.entry_count(), self.artifacts.weighted_size())
    }

    /// Everything needed to judge `image`, with evidence verified for
    /// `producers`.
    pub async fn lookup(
        &self,
        image: &ImageRef,
        target: Target,
        producers: Arc<ProducerSet>,
    ) -> ImageEvidence {
        let digest = match self.resolve(image, &target).await {
            Ok(d) => d,
            Err(e) => return ImageEvidence::failed(e.class, e.detail),
        };
        let kind = match self.manifest_kind(&target, &digest).await {
            Ok(k) => k,
            Err(e) => {
                return ImageEvidence {
                    digest: Err(failure(&e, Operation::ImageManifest)),
                    targets: Vec::new(),
                };
            }
        };
        let targets = match &*kind {
            ManifestKind::OverLimit(n) => {
                return ImageEvidence::failed(
                    FailureClass::LimitExceeded,
                    format!(
                        "the image index {digest} lists {n} platforms, more than the {} judged (--max-platforms-per-index)",
                        self.settings.max_platforms
                    ),
                );
            }
            ManifestKind::Image => vec![TargetEvidence {
                platform: None,
                findings: self
                    .target_findings(&target, &digest, None, &producers)
                    .await,
                digest: digest.clone(),
            }],
            ManifestKind::Index(platforms) => {
                // A bounded fan-out: each pending lookup holds a request's
                // worth of state, and an index may list many platforms.
                let digests: Vec<String> = platforms.iter().map(|(_, d)| d.clone()).collect();
                let (own, per_platform) = futures::join!(
                    self.target_findings(&target, &digest, None, &producers),
                    futures::stream::iter(digests)
                        .map(|d| {
                            let (target, index, producers) = (&target, &digest, &producers);
                            async move {
                                self.target_findings(target, &d, Some(index), producers)
                                    .await
                            }
                        })
                        .buffered(PLATFORM_FAN_OUT)
                        .collect::<Vec<_>>()
                );
                index_targets(&digest, own, platforms, per_platform)
            }
        };
        ImageEvidence {
            digest: Ok(digest),
            targets,
        }
    }

    async fn resolve(&self, image: &ImageRef, target: &Target) -> Result<String, LookupFailure> {
        if let Some(d) = image.digest() {
            return Ok(d.to_owned());
        }
        let tag = image.tag().unwrap_or("latest").to_owned();
        let key = format!(
            "{}/{}:{tag}|{}",
            target.registry.as_str(),
            target.repository,
            target.credentials.fingerprint()
        );
        let this = self.clone();
        let target = target.clone();
        let fresh = Freshness {
            ttl: self.settings.fresh,
            serve_stale: true,
        };
        self.tags
            .get_with(key, move || {
                let this = this.clone();
                let target = target.clone();
                let tag = tag.clone();
                async move {
                    let fetched = this
                        .client
                        .manifest(&target, &tag, IMAGE_ACCEPT, Operation::ImageManifest)
                        .await?;
                    // The manifest just fetched is immutable under its digest.
                    let kind = manifest_kind(
                        &fetched.bytes,
                        &fetched.digest,
                        this.settings.max_platforms,
                    )?;
                    this.manifests
                        .insert(manifest_key(&target, &fetched.digest), Arc::new(kind))
                        .await;
                    Ok((fetched.digest, fresh))
                }
            })
            .await
            .map_err(|e| failure(&e, Operation::ImageManifest))
    }

    async fn manifest_kind(
        &self,
        target: &Target,
        digest: &str,
    ) -> Result<Arc<ManifestKind>, Arc<RegistryError>> {
        let key = manifest_key(target, digest);
        if let Some(kind) = self.manifests.get(&key).await {
            self.metrics.cache("manifest", "hit");
            return Ok(kind);
        }
        self.metrics.cache("manifest", "miss");
        self.manifests
            .try_get_with(key, async {
                let fetched = self
                    .client
                    .manifest(target, digest, IMAGE_ACCEPT, Operation::ImageManifest)
                    .await?;
                manifest_kind(&fetched.bytes, &fetched.digest, self.settings.max_platforms)
                    .map(Arc::new)
            })
            .await
    }

    async fn target_findings(
        &self,
        target: &Target,
        digest: &str,
        index: Option<&str>,
        producers: &Arc<ProducerSet>,
    ) -> Result<TargetFindings, LookupFailure> {
        // Evidence is verified against the producers in force and the digests
        // a statement may name, so both are part of the key.
        let key = format!(
            "{}|{}|{}",
            manifest_key(target, digest),
            index.unwrap_or("-"),
            producers.fingerprint()
        );
        let this = self.clone();
        let target = target.clone();
        let mut acceptable = vec![digest.to_owned()];
        acceptable.extend(index.map(str::to_owned));
        let producers = producers.clone();
        self.findings
            .get_with(key, move || {
                let this = this.clone();
                let target = target.clone();
                let acceptable = acceptable.clone();
                let producers = producers.clone();
                async move { this.fetch_findings(&target, &acceptable, &producers).await }
            })
            .await
            .map_err(|e| failure(&e, Operation::Referrers))
    }

    /// Referrers → the findings artifacts attached, examined and verified.
    async fn fetch_findings(
        &self,
        target: &Target,
        acceptable: &[String],
        producers: &ProducerSet,
    ) -> Result<(TargetFindings, Freshness), RegistryError> {
        let digest = acceptable.first().map_or("", String::as_str);
        let listed = Freshness {
            ttl: self.settings.fresh,
            serve_stale: true,
        };
        let unlisted = Freshness {
            ttl: self.settings.no_findings,
            serve_stale: false,
        };
        let Some(bytes) = self.client.referrers(target, digest).await? else {
            return Ok((TargetFindings::NotScanned, unlisted));
        };
        Ok(
            match self
                .gather(target, digest, acceptable, producers, &bytes)
                .await?
            {
                Gathered::Nothing => (TargetFindings::NotScanned, unlisted),
                Gathered::Unreadable(why) => (TargetFindings::Malformed(why), unlisted),
                Gathered::Set(set) => (TargetFindings::Artifacts(Arc::new(set)), listed),
            },
        )
    }
}

/// Platforms of one index looked up at once.
const PLATFORM_FAN_OUT: usize = 16;

/// The cache key of something stored under a digest in a repository, for
/// these credentials.
pub(super) fn manifest_key(target: &Target, digest: &str) -> String {
    format!(
        "{}/{}@{digest}|{}",
        target.registry.as_str(),
        target.repository,
        target.credentials.fingerprint()
    )
}

fn failure(e: &RegistryError, op: Operation) -> LookupFailure {
    LookupFailure {
        class: e.class(op),
        detail: e.to_string(),
    }
}

/// Targets of an index: each platform judged on its own findings, or the
/// index's when it has none of its own; the index's artifact is judged too.
fn index_targets(
    digest: &str,
    own: Result<TargetFindings, LookupFailure>,
    platforms: &[(String, String)],
    per_platform: Vec<Result<TargetFindings, LookupFailure>>,
) -> Vec<TargetEvidence> {
    let index_scanned = matches!(own, Ok(TargetFindings::Artifacts(_)));
    let mut targets = Vec::with_capacity(platforms.len() + 1);
    for ((platform, pdigest), findings) in platforms.iter().zip(per_platform) {
        let findings = match findings {
            Ok(TargetFindings::NotScanned) if index_scanned => own.clone(),
            other => other,
        };
        targets.push(TargetEvidence {
            platform: Some(platform.clone()),
            digest: pdigest.clone(),
            findings,
        });
    }
    if index_scanned || matches!(own, Ok(TargetFindings::Malformed(_))) {
        targets.push(TargetEvidence {
            platform: Some("index".into()),
            digest: digest.to_owned(),
            findings: own,
        });
    }
    targets
}

fn manifest_kind(
    bytes: &[u8],
    digest: &str,
    max_platforms: usize,
) -> Result<ManifestKind, RegistryError> {
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| RegistryError::BadContent {
        url: digest.to_owned(),
        message: format!("invalid manifest: {e}"),
    })?;
    let Some(manifests) = m.manifests else {
        if m.layers.is_none() && m.config.is_none() {
            return Err(RegistryError::BadContent {
                url: digest.to_owned(),
                message: "neither an image manifest nor an index".into(),
            });
        }
        return Ok(ManifestKind::Image);
    };
    let platforms: Vec<(String, String)> = manifests
        .into_iter()
        .filter(|d| is_digest(&d.digest) && d.artifact_type.is_none())
        .filter_map(|d| {
            // BuildKit stores provenance as `unknown/unknown` entries marked
            // as attestation manifests; those are not images.
            let attestation = d
                .annotations
                .as_ref()
                .and_then(|a| a.get("vnd.docker.reference.type"))
                .is_some_and(|t| t == "attestation-manifest");
            match d.platform {
                _ if attestation => None,
                Some(p) if p.os == "unknown" && p.architecture == "unknown" => None,
                Some(p) => {
                    let mut name = format!("{}/{}", p.os, p.architecture);
                    if let Some(v) = p.variant.filter(|v| !v.is_empty()) {
                        name.push('/');
                        name.push_str(&v);
                    }
                    Some((name, d.digest))
                }
                // An entry without a platform is still pulled by someone:
                // judged (as `unknown`), never dropped.
                None => Some(("unknown".to_owned(), d.digest)),
            }
        })
        .collect();
    if platforms.len() > max_platforms {
        return Ok(ManifestKind::OverLimit(platforms.len()));
    }
    Ok(ManifestKind::Index(platforms))
}

/// The parts of manifests and indexes read here; deliberately lenient (Docker
/// and OCI media types, unknown fields ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Manifest {
    #[serde(default)]
    pub(super) manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub(super) layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub(super) config: Option<Descriptor>,
    #[serde(default)]
    pub(super) artifact_type: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    #[serde(default)]
    pub(super) media_type: String,
    pub(super) digest: String,
    #[serde(default)]
    pub(super) size: u64,
    #[serde(default)]
    pub(super) artifact_type: Option<String>,
    #[serde(default)]
    pub(super) annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

const CREATED: &str = "org.opencontainers.image.created";

fn created(annotations: Option<&BTreeMap<String, String>>) -> Option<Timestamp> {
    annotations?.get(CREATED)?.parse().ok()
}

impl Manifest {
    pub(super) fn created(&self) -> Option<Timestamp> {
        created(self.annotations.as_ref())
    }
}

impl Descriptor {
    pub(super) fn created(&self) -> Option<Timestamp> {
        created(self.annotations.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_platforms_skip_attestation_entries() {
        let index = br#"{"schemaVersion":2,"manifests":[
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1,"platform":{"os":"linux","architecture":"amd64"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":1,"platform":{"os":"linux","architecture":"arm","variant":"v7"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","size":1,"platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        let ManifestKind::Index(p) = manifest_kind(index, "sha256:x", 32).unwrap() else {
            panic!("an index")
        };
        assert_eq!(
            p.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["linux/amd64", "linux/arm/v7"]
        );
        assert!(manifest_kind(b"{}", "sha256:x", 32).is_err());
        assert!(manifest_kind(b"<html>", "sha256:x", 32).is_err());
        assert!(matches!(
            manifest_kind(index, "sha256:x", 1),
            Ok(ManifestKind::OverLimit(2))
        ));
    }
}
