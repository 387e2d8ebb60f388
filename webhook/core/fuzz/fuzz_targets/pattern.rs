//! Registry, repository and image patterns: `pattern\nimage`. Parsing and
//! matching never panic, whatever the operator; a `*` label matches any one
//! label of the image's host.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::pattern::{HostGlob, HostGlobs, ImagePart, ImagePattern, PathMode};
use portcullis_core::reference::ImageRef;

const IMAGES: &[&str] = &[
    "nginx",
    "team.azurecr.io/team/app:1",
    "localhost:5000/app@sha256:91ac9b26df583762234c1cdb2fc930364754ccc59bc752a2bfe298d2ea68f9ff",
    "127.1:5000/app",
    "[::1]:5000/a",
    "Evil/app:1",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, image) = text.split_once('\n').unwrap_or((&text, "nginx"));
    let mut images: Vec<ImageRef> = IMAGES
        .iter()
        .filter_map(|i| ImageRef::parse(i).ok())
        .collect();
    let fuzzed = ImageRef::parse(image).ok();
    images.extend(fuzzed.clone());

    for wildcards in [false, true] {
        if let Ok(glob) = HostGlob::parse(pattern, wildcards) {
            for i in &images {
                let _ = glob.matches(i.registry_host());
            }
            assert!(!glob.as_str().is_empty());
        }
    }
    let lines: Vec<&str> = pattern.split(',').collect();
    if let Ok(globs) = HostGlobs::parse(&lines) {
        for i in &images {
            let found = globs
                .find(i.registry_host())
                .map(|g| g.matches(i.registry_host()));
            assert!(
                found.is_none_or(|m| m),
                "find() returned a pattern that does not match"
            );
        }
    }
    for part in [ImagePart::Repository, ImagePart::Reference] {
        for mode in [PathMode::Exact, PathMode::Glob, PathMode::Prefix] {
            if let Ok(p) = ImagePattern::parse(pattern, part, mode) {
                for i in &images {
                    let _ = p.matches(i);
                }
            }
        }
    }

    // `*` in place of the first label of the fuzzed image's host matches it.
    if let Some(r) = &fuzzed {
        let host = r.registry_host();
        if let Some((_, rest)) = host.host().split_once('.')
            && !host.host().starts_with('[')
        {
            let port = host.port().map(|p| format!(":{p}")).unwrap_or_default();
            let glob = format!("*.{rest}{port}");
            let parsed = HostGlob::parse(&glob, true)
                .unwrap_or_else(|e| panic!("{glob:?} from {image:?}: {e}"));
            assert!(parsed.matches(host), "{glob:?} vs {image:?}");
        }
    }
});
