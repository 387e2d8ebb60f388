//! Portcullis webhook: the admission server, registry client and caches
//! around the pure parts of `portcullis-core` (re-exported here).

pub use portcullis_core::{admission, engine, findings, pattern, reference, severity};

pub mod cache;
pub mod config;
pub mod gate;
pub mod metrics;
pub mod owners;
pub mod policies;
pub mod registry;
pub mod server;
