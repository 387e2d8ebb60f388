//! Registry errors and the failure class each one means.

use crate::engine::FailureClass;

/// What a request was for (a metrics label, and how a 404 reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// The image's manifest (tag → digest, or by digest).
    ImageManifest,
    /// A platform manifest of an index.
    PlatformManifest,
    /// The referrers API.
    Referrers,
    /// The `sha256-<hex>` referrers tag.
    ReferrersTag,
    /// A findings artifact's manifest.
    ArtifactManifest,
    /// A findings blob.
    Blob,
    /// A token endpoint.
    Token,
}

impl Operation {
    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImageManifest => "image_manifest",
            Self::PlatformManifest => "platform_manifest",
            Self::Referrers => "referrers",
            Self::ReferrersTag => "referrers_tag",
            Self::ArtifactManifest => "artifact_manifest",
            Self::Blob => "blob",
            Self::Token => "token",
        }
    }
}

/// A registry interaction that failed. Messages name the URL and never carry
/// credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The HTTP client could not be built.
    #[error("registry client setup: {0}")]
    Setup(String),
    /// The destination guard refused the address.
    #[error("{reason}")]
    Blocked {
        /// Why.
        reason: String,
    },
    /// 404.
    #[error("{url}: not found")]
    NotFound {
        /// URL.
        url: String,
    },
    /// 401/403, or no usable credentials.
    #[error("{url}: access refused ({status}): {detail}")]
    Unauthorized {
        /// URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// What was tried.
        detail: String,
    },
    /// 429.
    #[error("{url}: throttled (429){}", retry_after.map(|s| format!(", retry after {s}s")).unwrap_or_default())]
    Throttled {
        /// URL.
        url: String,
        /// Seconds to wait, when the registry said.
        retry_after: Option<u64>,
    },
    /// Any other non-success status.
    #[error("{url}: answered HTTP {status}")]
    Status {
        /// URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// The request timed out.
    #[error("{url}: timed out")]
    Timeout {
        /// URL.
        url: String,
    },
    /// Connection or protocol failure.
    #[error("{url}: {message}")]
    Transport {
        /// URL.
        url: String,
        /// The error chain.
        message: String,
    },
    /// The token endpoint failed.
    #[error("token endpoint {realm}: {message}")]
    Token {
        /// The realm URL.
        realm: String,
        /// What went wrong.
        message: String,
    },
    /// The body exceeded its cap.
    #[error("{url}: content larger than the {limit}-byte limit")]
    TooLarge {
        /// URL.
        url: String,
        /// The cap.
        limit: usize,
    },
    /// The content does not hash to the digest it was fetched by.
    #[error("{url}: content digest {actual} does not match {expected}")]
    DigestMismatch {
        /// URL.
        url: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what came back.
        actual: String,
    },
    /// More to fetch than the configured bounds allow (platforms of an
    /// index, artifacts of an image).
    #[error("{what}")]
    Limit {
        /// What exceeded which limit.
        what: String,
    },
    /// The webhook's own bound on concurrent registry requests was reached.
    #[error("{registry}: {message}")]
    Busy {
        /// The registry.
        registry: String,
        /// Which bound.
        message: String,
    },
    /// The content is not what it should be (unparseable manifest, ...).
    #[error("{url}: {message}")]
    BadContent {
        /// URL or digest.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl RegistryError {
    /// The failure class, given what the failed request was about: problems
    /// with the image itself are registry trouble; problems with a findings
    /// artifact's content mean the findings are malformed.
    pub fn class(&self, op: Operation) -> FailureClass {
        let findings_content = matches!(op, Operation::ArtifactManifest | Operation::Blob);
        match self {
            Self::Blocked { .. } => FailureClass::BlockedDestination,
            Self::Limit { .. } => FailureClass::LimitExceeded,
            Self::NotFound { .. } if op == Operation::ImageManifest => FailureClass::ImageNotFound,
            Self::NotFound { .. } if findings_content => FailureClass::MalformedFindings,
            Self::NotFound { .. } => FailureClass::RegistryUnavailable,
            Self::Unauthorized { .. } => FailureClass::RegistryAuth,
            Self::Throttled { .. } => FailureClass::RegistryThrottled,
            Self::TooLarge { .. } | Self::DigestMismatch { .. } | Self::BadContent { .. }
                if findings_content =>
            {
                FailureClass::MalformedFindings
            }
            Self::Setup(_)
            | Self::Token { .. }
            | Self::Status { .. }
            | Self::Timeout { .. }
            | Self::Busy { .. }
            | Self::Transport { .. }
            | Self::TooLarge { .. }
            | Self::DigestMismatch { .. }
            | Self::BadContent { .. } => FailureClass::RegistryUnavailable,
        }
    }
}
