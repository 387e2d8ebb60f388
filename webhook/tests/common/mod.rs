//! Shared helpers for integration tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(clippy::panic, reason = "test code fails loudly")]

use std::path::PathBuf;

/// `../shared/fixtures` beside the repository (override with `PORTCULLIS_FIXTURES`).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("PORTCULLIS_FIXTURES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
        PathBuf::from,
    )
}

/// The bytes of a fixture file, e.g. `fixture("trivy-json/trivy-pom.json.golden")`.
pub fn fixture(relative: &str) -> Vec<u8> {
    let path = fixtures_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}
