//! Any report with no hint: the format is sniffed from the content, under
//! small limits so the findings cap is exercised too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::findings::{FormatHint, Limits};
use portcullis_core_fuzz::parse_checked;

const SMALL: Limits = Limits {
    max_bytes: 1 << 20,
    max_findings: 16,
};

fuzz_target!(|data: &[u8]| {
    let _ = parse_checked(data, FormatHint::default(), SMALL);
});
