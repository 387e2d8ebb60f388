//! In-toto statements with the vulns predicate, and DSSE envelopes around
//! them: read as an attestation layer is (the content decides). The same
//! bytes as a DSSE payload read the same findings; as a vulns predicate
//! spliced into a statement, they must not crash the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::findings::FormatHint;
use portcullis_core_fuzz::{VULNS, check_dsse_wrapping, limits_for, parse_checked, statement};

const HINT: FormatHint<'static> = FormatHint {
    artifact_type: Some("application/vnd.in-toto+json"),
    media_type: Some("application/vnd.dsse.envelope.v1+json"),
    predicate_type: Some(VULNS),
};

fuzz_target!(|data: &[u8]| {
    let direct = parse_checked(data, HINT, limits_for(data));
    check_dsse_wrapping(data, &direct);
    let _ = parse_checked(&statement(VULNS, data), HINT, limits_for(data));
});
