//! Shared helpers for integration tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(clippy::panic, reason = "test code fails loudly")]

use std::path::PathBuf;

/// The repository's `testdata/` (see its SOURCES.md).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// The bytes of a fixture file, e.g. `fixture("trivy-json/trivy-pom.json.golden")`.
pub fn fixture(relative: &str) -> Vec<u8> {
    let path = fixtures_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}
