//! Every sample in `config/samples/` validates against the generated CRDs, the
//! way the API server would check it: the structural schema (types, enums,
//! patterns, required fields, no unknown fields) and the CEL rules. Broken
//! variants of the samples are refused with the expected reason.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails loudly"
)]

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::Validator;
use portcullis_crds::{RegistryAccess, RuleSource, SecurityArtifactPolicy, TrustedProducer};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn committed_crds() -> Vec<CustomResourceDefinition> {
    portcullis_crds::all_crds()
        .into_iter()
        .map(|(file, _)| {
            let text = std::fs::read_to_string(repo().join("config/crd").join(file))
                .expect("committed CRD");
            serde_saphyr::from_str(&text).expect("CRD YAML")
        })
        .collect()
}

fn schema_for(kind: &str) -> Value {
    let crd = committed_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema");
    serde_json::to_value(schema).expect("schema json")
}

/// The API server prunes unknown fields; a sample must not rely on that, so the
/// test schema forbids them. Metadata is validated by the API server itself.
fn strict(mut schema: Value) -> Value {
    fn walk(v: &mut Value) {
        if let Value::Object(map) = v {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for child in map.values_mut() {
                walk(child);
            }
        } else if let Value::Array(items) = v {
            items.iter_mut().for_each(walk);
        }
    }
    walk(&mut schema);
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("metadata".into(), serde_json::json!({"type": "object"}));
        props.insert(
            "apiVersion".into(),
            serde_json::json!({"enum": ["portcullis.dev/v1alpha1"]}),
        );
        props.insert("kind".into(), serde_json::json!({"type": "string"}));
    }
    schema
}

/// All the reasons an object would be refused.
fn problems(object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().expect("kind");
    let schema = schema_for(kind);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(&strict(schema.clone()))
        .expect("schema compiles");
    let mut out: Vec<String> = validator
        .iter_errors(object)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if let Err(errors) = Validator::new().validate(&schema, object, None) {
        out.push(format!("{errors:?}"));
    }
    out
}

fn samples() -> Vec<(PathBuf, Value)> {
    let dir = repo().join("config/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("config/samples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("sample");
            let value: Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, value)
        })
        .collect()
}

fn sample(name: &str) -> Value {
    samples()
        .into_iter()
        .find(|(p, _)| p.file_stem().is_some_and(|s| s == name))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no sample {name}"))
}

#[test]
fn every_sample_validates_and_reads_into_the_rust_types() {
    let all = samples();
    assert!(
        all.len() >= 8,
        "expected the eight samples, found {}",
        all.len()
    );
    for (path, value) in &all {
        let problems = problems(value);
        assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
        let typed = match value["kind"].as_str() {
            Some("SecurityArtifactPolicy") => {
                serde_json::from_value::<SecurityArtifactPolicy>(value.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|p| p.spec.validate().map_err(|e| e.to_string()))
            }
            Some("RuleSource") => serde_json::from_value::<RuleSource>(value.clone())
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Some("RegistryAccess") => serde_json::from_value::<RegistryAccess>(value.clone())
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Some("TrustedProducer") => serde_json::from_value::<TrustedProducer>(value.clone())
                .map_err(|e| e.to_string())
                .and_then(|p| p.spec.validate().map_err(|e| e.to_string())),
            other => Err(format!("unexpected kind {other:?}")),
        };
        assert_eq!(typed, Ok(()), "{}", display(path));
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

fn broken(name: &str, edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut v = sample(name);
    edit(&mut v);
    problems(&v)
}

#[test]
fn broken_samples_are_refused_for_the_right_reason() {
    let has = |problems: Vec<String>, needle: &str| {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "expected {needle:?} in {problems:#?}"
        );
    };
    // No condition at all (CEL, spans fields).
    has(
        broken("default-audit-high-critical", |v| {
            v["spec"].as_object_mut().map(|s| s.remove("conditions"));
        }),
        "at least one condition",
    );
    // An empty severity block.
    has(
        broken("default-audit-high-critical", |v| {
            v["spec"]["conditions"]["maxAllowedSeverities"] = serde_json::json!({})
        }),
        "set at least one of",
    );
    // A Label matcher without a key.
    has(
        broken("deny-critical-prod", |v| {
            v["spec"]["scope"][0]["matcherType"] = "Label".into()
        }),
        "needs a key",
    );
    // Enum, pattern, date format, unknown field, wrong type.
    has(
        broken("deny-critical-prod", |v| {
            v["spec"]["action"] = "Block".into()
        }),
        "/spec/action",
    );
    has(
        broken("deny-critical-prod", |v| {
            v["spec"]["findings"]["maximumAge"] = "1 year".into()
        }),
        "/spec/findings/maximumAge",
    );
    has(
        broken("deny-critical-prod", |v| {
            v["spec"]["ignoredCves"][0]["expires"] = "31/12/2026".into()
        }),
        "/spec/ignoredCves/0/expires",
    );
    has(
        broken("deny-critical-prod", |v| {
            v["spec"]["conditions"]["maxAllowedSeverites"] = serde_json::json!({"high": 0})
        }),
        "maxAllowedSeverites",
    );
    has(
        broken("deny-critical-prod", |v| {
            v["spec"]["priority"] = "high".into()
        }),
        "/spec/priority",
    );
    has(
        broken("deny-critical-prod", |v| {
            v["spec"]["conditions"]["maxAllowedSeverities"]["critical"] = (-1).into()
        }),
        "/spec/conditions/maxAllowedSeverities/critical",
    );
    // RuleSource: https only; url and configMapRef are exclusive.
    has(
        broken("rulesource-portal", |v| {
            v["spec"]["url"] = "http://portal.example.com/rules".into()
        }),
        "/spec/url",
    );
    has(
        broken("rulesource-portal", |v| {
            v["spec"]["configMapRef"] = serde_json::json!({"namespace": "a", "name": "b"})
        }),
        "exactly one of url and configMapRef",
    );
    // RegistryAccess: the settings must match the type.
    has(
        broken("registryaccess-azure-workload-identity", |v| {
            v["spec"]["auth"]["type"] = "AwsWebIdentity".into()
        }),
        "AwsWebIdentity needs awsWebIdentity",
    );
    has(
        broken("registryaccess-azure-workload-identity", |v| {
            v["spec"]["registries"] = serde_json::json!([])
        }),
        "/spec/registries",
    );
    // SecurityArtifactPolicy: VEX only from trusted producers.
    has(
        broken("deny-untrusted-findings-payments", |v| {
            v["spec"]["findings"]
                .as_object_mut()
                .map(|f| f.remove("trustedProducers"));
        }),
        "applyVex requires trustedProducers",
    );
    has(
        broken("deny-untrusted-findings-payments", |v| {
            v["spec"]["findings"]["trustedProducers"] = serde_json::json!([])
        }),
        "applyVex requires trustedProducers",
    );
    has(
        broken("deny-untrusted-findings-payments", |v| {
            v["spec"]["findings"]["trustedProducers"] = serde_json::json!([""])
        }),
        "/spec/findings/trustedProducers/0",
    );
    // TrustedProducer: keys or identities; one source per key; a root for keyless.
    has(
        broken("trustedproducer-ci-scanner-key", |v| {
            v["spec"].as_object_mut().map(|s| s.remove("publicKeys"));
        }),
        "set at least one of publicKeys and keyless",
    );
    has(
        broken("trustedproducer-ci-scanner-key", |v| {
            v["spec"]["publicKeys"][1]["pem"] = "-----BEGIN PUBLIC KEY-----".into()
        }),
        "set exactly one of pem and secretRef",
    );
    has(
        broken("trustedproducer-ci-scanner-key", |v| {
            v["spec"]["publicKeys"][0]["pem"] = "ssh-ed25519 AAAAC3Nza".into()
        }),
        "/spec/publicKeys/0/pem",
    );
    has(
        broken("trustedproducer-ci-scanner-key", |v| {
            v["spec"]["requireTransparencyLog"] = true.into()
        }),
        "requireTransparencyLog needs trustedRootRef or trustedRoot",
    );
    has(
        broken("trustedproducer-github-keyless", |v| {
            v["spec"]
                .as_object_mut()
                .map(|s| s.remove("trustedRootRef"));
        }),
        "keyless identities need trustedRootRef or trustedRoot",
    );
    has(
        broken("trustedproducer-github-keyless", |v| {
            v["spec"]["trustedRoot"] = "{}".into()
        }),
        "set at most one of trustedRootRef and trustedRoot",
    );
    has(
        broken("trustedproducer-github-keyless", |v| {
            v["spec"]["keyless"][0]["subject"] = "someone@example.com".into()
        }),
        "set exactly one of subject and subjectRegExp",
    );
    has(
        broken("trustedproducer-github-keyless", |v| {
            v["spec"]["keyless"][0]
                .as_object_mut()
                .map(|k| k.remove("issuer"));
        }),
        "issuer",
    );
}

/// File mode has no API server: `validate()` must refuse what the CEL rules
/// refuse, for the same broken objects.
#[test]
fn validate_refuses_what_cel_refuses() {
    let policy = |edit: &dyn Fn(&mut Value)| {
        let mut v = sample("deny-untrusted-findings-payments");
        edit(&mut v);
        let cel = problems(&v);
        let rust = serde_json::from_value::<SecurityArtifactPolicy>(v)
            .map_err(|e| e.to_string())
            .and_then(|p| p.spec.validate().map_err(|e| e.to_string()));
        (cel, rust)
    };
    let (cel, rust) = policy(&|v| {
        v["spec"]["findings"]
            .as_object_mut()
            .map(|f| f.remove("trustedProducers"));
    });
    assert!(!cel.is_empty());
    assert!(
        rust.as_ref()
            .is_err_and(|e| e.contains("applyVex requires trustedProducers")),
        "{rust:?}"
    );
    let (cel, rust) = policy(&|_| {});
    assert!(cel.is_empty() && rust.is_ok(), "{cel:?} {rust:?}");

    let producer = |name: &str, edit: &dyn Fn(&mut Value)| {
        let mut v = sample(name);
        edit(&mut v);
        let cel = problems(&v);
        let rust = serde_json::from_value::<TrustedProducer>(v)
            .map_err(|e| e.to_string())
            .and_then(|p| p.spec.validate().map_err(|e| e.to_string()));
        (cel.is_empty(), rust.is_ok())
    };
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 5] = [
        ("trustedproducer-ci-scanner-key", |v| {
            v["spec"].as_object_mut().map(|s| s.remove("publicKeys"));
        }),
        ("trustedproducer-ci-scanner-key", |v| {
            v["spec"]["publicKeys"][1]["pem"] = "-----BEGIN PUBLIC KEY-----".into()
        }),
        ("trustedproducer-ci-scanner-key", |v| {
            v["spec"]["requireTransparencyLog"] = true.into()
        }),
        ("trustedproducer-github-keyless", |v| {
            v["spec"]
                .as_object_mut()
                .map(|s| s.remove("trustedRootRef"));
        }),
        ("trustedproducer-github-keyless", |v| {
            v["spec"]["keyless"][0]["subject"] = "someone@example.com".into()
        }),
    ];
    for (i, (name, edit)) in cases.into_iter().enumerate() {
        assert_eq!(producer(name, &edit), (false, false), "case {i}: {name}");
    }
    for name in [
        "trustedproducer-ci-scanner-key",
        "trustedproducer-github-keyless",
    ] {
        assert_eq!(producer(name, &|_| {}), (true, true), "{name}");
    }
}

#[test]
fn committed_crds_match_the_rust_types() {
    for (file, crd) in portcullis_crds::all_crds() {
        let committed =
            std::fs::read_to_string(repo().join("config/crd").join(file)).expect("committed CRD");
        assert_eq!(
            committed,
            portcullis_crds::crd_yaml(&crd).expect("renders"),
            "config/crd/{file} is stale: run `cargo run -p portcullis-crds --bin crdgen`"
        );
    }
}
