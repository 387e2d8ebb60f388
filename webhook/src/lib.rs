//! Portcullis webhook library: image references, findings normalisation and
//! the pure gating engine.

pub mod engine;
pub mod findings;
pub mod reference;
pub mod severity;
