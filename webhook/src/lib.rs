//! Portcullis webhook: image references, findings normalisation, the pure
//! gating engine, and the admission server around them.

pub mod admission;
pub mod cache;
pub mod config;
pub mod engine;
pub mod findings;
pub mod gate;
pub mod metrics;
pub mod policies;
pub mod reference;
pub mod registry;
pub mod server;
pub mod severity;
