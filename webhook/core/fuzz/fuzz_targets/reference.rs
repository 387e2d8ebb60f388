//! Image references. What the crate promises:
//! - parse(s) = r ⇒ parse(r.as_str()) == r (normalising is idempotent), and
//!   the registry text re-parses to the same `RegistryHost`;
//! - a reference's own registry and name, as patterns, match it (in any case);
//! - `shown` never exceeds `MAX_SHOWN_LEN`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::pattern::{HostGlob, ImagePart, ImagePattern, PathMode};
use portcullis_core::reference::{ImageRef, MAX_SHOWN_LEN, RegistryHost, shown};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let input: &str = &text;
    let capped = shown(input);
    assert!(
        capped.len() <= MAX_SHOWN_LEN,
        "shown() gave {} bytes",
        capped.len()
    );
    if input.len() <= MAX_SHOWN_LEN {
        assert_eq!(capped, input);
    }
    let r = match ImageRef::parse(input) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let again = ImageRef::parse(r.as_str())
        .unwrap_or_else(|e| panic!("{input:?} → {:?} does not re-parse: {e}", r.as_str()));
    assert_eq!(again, r, "{input:?} → {:?}", r.as_str());
    let host = RegistryHost::parse(r.registry())
        .unwrap_or_else(|e| panic!("registry {:?} does not re-parse: {e}", r.registry()));
    assert_eq!(&host, r.registry_host(), "{input:?}");
    assert_eq!(host.as_str(), r.registry());
    assert_eq!(r.name(), format!("{}/{}", r.registry(), r.repository()));
    assert!(r.tag().is_some() || r.digest().is_some());
    let _ = host.ip();

    for registry in [r.registry().to_owned(), r.registry().to_ascii_uppercase()] {
        for wildcards in [false, true] {
            let glob = HostGlob::parse(&registry, wildcards)
                .unwrap_or_else(|e| panic!("registry {registry:?} is not a pattern: {e}"));
            assert!(glob.matches(r.registry_host()), "{registry:?} vs {input:?}");
        }
    }
    let name = ImagePattern::parse(r.name(), ImagePart::Repository, PathMode::Exact)
        .unwrap_or_else(|e| panic!("name {:?} is not a pattern: {e}", r.name()));
    assert!(name.matches(&r), "{:?} vs {input:?}", r.name());
    let under = format!("{}/*", r.registry());
    let under = ImagePattern::parse(&under, ImagePart::Reference, PathMode::Glob)
        .unwrap_or_else(|e| panic!("{under:?} is not a pattern: {e}"));
    assert!(under.matches(&r), "{under:?} vs {input:?}");
    assert!(HostGlob::parse("*", true).is_ok_and(|g| g.matches(r.registry_host())));
});
