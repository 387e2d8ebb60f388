//! Which images are gated, read from real AdmissionReview payloads
//! (`testdata/admission-review`, see SOURCES.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use portcullis_core::admission::{
    AdmissionError, ContainerKind, OwnerTrust, ReviewError, Workload, decode_review,
};
use serde_json::Value;

fn fixture_json(name: &str) -> Value {
    let bytes = common::fixture(&format!("admission-review/{name}"));
    let mut value: Value = serde_json::from_slice(&bytes).unwrap();
    // connaisseur's v1beta1 sample carries `"oldObject": ""`, which no API
    // server sends (it omits the field or sends null) and which the webhook
    // refuses as malformed; see `an_empty_string_object_is_refused`.
    if value["request"]["oldObject"] == "" {
        value["request"]["oldObject"] = Value::Null;
    }
    value
}

/// What the review `value` asks to run, under `trust`.
fn workload_of(value: &Value, trust: &OwnerTrust) -> Result<Option<Workload>, AdmissionError> {
    let body = serde_json::to_vec(value).unwrap();
    decode_review(&body).unwrap().request.workload(trust)
}

fn gated_value(value: &Value) -> Workload {
    workload_of(value, &OwnerTrust::default())
        .unwrap()
        .expect("gated kind")
}

fn gated(name: &str) -> Workload {
    gated_value(&fixture_json(name))
}

fn images(w: &Workload) -> Vec<(&str, &str, ContainerKind)> {
    w.containers
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_str(), c.kind))
        .collect()
}

#[test]
fn an_empty_string_object_is_refused() {
    let bytes = common::fixture("admission-review/connaisseur-09_dply_multi_image-v1beta1.json");
    let err = decode_review(&bytes).unwrap_err();
    assert!(matches!(err, ReviewError::Malformed(_)), "{err}");
}

#[test]
fn pod_created_by_the_replicaset_controller_is_attributed_to_its_deployment() {
    let w = gated("connaisseur-02_pod.json");
    assert_eq!(w.kind, "Pod");
    assert_eq!(w.namespace, "test-connaisseur");
    assert_eq!(w.name, "charlie-deployment-76fbf58b7d-");
    assert_eq!(w.workload.as_deref(), Some("charlie-deployment"));
    assert_eq!(
        w.labels.get("app").map(String::as_str),
        Some("test-connaisseur")
    );
    assert_eq!(w.containers.len(), 1);
    assert!(
        w.containers[0]
            .image
            .starts_with("securesystemsengineering/charlie-image@sha256:91ac9b26")
    );
}

/// The same Pod, owner references and `pod-template-hash` included, created
/// by a tenant: nothing in it is trusted, so no Workload exemption applies.
#[test]
fn the_same_pod_from_a_tenant_is_judged_as_itself() {
    let mut value = fixture_json("connaisseur-02_pod.json");
    value["request"]["userInfo"]["username"] = "alice@example.com".into();
    let w = gated_value(&value);
    assert_eq!(w.workload, None);
    assert!(w.owner.is_none() && w.owner_ignored);
    // A deployment's own identity is trusted only if configured.
    let trust = OwnerTrust {
        controllers: ["alice@example.com".to_owned()].into(),
    };
    let w = workload_of(&value, &trust).unwrap().unwrap();
    assert_eq!(w.workload.as_deref(), Some("charlie-deployment"));
}

#[test]
fn init_and_ephemeral_containers_are_gated() {
    let w = gated("connaisseur-19_pod_initcontainer.json");
    let kinds: Vec<ContainerKind> = w.containers.iter().map(|c| c.kind).collect();
    assert!(kinds.contains(&ContainerKind::Init), "{:?}", images(&w));
    assert!(kinds.contains(&ContainerKind::Container));
    assert_eq!(w.containers.len(), 2);

    let w = gated("connaisseur-20_pod_ephemeralcontainer.json");
    assert!(
        w.containers
            .iter()
            .any(|c| c.kind == ContainerKind::Ephemeral),
        "{:?}",
        images(&w)
    );
    assert_eq!(w.containers.len(), 2);
}

#[test]
fn image_volumes_of_a_pod_template_are_gated() {
    let mut value = fixture_json("whorf-request-deployment.json");
    value["request"]["object"]["spec"]["template"]["spec"]["volumes"] = serde_json::json!([
        {"name": "models", "image": {"reference": "registry.example.com/models:v1", "pullPolicy": "IfNotPresent"}},
        {"name": "scratch", "emptyDir": {}}
    ]);
    let w = gated_value(&value);
    assert_eq!(
        images(&w),
        [
            ("nginx", "nginx", ContainerKind::Container),
            (
                "volume:models",
                "registry.example.com/models:v1",
                ContainerKind::ImageVolume
            )
        ]
    );
}

#[test]
fn deployment_templates_are_gated_including_v1beta1_reviews() {
    let w = gated("connaisseur-09_dply_multi_image-v1beta1.json");
    assert_eq!(w.kind, "Deployment");
    assert_eq!(w.workload.as_deref(), Some("test"));
    let imgs: Vec<&str> = w.containers.iter().map(|c| c.image.as_str()).collect();
    assert_eq!(imgs, ["busybox:1.32", "redis:alpine", "mysql:8"]);

    let w = gated("whorf-request-deployment.json");
    assert_eq!(w.namespace, "nginx");
    assert_eq!(w.containers.len(), 1);
    assert_eq!(w.containers[0].image, "nginx");
}

#[test]
fn update_gates_only_changed_images() {
    // The ReplicaSet update keeps its image: nothing to look up.
    let w = gated("connaisseur-10_update_replicaset.json");
    assert_eq!(w.kind, "ReplicaSet");
    assert_eq!(w.workload.as_deref(), Some("test"));
    assert!(w.containers.is_empty(), "{:?}", images(&w));

    // The same update with a new image gates that image only.
    let mut value = fixture_json("connaisseur-10_update_replicaset.json");
    value["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] =
        "docker.io/library/redis:7.2".into();
    let w = gated_value(&value);
    assert_eq!(
        images(&w),
        [(
            "nginx",
            "docker.io/library/redis:7.2",
            ContainerKind::Container
        )]
    );
}

#[test]
fn other_kinds_groups_and_operations_are_not_gated() {
    let trust = OwnerTrust::default();
    let mut value = fixture_json("whorf-request-deployment.json");
    value["request"]["kind"]["kind"] = "ConfigMap".into();
    assert_eq!(workload_of(&value, &trust), Ok(None));
    // A custom resource that happens to be called Deployment is not one.
    let mut value = fixture_json("whorf-request-deployment.json");
    value["request"]["kind"]["group"] = "example.com".into();
    assert_eq!(workload_of(&value, &trust), Ok(None));
    let mut value = fixture_json("whorf-request-deployment.json");
    value["request"]["subResource"] = "scale".into();
    assert_eq!(workload_of(&value, &trust), Ok(None));
}

#[test]
fn a_malformed_pod_spec_is_a_clear_error() {
    let mut value = fixture_json("whorf-request-deployment.json");
    value["request"]["object"]["spec"]["template"]["spec"]["containers"] = "nginx".into();
    let err = workload_of(&value, &OwnerTrust::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("malformed pod spec at spec.template.spec"),
        "{err}"
    );
}
