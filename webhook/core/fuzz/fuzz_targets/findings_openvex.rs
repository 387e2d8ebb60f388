//! OpenVEX documents: `vex::parse_openvex`, and the report reader that must
//! refuse them as "not findings" rather than crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::findings::vex::parse_openvex;
use portcullis_core_fuzz::{limits_for, media, parse_checked};

fuzz_target!(|data: &[u8]| {
    match parse_openvex(data) {
        Ok(statements) => {
            for s in &statements {
                let _ = (s.vulnerability.len(), s.status, s.products.len());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let _ = parse_checked(
        data,
        media("application/vnd.openvex+json"),
        limits_for(data),
    );
});
