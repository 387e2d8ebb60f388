//! Any report with no hint: the format is sniffed from the content, under
//! small limits so the findings and size caps are exercised too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::findings::{FormatHint, Limits};
use portcullis_core_fuzz::{limits_for, parse_checked};

fuzz_target!(|data: &[u8]| {
    let small = Limits {
        max_findings: 16,
        ..limits_for(data)
    };
    let _ = parse_checked(data, FormatHint::default(), small);
});
