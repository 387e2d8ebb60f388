//! Portcullis's pure parts, shared by the webhook, the operator's status
//! checks, the fuzz targets and a future CLI: image identity, findings
//! normalisation, severity and the gating engine. Nothing here does I/O,
//! reads a clock or needs an async runtime.

pub mod admission;
pub mod auth;
pub mod documents;
pub mod engine;
pub mod findings;
pub mod pattern;
pub mod reference;
pub mod severity;
pub mod trust;
