//! CycloneDX JSON, read with the artifact type that routes it to its own parser;
//! the same bytes inside a cosign vuln attestation read the same findings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::findings::FormatHint;
use portcullis_core_fuzz::{check_cosign_embedding, limits_for, parse_checked};

const HINT: FormatHint<'static> = FormatHint {
    artifact_type: Some("application/vnd.cyclonedx+json"),
    media_type: Some("application/json"),
    predicate_type: None,
};

fuzz_target!(|data: &[u8]| {
    let direct = parse_checked(data, HINT, limits_for(data));
    check_cosign_embedding(data, &direct);
});
