//! Which containers are gated, read from real AdmissionReview payloads
//! (`testdata/admission-review`, see SOURCES.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use portcullis_webhook::admission::{ContainerKind, Workload, workload_of};

fn request(name: &str) -> AdmissionRequest<DynamicObject> {
    let bytes = std::fs::read(common::fixtures_dir().join("admission-review").join(name)).unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    // connaisseur's v1beta1 sample carries `"oldObject": ""`, which no API
    // server sends (it omits the field or sends null) and which the webhook
    // refuses as malformed; see `an_empty_string_object_is_refused`.
    if value["request"]["oldObject"] == "" {
        value["request"]["oldObject"] = serde_json::Value::Null;
    }
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(value).unwrap();
    review.try_into().unwrap()
}

#[test]
fn an_empty_string_object_is_refused() {
    let bytes = std::fs::read(
        common::fixtures_dir()
            .join("admission-review/connaisseur-09_dply_multi_image-v1beta1.json"),
    )
    .unwrap();
    let err = serde_json::from_slice::<AdmissionReview<DynamicObject>>(&bytes).unwrap_err();
    assert!(
        err.to_string().contains("expected struct DynamicObject"),
        "{err}"
    );
}

fn gated(name: &str) -> Workload {
    workload_of(&request(name)).unwrap().expect("gated kind")
}

fn images(w: &Workload) -> Vec<(&str, &str, ContainerKind)> {
    w.containers
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_str(), c.kind))
        .collect()
}

#[test]
fn pod_created_by_a_replicaset_is_attributed_to_its_deployment() {
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
    let mut req = request("connaisseur-10_update_replicaset.json");
    let obj = req.object.as_mut().unwrap();
    obj.data["spec"]["template"]["spec"]["containers"][0]["image"] =
        "docker.io/library/redis:7.2".into();
    let w = workload_of(&req).unwrap().unwrap();
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
fn other_kinds_and_operations_are_not_gated() {
    let mut req = request("whorf-request-deployment.json");
    req.kind.kind = "ConfigMap".into();
    assert_eq!(workload_of(&req), Ok(None));
    let mut req = request("whorf-request-deployment.json");
    req.sub_resource = Some("scale".into());
    assert_eq!(workload_of(&req), Ok(None));
}

#[test]
fn a_malformed_pod_spec_is_a_clear_error() {
    let mut req = request("whorf-request-deployment.json");
    req.object.as_mut().unwrap().data["spec"]["template"]["spec"]["containers"] = "nginx".into();
    let err = workload_of(&req).unwrap_err().to_string();
    assert!(
        err.contains("malformed pod spec at spec.template.spec"),
        "{err}"
    );
}
