//! Policy files: strict YAML/JSON documents; every SecurityArtifactPolicy in
//! them is compiled, and a rule that compiles is evaluated against fixed
//! subjects and evidence (with its own forbidden and ignored CVEs present).
//! Invalid rules are also run as fail-closed stand-ins.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use portcullis_core::documents::{Document, parse_documents};
use portcullis_core::engine::{
    Action, CompiledRule, Evidence, FailureActions, FailureClass, PolicySet,
};
use portcullis_core::reference::ImageRef;
use portcullis_core_fuzz::{check_decision, judge, now, subject, summary};
use portcullis_crds::PolicyAction;

const IMAGES: &[&str] = &[
    "nginx:1.27",
    "myacr.azurecr.io/team/checkout:2.1",
    "localhost:5000/app@sha256:91ac9b26df583762234c1cdb2fc930364754ccc59bc752a2bfe298d2ea68f9ff",
    "127.1:5000/app",
    "[::1]:5000/a",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let docs = match parse_documents(text, "fuzz.yaml") {
        Ok(docs) => docs,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let policies: Vec<(String, _)> = docs
        .iter()
        .filter_map(|d| match d {
            Document::Policy(p) => Some((p.metadata.name.clone().unwrap_or_default(), &p.spec)),
            _ => None,
        })
        .collect();
    let images: Vec<ImageRef> = IMAGES
        .iter()
        .filter_map(|i| ImageRef::parse(i).ok())
        .collect();
    let labels: BTreeMap<String, String> = [("app".to_owned(), "checkout".to_owned())].into();

    for (name, spec) in &policies {
        let rule = match CompiledRule::compile(name, spec) {
            Ok(rule) => rule,
            Err(e) => {
                assert_eq!(&e.rule, name);
                continue;
            }
        };
        assert_eq!(rule.name(), name);
        let set = PolicySet::new(vec![rule]);
        let mentioned: Vec<&str> = spec
            .conditions
            .forbidden_cves
            .iter()
            .map(String::as_str)
            .chain(spec.ignored_cves.iter().map(|c| c.id.as_str()))
            .take(32)
            .collect();
        let findings = summary(&mentioned);
        for image in images.iter().map(Some).chain([None]) {
            let s = subject(image, &labels);
            let text = image.map_or("not a reference", ImageRef::as_str);
            judge(&set, &s, text);
            if image.is_some() {
                check_decision(&set.evaluate(
                    &s,
                    Evidence::Scanned(&findings),
                    &FailureActions::default(),
                    now(),
                ));
            }
            if let Some(image) = image {
                let _ = set.registry_pattern(image.registry_host());
            }
        }
    }

    // Every rule at once, invalid ones as fail-closed stand-ins.
    let (set, errors) = PolicySet::compile_lenient(
        policies.iter().map(|(n, s)| (n.as_str(), *s)),
        Some(PolicyAction::Deny),
    );
    assert_eq!(set.rules().len(), policies.len());
    for e in &errors {
        assert!(
            set.rules()
                .iter()
                .any(|r| r.name() == e.rule && r.broken().is_some())
        );
    }
    for image in images.iter().map(Some).chain([None]) {
        let s = subject(image, &labels);
        let d = set.evaluate_unidentified(
            &s,
            FailureClass::LimitExceeded,
            "",
            &FailureActions::default(),
            now(),
        );
        check_decision(&d);
        if d.applicable_rules > 0 {
            assert_eq!(d.action, Action::Deny);
        }
        judge(&set, &s, "x");
    }
});
