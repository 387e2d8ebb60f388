//! Inputs on which a fuzz target failed once (`testdata/fuzz-regressions/<target>/`,
//! one README line each), replayed with the behaviour that was fixed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails loudly"
)]

mod common;

use std::path::PathBuf;

use portcullis_core::reference::{ImageRef, MAX_NAME_LEN, ReferenceError};

fn regressions_dir() -> PathBuf {
    common::fixtures_dir().join("fuzz-regressions")
}

/// The bytes of one kept input, e.g. `regression("reference/...")`.
fn regression(relative: &str) -> Vec<u8> {
    let path = regressions_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every kept input of a target, with its name.
fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = regressions_dir().join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// The `reference` target's property: a parsed reference's normalised text
/// parses to the same reference.
fn assert_reference_idempotent(input: &str) {
    if let Ok(r) = ImageRef::parse(input) {
        let again = ImageRef::parse(r.as_str())
            .unwrap_or_else(|e| panic!("{input:?} → {:?} does not re-parse: {e}", r.as_str()));
        assert_eq!(again, r);
    }
}

#[test]
fn every_kept_reference_input_normalises_idempotently() {
    let inputs = regressions("reference");
    assert!(!inputs.is_empty());
    for (_, bytes) in inputs {
        assert_reference_idempotent(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn a_hub_name_over_255_once_normalised_is_refused() {
    let input = regression("reference/hub-name-over-255-once-normalised");
    let text = std::str::from_utf8(&input).unwrap();
    assert!(
        text.len() <= MAX_NAME_LEN,
        "the written name is under the limit"
    );
    let e = ImageRef::parse(text).unwrap_err();
    assert!(
        matches!(&e, ReferenceError::Invalid { reason, .. } if reason.contains("normalised repository name is 256")),
        "{e}"
    );

    // At the boundary: the longest one-component Hub name that fits
    // normalises to exactly 255 characters and re-parses; one more is refused.
    let prefix = "docker.io/library/".len();
    let fits = "a".repeat(MAX_NAME_LEN - prefix);
    let r = ImageRef::parse(&fits).unwrap();
    assert_eq!(r.name().len(), MAX_NAME_LEN);
    assert_eq!(ImageRef::parse(r.as_str()).unwrap(), r);
    assert!(ImageRef::parse(&"a".repeat(MAX_NAME_LEN - prefix + 1)).is_err());

    // A dotless upper-case host gains `:443` when normalised: same rule.
    let path = "a".repeat(MAX_NAME_LEN - "E/".len());
    let written = format!("E/{path}");
    assert_eq!(written.len(), MAX_NAME_LEN);
    assert!(ImageRef::parse(&written).is_err());
    let shorter = format!("E/{}", &path[4..]);
    let r = ImageRef::parse(&shorter).unwrap();
    assert_eq!(r.name().len(), MAX_NAME_LEN);
    assert_eq!(ImageRef::parse(r.as_str()).unwrap(), r);
}
