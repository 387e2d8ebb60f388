//! Image → findings: resolve the tag, expand an index into platforms, find
//! each target's findings artifacts among its referrers, fetch and
//! normalise them (DESIGN §4).
//!
//! Caches, one `--cache-max-bytes` budget between them ([`CacheBudget`]):
//! - `front`: an image's whole evidence (digest, platforms, artifact sets)
//!   by image reference, credentials and producers. A warm admission reads
//!   one entry per image and nothing else. It is the only cache that holds
//!   findings summaries, and it weighs them; fresh as long as its parts
//!   (tag and referrer list, 60 s), then served stale while one refresh runs.
//!   Concurrent misses of one image share one lookup.
//! - `tags` (tag → digest, stale-while-revalidate), `manifests` (immutable),
//!   `unlisted` (targets with nothing usable attached, 10 s), `artifacts`
//!   (what each referrer yielded; immutable, so a refresh re-reads only the
//!   referrer list). `artifacts` refers to summaries without keeping them:
//!   a summary lives as long as an image's evidence that uses it.
//!
//! Keys are 128-bit keyed hashes of their parts ([`crate::cache::Key`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use moka::future::Cache;
use serde::Deserialize;

use super::artifacts::{Gathered, Piece, ProducerSet};
use super::auth::Credentials;
use super::client::{IMAGE_ACCEPT, RegistryClient, Target, is_digest};
use super::error::{Operation, RegistryError};
use crate::cache::{Counters, Freshness, Key, KeyBuilder, SwrCache, weight};
use crate::engine::{ArtifactSet, FailureClass, Interner};
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
    /// manifests, reports) and the vulnerability-ID interner, in bytes;
    /// split by [`CacheBudget`].
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

    /// Bytes held, each artifact set once (an index's platforms without
    /// findings of their own share the index's).
    fn approx_bytes(&self) -> usize {
        let mut seen: Vec<*const ArtifactSet> = Vec::new();
        let mut bytes = 96 + self.digest.as_ref().map_or(0, String::len);
        for t in &self.targets {
            bytes += 96 + t.digest.len() + t.platform.as_ref().map_or(0, String::len);
            bytes += match &t.findings {
                Ok(TargetFindings::Artifacts(set)) => {
                    let p = Arc::as_ptr(set);
                    if seen.contains(&p) {
                        0
                    } else {
                        seen.push(p);
                        set_bytes(set)
                    }
                }
                Ok(TargetFindings::NotScanned) => 0,
                Ok(TargetFindings::Malformed(why)) => why.len(),
                Err(f) => f.detail.len(),
            };
        }
        bytes
    }
}

/// Bytes an artifact set holds, its summaries included.
fn set_bytes(set: &ArtifactSet) -> usize {
    64 + set
        .artifacts
        .iter()
        .map(|a| {
            a.digest.len()
                + 128
                + a.summary.approx_bytes()
                + a.verified.iter().map(|(p, _)| p.len() + 48).sum::<usize>()
                + a.vex
                    .iter()
                    .map(|(p, v)| p.len() + v.len() * 4 + 64)
                    .sum::<usize>()
        })
        .sum::<usize>()
        + set
            .rejected
            .iter()
            .map(|(d, w)| d.len() + w.len() + 64)
            .sum::<usize>()
}

/// How one `--cache-max-bytes` budget is shared: image evidence (which
/// holds the findings summaries) takes most; the interned vulnerability IDs
/// a bounded share; the rest are small, numerous entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBudget {
    /// Image evidence, findings summaries included (`front`).
    pub reports: u64,
    /// Vulnerability IDs interned for summaries.
    pub interner: u64,
    /// Manifests by digest.
    pub manifests: u64,
    /// Tag → digest.
    pub tags: u64,
    /// Referrer results with nothing usable attached.
    pub referrers: u64,
    /// What each examined referrer yielded (without the summaries).
    pub artifacts: u64,
    /// Registry bearer tokens (held by the client).
    pub tokens: u64,
}

impl CacheBudget {
    /// Splits `total` bytes.
    pub fn split(total: u64) -> Self {
        let part = |pct: u64| total / 100 * pct;
        CacheBudget {
            reports: part(70),
            interner: part(10),
            manifests: part(4),
            tags: part(4),
            referrers: part(4),
            artifacts: part(4),
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

/// An image's evidence in the front cache, with until when it is fresh and
/// whether it may be served after that while it is refreshed.
#[derive(Clone)]
struct Fronted {
    evidence: Arc<ImageEvidence>,
    fresh_until: Instant,
    serve_stale: bool,
}

/// What the front cache says about an image.
pub enum Cached {
    /// Fresh: use it.
    Fresh(Arc<ImageEvidence>),
    /// Past its freshness: use it, and refresh it
    /// ([`ImageLookup::refresh`]).
    Stale(Arc<ImageEvidence>),
    /// Not there (or not to be served): look it up.
    Miss,
}

/// Looks up images' findings; cheap to clone (one `Arc`).
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
    front: Cache<Key, Fronted>,
    /// Front keys being refreshed (one refresh per key).
    refreshing: Cache<Key, ()>,
    /// Registries that answered that they have no referrers API, for a while:
    /// their referrers are read from the `sha256-` tag straight away.
    no_referrers_api: Cache<String, ()>,
    tags: SwrCache<String>,
    unlisted: Cache<Key, (TargetFindings, Instant)>,
    /// Manifests by digest are immutable.
    manifests: Cache<Key, Arc<ManifestKind>>,
    /// What each referrer yielded, by its digest, what it was judged
    /// against and the producers in force (see `artifacts.rs`).
    pub(super) artifacts: Cache<Key, Arc<[Piece]>>,
    front_counters: Counters,
    referrer_counters: Counters,
    manifest_counters: Counters,
    pub(super) artifact_counters: Counters,
    pub(super) metrics: Arc<Metrics>,
}

/// A small identity of credentials for keys: two lookups share cached
/// content only with the same credentials. Credentials that know where they
/// came from (a RegistryAccess and its Secret's version, a cloud identity)
/// are keyed by that, so a token refresh keeps the caches; plain basic
/// credentials by a hash of user and secret. The first 8 bytes of SHA-256,
/// with the kind mixed in so an identity never equals a password hash.
fn credential_id(credentials: &Credentials) -> u64 {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    match credentials {
        Credentials::Anonymous => return 0,
        Credentials::Basic { username, password } => {
            h.update(b"basic\0");
            h.update(username.as_bytes());
            h.update([0]);
            h.update(password.as_bytes());
        }
        Credentials::Identified { identity, .. } => {
            h.update(b"identity\0");
            h.update(identity.as_bytes());
        }
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) | 1
}

/// The key of something stored under a digest (or tag) in a repository,
/// for these credentials.
pub(super) fn repo_key(kind: &str, target: &Target, reference: &str) -> KeyBuilder {
    let mut k = KeyBuilder::new(kind);
    k.push(target.registry.as_str())
        .push(&target.repository)
        .push(reference)
        .push_u64(credential_id(&target.credentials));
    k
}

/// The front key of an image: its registry, repository, tag or digest
/// (the digest decides when both are given), credentials and producers.
fn front_key(image: &ImageRef, credentials: &Credentials, producers: &ProducerSet) -> Key {
    let mut k = KeyBuilder::new("image");
    k.push(image.registry()).push(image.repository());
    match image.digest() {
        Some(d) => k.push_u64(1).push(d),
        None => k.push_u64(0).push(image.tag().unwrap_or("latest")),
    };
    k.push_u64(credential_id(credentials))
        .push(producers.fingerprint())
        .finish()
}

impl ImageLookup {
    /// A lookup over `client`.
    pub fn new(client: RegistryClient, settings: LookupSettings, metrics: Arc<Metrics>) -> Self {
        let budget = CacheBudget::split(settings.max_cache_bytes);
        Interner::global()
            .set_max_bytes(Some(usize::try_from(budget.interner).unwrap_or(usize::MAX)));
        let kept = settings.fresh + settings.max_stale;
        ImageLookup(Arc::new(LookupState {
            front: Cache::builder()
                .weigher(|_: &Key, v: &Fronted| weight(16 + v.evidence.approx_bytes()))
                .max_capacity(budget.reports)
                .time_to_live(kept)
                .build(),
            refreshing: Cache::builder()
                .max_capacity(64 * 1024)
                .time_to_live(Duration::from_secs(60))
                .build(),
            no_referrers_api: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(REFERRERS_API_MEMORY)
                .build(),
            tags: SwrCache::new("tag", budget.tags, kept, String::len, &metrics),
            unlisted: Cache::builder()
                .weigher(|_: &Key, v: &(TargetFindings, Instant)| {
                    weight(
                        32 + match &v.0 {
                            TargetFindings::Malformed(why) => why.len(),
                            _ => 8,
                        },
                    )
                })
                .max_capacity(budget.referrers)
                .time_to_live(settings.no_findings)
                .build(),
            manifests: Cache::builder()
                .weigher(|_: &Key, v: &Arc<ManifestKind>| weight(16 + v.approx_bytes()))
                .max_capacity(budget.manifests)
                .build(),
            artifacts: Cache::builder()
                .weigher(|_: &Key, v: &Arc<[Piece]>| {
                    weight(16 + v.iter().map(Piece::approx_bytes).sum::<usize>())
                })
                .max_capacity(budget.artifacts)
                .build(),
            front_counters: Counters::new(&metrics, "image"),
            referrer_counters: Counters::new(&metrics, "referrers"),
            manifest_counters: Counters::new(&metrics, "manifest"),
            artifact_counters: Counters::new(&metrics, "artifact"),
            client,
            settings,
            metrics,
        }))
    }

    /// The registry client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Entries and weighed bytes of the image evidence cache (which holds
    /// the findings summaries), for tests and the memory benchmark.
    pub async fn cached_findings(&self) -> (u64, u64) {
        self.front.run_pending_tasks().await;
        (self.front.entry_count(), self.front.weighted_size())
    }

    /// What the front cache holds for `image` looked up with `credentials`
    /// and `producers`: one read, no registry request.
    pub async fn cached(
        &self,
        image: &ImageRef,
        credentials: &Credentials,
        producers: &ProducerSet,
    ) -> Cached {
        let key = front_key(image, credentials, producers);
        match self.front.get(&key).await {
            Some(f) if f.fresh_until > Instant::now() => {
                self.front_counters.hit();
                Cached::Fresh(f.evidence)
            }
            Some(f) if f.serve_stale => {
                self.front_counters.stale();
                Cached::Stale(f.evidence)
            }
            _ => {
                self.front_counters.miss();
                Cached::Miss
            }
        }
    }

    /// Refreshes a stale front entry in the background (one refresh per
    /// entry at a time), reading the tag and referrer list again.
    pub async fn refresh(&self, image: ImageRef, target: Target, producers: Arc<ProducerSet>) {
        let key = front_key(&image, &target.credentials, &producers);
        if !self.refreshing.entry(key).or_insert(()).await.is_fresh() {
            return;
        }
        let this = self.clone();
        let budget = self.settings.fresh + self.settings.max_stale;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(budget, async {
                let (evidence, fresh) = this.build(&image, &target, &producers, true).await;
                if let Some((fresh_until, serve_stale)) = fresh
                    && fresh_until > Instant::now()
                {
                    let evidence = Arc::new(evidence);
                    this.front
                        .insert(
                            key,
                            Fronted {
                                evidence,
                                fresh_until,
                                serve_stale,
                            },
                        )
                        .await;
                }
            })
            .await;
            this.refreshing.invalidate(&key).await;
        });
    }

    /// Everything needed to judge `image`, with evidence verified for
    /// `producers`: from the front cache, or looked up (concurrent lookups
    /// of one image share one).
    pub async fn lookup(
        &self,
        image: &ImageRef,
        target: Target,
        producers: Arc<ProducerSet>,
    ) -> Arc<ImageEvidence> {
        let key = front_key(image, &target.credentials, &producers);
        match self.front.get(&key).await {
            Some(f) if f.fresh_until > Instant::now() => return f.evidence,
            Some(f) if f.serve_stale => {
                self.refresh(image.clone(), target, producers).await;
                return f.evidence;
            }
            Some(_) => {
                // There but not to be served (it had nothing attached to a
                // part, which is believed only briefly): looked up again.
                let (evidence, fresh) = self.build(image, &target, &producers, false).await;
                let evidence = Arc::new(evidence);
                if let Some((fresh_until, serve_stale)) = fresh
                    && fresh_until > Instant::now()
                {
                    self.front
                        .insert(
                            key,
                            Fronted {
                                evidence: evidence.clone(),
                                fresh_until,
                                serve_stale,
                            },
                        )
                        .await;
                }
                return evidence;
            }
            None => {}
        }
        let this = self.clone();
        let found = self
            .front
            .try_get_with(key, async move {
                let (evidence, fresh) = this.build(image, &target, &producers, false).await;
                let evidence = Arc::new(evidence);
                match fresh {
                    Some((fresh_until, serve_stale))
                        if serve_stale || fresh_until > Instant::now() =>
                    {
                        Ok(Fronted {
                            evidence,
                            fresh_until,
                            serve_stale,
                        })
                    }
                    // Not for the front cache: handed to every waiter all the same.
                    _ => Err(evidence),
                }
            })
            .await;
        match found {
            Ok(f) => f.evidence,
            Err(evidence) => Arc::clone(&evidence),
        }
    }

    /// Looks an image up through the step caches. Returns the evidence and,
    /// when it may be kept in the front cache (it holds findings and no
    /// failure), until when it is fresh (its parts' earliest) and whether
    /// it may be served stale (every part may). `fresh_tag`: resolve the tag
    /// again when its cached digest is no longer fresh (a refresh).
    async fn build(
        &self,
        image: &ImageRef,
        target: &Target,
        producers: &Arc<ProducerSet>,
        fresh_tag: bool,
    ) -> (ImageEvidence, Option<(Instant, bool)>) {
        let (digest, tag_fresh) = match self.resolve(image, target, fresh_tag).await {
            Ok(d) => d,
            Err(e) => return (ImageEvidence::failed(e.class, e.detail), None),
        };
        let kind = match self.manifest_kind(target, &digest).await {
            Ok(k) => k,
            Err(e) => {
                return (
                    ImageEvidence {
                        digest: Err(failure(&e, Operation::ImageManifest)),
                        targets: Vec::new(),
                    },
                    None,
                );
            }
        };
        let mut fresh_until = tag_fresh;
        let mut serve_stale = true;
        let mut note = |(findings, until, stale): Found| {
            fresh_until = fresh_until.min(until);
            serve_stale &= stale;
            findings
        };
        let targets = match &*kind {
            ManifestKind::OverLimit(n) => {
                return (
                    ImageEvidence::failed(
                        FailureClass::LimitExceeded,
                        format!(
                            "the image index {digest} lists {n} platforms, more than the {} judged (--max-platforms-per-index)",
                            self.settings.max_platforms
                        ),
                    ),
                    None,
                );
            }
            ManifestKind::Image => vec![TargetEvidence {
                platform: None,
                findings: note(self.target_findings(target, &digest, None, producers).await),
                digest: digest.clone(),
            }],
            ManifestKind::Index(platforms) => {
                // A bounded fan-out: each pending lookup holds a request's
                // worth of state, and an index may list many platforms.
                let digests: Vec<String> = platforms.iter().map(|(_, d)| d.clone()).collect();
                let (own, per_platform) = futures::join!(
                    self.target_findings(target, &digest, None, producers),
                    futures::stream::iter(digests)
                        .map(|d| {
                            let (target, index, producers) = (target, &digest, producers);
                            async move {
                                self.target_findings(target, &d, Some(index), producers)
                                    .await
                            }
                        })
                        .buffered(PLATFORM_FAN_OUT)
                        .collect::<Vec<_>>()
                );
                let own = note(own);
                let per_platform: Vec<_> = per_platform.into_iter().map(&mut note).collect();
                index_targets(&digest, own, platforms, per_platform)
            }
        };
        let evidence = ImageEvidence {
            digest: Ok(digest),
            targets,
        };
        let keep = evidence.targets.iter().all(|t| t.findings.is_ok())
            && evidence
                .targets
                .iter()
                .any(|t| matches!(t.findings, Ok(TargetFindings::Artifacts(_))));
        (evidence, keep.then_some((fresh_until, serve_stale)))
    }

    /// Tag → digest (a digest reference resolves to itself, fresh forever),
    /// with until when the answer is fresh.
    async fn resolve(
        &self,
        image: &ImageRef,
        target: &Target,
        fresh_tag: bool,
    ) -> Result<(String, Instant), LookupFailure> {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        if let Some(d) = image.digest() {
            return Ok((d.to_owned(), far));
        }
        let tag = image.tag().unwrap_or("latest").to_owned();
        let key = repo_key("tag", target, &tag).finish();
        let this = self.clone();
        let target = target.clone();
        let fresh = Freshness {
            ttl: self.settings.fresh,
            serve_stale: true,
        };
        self.tags
            .get_with(key, fresh_tag, move || {
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
                        .insert(
                            repo_key("manifest", &target, &fetched.digest).finish(),
                            Arc::new(kind),
                        )
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
        let key = repo_key("manifest", target, digest).finish();
        if let Some(kind) = self.manifests.get(&key).await {
            self.manifest_counters.hit();
            return Ok(kind);
        }
        self.manifest_counters.miss();
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

    /// A target's findings, until when they are fresh, and whether they may
    /// be served stale after that.
    async fn target_findings(
        &self,
        target: &Target,
        digest: &str,
        index: Option<&str>,
        producers: &Arc<ProducerSet>,
    ) -> Found {
        // Evidence is verified against the producers in force and the digests
        // a statement may name, so both are part of the key.
        let key = repo_key("referrers", target, digest)
            .push(index.unwrap_or("-"))
            .push(producers.fingerprint())
            .finish();
        if let Some((known, until)) = self.unlisted.get(&key).await {
            self.referrer_counters.hit();
            return (Ok(known), until, false);
        }
        self.referrer_counters.miss();
        let mut acceptable = vec![digest.to_owned()];
        acceptable.extend(index.map(str::to_owned));
        match self.fetch_findings(target, &acceptable, producers).await {
            Ok((findings, fresh)) => {
                let until = Instant::now() + fresh.ttl;
                if !matches!(findings, TargetFindings::Artifacts(_)) {
                    self.unlisted.insert(key, (findings.clone(), until)).await;
                }
                (Ok(findings), until, fresh.serve_stale)
            }
            Err(e) => (
                Err(failure(&e, Operation::Referrers)),
                Instant::now(),
                false,
            ),
        }
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
        let Some(bytes) = self.referrers(target, digest).await? else {
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

/// How long a registry that has no referrers API is believed to have none.
const REFERRERS_API_MEMORY: Duration = Duration::from_secs(600);

impl LookupState {
    /// The referrers of `digest` as an image index, `None` when nothing is
    /// attached: the referrers API, else the `sha256-` tag. A registry
    /// without the API is remembered, and its tag read first; when the tag
    /// has nothing, the API is asked again (it may have appeared), so the
    /// memory never hides a referrer, it only saves a round trip.
    pub(super) async fn referrers(
        &self,
        target: &Target,
        digest: &str,
    ) -> Result<Option<bytes::Bytes>, RegistryError> {
        let registry = target.registry.as_str();
        if self.no_referrers_api.contains_key(registry) {
            if let Some(found) = self.client.referrers_tag(target, digest).await? {
                return Ok(Some(found));
            }
            return match self.client.referrers_api(target, digest).await? {
                Some(found) => {
                    self.no_referrers_api.invalidate(registry).await;
                    Ok(Some(found))
                }
                None => Ok(None),
            };
        }
        match self.client.referrers_api(target, digest).await? {
            Some(found) => Ok(Some(found)),
            None => {
                self.no_referrers_api.insert(registry.to_owned(), ()).await;
                self.client.referrers_tag(target, digest).await
            }
        }
    }
}

/// A target's findings, until when they are fresh, and whether stale use is allowed.
type Found = (Result<TargetFindings, LookupFailure>, Instant, bool);

/// Platforms of one index looked up at once.
const PLATFORM_FAN_OUT: usize = 16;

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
