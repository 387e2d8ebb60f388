//! Cosign vuln attestations (statements, DSSE envelopes, bare predicates),
//! read as an attestation layer is. The same bytes spliced in as the
//! predicate of a cosign statement must not crash the parser, and as a DSSE
//! payload they read the same findings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::findings::{COSIGN_VULN_V1, FormatHint};
use portcullis_core_fuzz::{check_dsse_wrapping, limits_for, parse_checked, statement};

const HINT: FormatHint<'static> = FormatHint {
    artifact_type: Some("application/vnd.in-toto+json"),
    media_type: Some("application/vnd.dsse.envelope.v1+json"),
    predicate_type: Some(COSIGN_VULN_V1),
};

fuzz_target!(|data: &[u8]| {
    let direct = parse_checked(data, HINT, limits_for(data));
    check_dsse_wrapping(data, &direct);
    let _ = parse_checked(&statement(COSIGN_VULN_V1, data), HINT, limits_for(data));
});
