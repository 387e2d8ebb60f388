//! What an admission request asks to run: the containers of a Pod or of a
//! workload's pod template (DESIGN §3.1), with the context the rules match on.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use serde::Deserialize;
use serde_json::Value;

/// Where a container sits in the pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// `containers`.
    Container,
    /// `initContainers`.
    Init,
    /// `ephemeralContainers`.
    Ephemeral,
}

/// One container to gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatedContainer {
    /// Container name.
    pub name: String,
    /// Image as written in the spec.
    pub image: String,
    /// Which list it is in.
    pub kind: ContainerKind,
}

/// The gated parts of an admitted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `Pod`, `Deployment`, ...
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Object name (or `generateName` prefix while the name is unset).
    pub name: String,
    /// Owning workload name (for templates: the object itself).
    pub workload: Option<String>,
    /// Pod name, for Pods.
    pub pod_name: Option<String>,
    /// Labels of the pod or pod template.
    pub labels: BTreeMap<String, String>,
    /// Containers whose images are gated (on UPDATE: only changed images).
    pub containers: Vec<GatedContainer>,
    /// `imagePullSecrets` names.
    pub pull_secrets: Vec<String>,
    /// ServiceAccount name.
    pub service_account: String,
}

/// A request that cannot be gated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmissionError {
    /// No object on a CREATE/UPDATE.
    #[error("the admission request carries no object")]
    NoObject,
    /// The object's pod spec does not have the expected shape.
    #[error("{kind} {name}: malformed pod spec at {path}: {message}")]
    MalformedSpec {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// JSON path of the pod spec.
        path: &'static str,
        /// Parser message.
        message: String,
    },
}

/// Where each gated kind keeps its pod template.
fn pod_spec_path(kind: &str) -> Option<(&'static [&'static str], &'static str)> {
    Some(match kind {
        "Pod" => (&[], "spec"),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => (&["spec", "template"], "spec.template.spec"),
        "CronJob" => (
            &["spec", "jobTemplate", "spec", "template"],
            "spec.jobTemplate.spec.template.spec",
        ),
        _ => return None,
    })
}

/// The kinds gated.
pub const GATED_KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecPart {
    #[serde(default)]
    containers: Vec<ContainerPart>,
    #[serde(default)]
    init_containers: Vec<ContainerPart>,
    #[serde(default)]
    ephemeral_containers: Vec<ContainerPart>,
    #[serde(default)]
    image_pull_secrets: Vec<NameRef>,
    #[serde(default)]
    service_account_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ContainerPart {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NameRef {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
struct MetaPart {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "generateName")]
    generate_name: Option<String>,
}

#[derive(Debug)]
struct OwnerPart {
    kind: String,
    name: String,
}

/// The workload of a request, or `None` when its kind or operation is not gated.
pub fn workload_of(
    req: &AdmissionRequest<DynamicObject>,
) -> Result<Option<Workload>, AdmissionError> {
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Ok(None);
    }
    // Subresources (status, scale, ...) never change images, except
    // `ephemeralcontainers`, which adds containers to a running pod.
    if let Some(sub) = req.sub_resource.as_deref()
        && sub != "ephemeralcontainers"
    {
        return Ok(None);
    }
    let kind = req.kind.kind.as_str();
    let Some((template, path)) = pod_spec_path(kind) else {
        return Ok(None);
    };
    let object = req.object.as_ref().ok_or(AdmissionError::NoObject)?;
    let meta = object_meta(object);
    let name = meta
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| object.metadata.name.clone())
        .or_else(|| meta.generate_name.clone())
        .unwrap_or_else(|| req.name.clone());
    let spec = pod_spec(&object.data, template, kind, &name, path)?;
    let template_meta: MetaPart = if template.is_empty() {
        MetaPart {
            labels: object.metadata.labels.clone().unwrap_or_default(),
            ..MetaPart::default()
        }
    } else {
        let mut node = &object.data;
        for key in template {
            node = &node[*key];
        }
        serde_json::from_value(node["metadata"].clone()).unwrap_or_default()
    };
    let old_images: BTreeSet<String> = match (&req.operation, &req.old_object) {
        (Operation::Update, Some(old)) => pod_spec(&old.data, template, kind, &name, path)
            .map(|s| {
                all_containers(&s)
                    .map(|(c, _)| c.image.clone().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default(),
        _ => BTreeSet::new(),
    };
    let containers = all_containers(&spec)
        .filter_map(|(c, kind)| {
            let image = c.image.clone()?;
            (!old_images.contains(&image)).then(|| GatedContainer {
                name: c.name.clone(),
                image,
                kind,
            })
        })
        .collect();
    let owners: Vec<OwnerPart> = object
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| OwnerPart {
            kind: o.kind.clone(),
            name: o.name.clone(),
        })
        .collect();
    let workload = if kind == "Pod" {
        owning_workload(&owners, &template_meta.labels)
    } else {
        Some(owners.first().map_or(name.clone(), |o| o.name.clone()))
    };
    Ok(Some(Workload {
        kind: kind.to_owned(),
        namespace: req
            .namespace
            .clone()
            .or_else(|| object.metadata.namespace.clone())
            .unwrap_or_default(),
        pod_name: (kind == "Pod").then(|| name.clone()),
        name,
        workload,
        labels: template_meta.labels,
        containers,
        pull_secrets: spec
            .image_pull_secrets
            .into_iter()
            .map(|r| r.name)
            .filter(|n| !n.is_empty())
            .collect(),
        service_account: spec
            .service_account_name
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
    }))
}

fn object_meta(object: &DynamicObject) -> MetaPart {
    MetaPart {
        labels: object.metadata.labels.clone().unwrap_or_default(),
        name: object.metadata.name.clone(),
        generate_name: object.metadata.generate_name.clone(),
    }
}

fn pod_spec(
    data: &Value,
    template: &[&str],
    kind: &str,
    name: &str,
    path: &'static str,
) -> Result<PodSpecPart, AdmissionError> {
    let mut node = data;
    for key in template {
        node = &node[*key];
    }
    let spec = &node["spec"];
    if spec.is_null() {
        return Err(AdmissionError::MalformedSpec {
            kind: kind.to_owned(),
            name: name.to_owned(),
            path,
            message: "missing".into(),
        });
    }
    PodSpecPart::deserialize(spec).map_err(|e| AdmissionError::MalformedSpec {
        kind: kind.to_owned(),
        name: name.to_owned(),
        path,
        message: e.to_string(),
    })
}

fn all_containers(spec: &PodSpecPart) -> impl Iterator<Item = (&ContainerPart, ContainerKind)> {
    spec.init_containers
        .iter()
        .map(|c| (c, ContainerKind::Init))
        .chain(
            spec.containers
                .iter()
                .map(|c| (c, ContainerKind::Container)),
        )
        .chain(
            spec.ephemeral_containers
                .iter()
                .map(|c| (c, ContainerKind::Ephemeral)),
        )
}

/// A Pod's owning workload: a ReplicaSet's Deployment (name minus the
/// `pod-template-hash`), a Job's CronJob is not knowable here, so the Job.
fn owning_workload(owners: &[OwnerPart], labels: &BTreeMap<String, String>) -> Option<String> {
    let owner = owners.first()?;
    if owner.kind == "ReplicaSet"
        && let Some(hash) = labels.get("pod-template-hash")
        && let Some(deployment) = owner.name.strip_suffix(&format!("-{hash}"))
    {
        return Some(deployment.to_owned());
    }
    Some(owner.name.clone())
}
