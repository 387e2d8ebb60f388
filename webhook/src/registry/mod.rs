//! Reading images and their findings from OCI registries (DESIGN §3.2–3.3, §4).
//!
//! - `client`: HTTP, authentication, caps, verification.
//! - `guard`: which addresses may be contacted.
//! - `auth`: credentials, challenges, dockerconfigjson.
//! - `access`: which credentials apply to which registry.
//! - `identity`, `azure`, `aws`, `gcp`: federated cloud identities.
//! - `lookup`: image → per-platform findings, with caches and coalescing.

pub mod access;
pub mod artifacts;
pub mod aws;
pub mod azure;
pub mod gcp;
pub mod identity;
pub use portcullis_core::auth;
pub mod client;
pub mod dns;
pub mod error;
pub mod guard;
pub mod lookup;

pub use client::{ClientSettings, RegistryClient, Target};
pub use error::{Operation, RegistryError};
