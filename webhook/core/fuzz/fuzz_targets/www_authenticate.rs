//! `WWW-Authenticate` challenges. A parsed Bearer challenge, written back
//! with quoted parameters, parses to the same challenge.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::auth::{Challenge, parse_challenge};

fn quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Some(challenge) = parse_challenge(header) else {
        return;
    };
    if let Challenge::Bearer {
        realm,
        service,
        scope,
    } = &challenge
    {
        let mut text = format!("Bearer realm={}", quoted(realm));
        for (key, value) in [("service", service), ("scope", scope)] {
            if let Some(v) = value {
                text.push_str(&format!(",{key}={}", quoted(v)));
            }
        }
        assert_eq!(
            parse_challenge(&text).as_ref(),
            Some(&challenge),
            "{text:?}"
        );
    }
});
