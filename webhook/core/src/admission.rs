//! AdmissionReviews in and out, and what one asks to run (DESIGN §3.1): the
//! containers, init containers, ephemeral containers and image volumes of a
//! Pod or of a workload's pod template, with the context rules match on.
//!
//! Decoding reads only what gating needs, into typed structs (unknown fields
//! are skipped, not kept): a review is untrusted input of up to the body
//! limit, and a generic JSON tree of all of it was the largest cost of a warm
//! admission. The object is decoded on its own, so a malformed pod spec is a
//! denial with its path rather than an unreadable review.

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::engine::AdmissionDecision;

/// Where an image sits in the pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// `containers`.
    Container,
    /// `initContainers`.
    Init,
    /// `ephemeralContainers`.
    Ephemeral,
    /// `volumes[].image.reference` (image volumes): named `volume:<name>`.
    ImageVolume,
}

/// One image to gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatedContainer {
    /// Container name, or `volume:<name>` for an image volume.
    pub name: String,
    /// Image as written in the spec.
    pub image: String,
    /// Which list it is in.
    pub kind: ContainerKind,
}

/// The owner an object claims in its `ownerReferences`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerClaim {
    /// `apiVersion` of the owner.
    pub api_version: String,
    /// Kind of the owner.
    pub kind: String,
    /// Name of the owner.
    pub name: String,
    /// UID of the owner.
    pub uid: String,
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
    /// Owning workload name (for templates: the object itself). Taken from
    /// `ownerReferences` only when a trusted controller made the request;
    /// in a cluster the gate also checks that the owner exists.
    pub workload: Option<String>,
    /// The owner claimed, when it was trusted (for the gate to verify).
    pub owner: Option<OwnerClaim>,
    /// True when `ownerReferences` were present but not trusted.
    pub owner_ignored: bool,
    /// Pod name, for Pods.
    pub pod_name: Option<String>,
    /// Labels of the pod or pod template.
    pub labels: BTreeMap<String, String>,
    /// Images gated (on UPDATE: only changed images).
    pub containers: Vec<GatedContainer>,
    /// `imagePullSecrets` names.
    pub pull_secrets: Vec<String>,
    /// ServiceAccount name.
    pub service_account: String,
}

/// Who may vouch for an object's `ownerReferences`: the identities of the
/// controllers that create Pods, ReplicaSets and Jobs. Anyone who can create
/// Pods can copy a real ReplicaSet's name and UID into one, so an owner named
/// by anybody else proves nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerTrust {
    /// Usernames (`userInfo.username`) trusted.
    pub controllers: BTreeSet<String>,
}

impl Default for OwnerTrust {
    fn default() -> Self {
        let mut controllers: BTreeSet<String> =
            ["system:kube-controller-manager".to_owned()].into();
        for sa in [
            "replicaset-controller",
            "deployment-controller",
            "job-controller",
            "statefulset-controller",
            "daemon-set-controller",
            "cronjob-controller",
            "replication-controller",
        ] {
            controllers.insert(format!("system:serviceaccount:kube-system:{sa}"));
        }
        OwnerTrust { controllers }
    }
}

/// An AdmissionReview that cannot be answered (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON of the expected shape.
    #[error("not an AdmissionReview: {0}")]
    Malformed(String),
    /// Another apiVersion or kind.
    #[error(
        "expected an admission.k8s.io/v1 (or v1beta1) AdmissionReview, got {api_version} {kind}"
    )]
    WrongType {
        /// What was sent.
        api_version: String,
        /// What was sent.
        kind: String,
    },
    /// No `request`.
    #[error("AdmissionReview without a request")]
    NoRequest,
}

/// A request that cannot be gated (a denial with the reason).
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

/// The operation admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// CREATE.
    Create,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// CONNECT.
    Connect,
}

impl Operation {
    /// As the API server writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

/// Group, version and kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupVersionKind {
    /// API group (`""` for core).
    #[serde(default)]
    pub group: String,
    /// Version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
}

/// Who sent the request to the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    /// `userInfo.username`.
    #[serde(default)]
    pub username: String,
}

/// The request part of a review; its objects borrow from the body.
#[derive(Debug)]
pub struct Request<'b> {
    /// `request.uid`, echoed in the response.
    pub uid: String,
    /// The object's kind.
    pub kind: GroupVersionKind,
    /// `subResource`, if any.
    pub sub_resource: Option<String>,
    /// `request.name`.
    pub name: String,
    /// `request.namespace`.
    pub namespace: Option<String>,
    /// The operation.
    pub operation: Operation,
    /// The requester.
    pub user: UserInfo,
    /// `dryRun`.
    pub dry_run: bool,
    object: Option<ObjectJson<'b>>,
    old_object: Option<ObjectJson<'b>>,
}

/// `object` / `oldObject`: read in the review's pass when it has the shape
/// gating expects, else kept raw and read on its own by
/// [`Request::workload`], so that a malformed pod spec is a denial naming
/// its path rather than an unreadable review.
enum ObjectJson<'b> {
    Decoded(Box<ObjectIn<'b>>),
    Raw(&'b RawValue),
}

impl std::fmt::Debug for ObjectJson<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectJson::Decoded(_) => f.write_str("Decoded(..)"),
            ObjectJson::Raw(raw) => f.debug_tuple("Raw").field(raw).finish(),
        }
    }
}

/// A decoded AdmissionReview, borrowing from the body it was read from.
#[derive(Debug)]
pub struct Review<'b> {
    /// `admission.k8s.io/v1` or `admission.k8s.io/v1beta1`; the answer uses the same.
    pub api_version: String,
    /// The request.
    pub request: Request<'b>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<O> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default = "none")]
    request: Option<RequestIn<O>>,
}

fn none<T>() -> Option<T> {
    None
}

/// Only the type of a review, read again when a body does not decode, to
/// tell a review of the wrong type (400 with what was sent) from a broken one.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewType {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<O> {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    user_info: UserInfo,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default = "none")]
    object: Option<O>,
    #[serde(default = "none")]
    old_object: Option<O>,
}

/// An object read in the review's pass. Only a JSON object (or `null`, as
/// `None`) is accepted: the derived `Deserialize` of a struct would also take
/// an array of its fields, which the two-pass path refuses.
struct DecodedObject<'b>(Box<ObjectIn<'b>>);

impl<'de: 'b, 'b> Deserialize<'de> for DecodedObject<'b> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'b>(std::marker::PhantomData<&'b ()>);
        impl<'de: 'b, 'b> serde::de::Visitor<'de> for Visit<'b> {
            type Value = DecodedObject<'b>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<DecodedObject<'b>, A::Error> {
                let mut object = ObjectIn::default();
                let (mut metadata, mut spec) = (false, false);
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match &*key {
                        // Duplicates are refused, as the derived decoder does.
                        "metadata" if !metadata => {
                            metadata = true;
                            object.metadata = map.next_value()?;
                        }
                        "spec" if !spec => {
                            spec = true;
                            object.spec = map.next_value()?;
                        }
                        "metadata" | "spec" => {
                            return Err(serde::de::Error::custom(format_args!(
                                "duplicate field `{}`",
                                &*key
                            )));
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(DecodedObject(Box::new(object)))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

impl Review<'_> {
    /// The review without its objects (read them first with
    /// [`Request::workload`]), no longer borrowing from the body.
    pub fn into_head(self) -> Review<'static> {
        let r = self.request;
        Review {
            api_version: self.api_version,
            request: Request {
                uid: r.uid,
                kind: r.kind,
                sub_resource: r.sub_resource,
                name: r.name,
                namespace: r.namespace,
                operation: r.operation,
                user: r.user,
                dry_run: r.dry_run,
                object: None,
                old_object: None,
            },
        }
    }
}

fn is_review_type(api_version: &str, kind: &str) -> bool {
    kind == "AdmissionReview"
        && matches!(
            api_version,
            "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
        )
}

fn wrong_type(api_version: &str, kind: &str) -> ReviewError {
    ReviewError::WrongType {
        api_version: crate::reference::shown(api_version).into_owned(),
        kind: crate::reference::shown(kind).into_owned(),
    }
}

/// Decodes an AdmissionReview body.
pub fn decode_review(body: &[u8]) -> Result<Review<'_>, ReviewError> {
    // One pass over the body, objects included: decoding was the largest
    // user-space cost of a warm admission, and the object is most of the
    // body. A body that does not decode that way (a malformed or unexpected
    // object, or not a review at all) is read again by the two-pass path,
    // which gives the same answer for every body this one accepts. Only
    // UTF-8 bodies take this path: the two-pass path refuses an object with
    // invalid UTF-8 anywhere in it (the raw object is text), while this one
    // would skip it inside fields it ignores (found by the fuzz target).
    let Ok(text) = std::str::from_utf8(body) else {
        return decode_review_in_two_passes(body);
    };
    match serde_json::from_str::<ReviewIn<DecodedObject>>(text) {
        Ok(review) if is_review_type(&review.api_version, &review.kind) => {
            fn decoded(o: Option<DecodedObject<'_>>) -> Option<ObjectJson<'_>> {
                o.map(|o| ObjectJson::Decoded(o.0))
            }
            let r = review.request.ok_or(ReviewError::NoRequest)?;
            Ok(request_of(review.api_version, r, decoded))
        }
        _ => decode_review_in_two_passes(body),
    }
}

/// [`decode_review`] with the objects kept raw, to be read on their own by
/// [`Request::workload`]. Public for the differential fuzz target only.
#[doc(hidden)]
pub fn decode_review_in_two_passes<'b>(body: &'b [u8]) -> Result<Review<'b>, ReviewError> {
    let review: Result<ReviewIn<&RawValue>, _> = serde_json::from_slice(body);
    let review = match review {
        Ok(r) => r,
        Err(e) => {
            return Err(match serde_json::from_slice::<ReviewType>(body) {
                Ok(t) if !is_review_type(&t.api_version, &t.kind) => {
                    wrong_type(&t.api_version, &t.kind)
                }
                _ => ReviewError::Malformed(e.to_string()),
            });
        }
    };
    if !is_review_type(&review.api_version, &review.kind) {
        return Err(wrong_type(&review.api_version, &review.kind));
    }
    let r = review.request.ok_or(ReviewError::NoRequest)?;
    for raw in [&r.object, &r.old_object].into_iter().flatten() {
        let text = raw.get().trim_start();
        if !(text.starts_with('{') || text == "null") {
            return Err(ReviewError::Malformed(
                "object and oldObject must be objects".into(),
            ));
        }
    }
    let raw = |o: Option<&'b RawValue>| o.filter(|r| r.get().trim() != "null").map(ObjectJson::Raw);
    Ok(request_of(review.api_version, r, raw))
}

fn request_of<'b, O>(
    api_version: String,
    r: RequestIn<O>,
    object: impl Fn(Option<O>) -> Option<ObjectJson<'b>>,
) -> Review<'b> {
    Review {
        api_version,
        request: Request {
            uid: r.uid,
            kind: r.kind,
            sub_resource: r.sub_resource,
            name: r.name,
            namespace: r.namespace,
            operation: r.operation,
            user: r.user_info,
            dry_run: r.dry_run.unwrap_or(false),
            object: object(r.object),
            old_object: object(r.old_object),
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(Serialize)]
struct StatusOut<'a> {
    code: u16,
    reason: &'static str,
    message: &'a str,
}

/// The AdmissionReview answering `uid`, in `api_version`.
pub fn encode_response(api_version: &str, uid: &str, decision: &AdmissionDecision) -> Vec<u8> {
    let review = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid,
            allowed: decision.allowed,
            status: (!decision.allowed).then(|| StatusOut {
                code: 403,
                reason: "Forbidden",
                message: decision.message.as_deref().unwrap_or("portcullis: denied"),
            }),
            warnings: &decision.warnings,
        },
    };
    // Serialising these plain structs into a Vec cannot fail.
    serde_json::to_vec(&review).unwrap_or_default()
}

/// Where each gated kind keeps its pod template, and its API group.
fn pod_spec_path(group: &str, kind: &str) -> Option<&'static str> {
    Some(match (group, kind) {
        ("", "Pod") => "spec",
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job")
        | ("", "ReplicationController") => "spec.template.spec",
        ("batch", "CronJob") => "spec.jobTemplate.spec.template.spec",
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

/// A JSON string of the object, borrowed from the body unless it has
/// escapes. Hand-written because serde's own `Cow<str>` always copies except
/// in a field marked `borrow`, which does not reach into `Option`, `Vec` or
/// map entries, where most of these strings sit.
#[derive(Default, PartialEq, Eq, PartialOrd, Ord)]
struct Text<'b>(Cow<'b, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

// Orders as `str` does (the derived order of `Cow<str>`), so labels can be
// looked up by `&str`.
impl Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de: 'b, 'b> Deserialize<'de> for Text<'b> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'b>(std::marker::PhantomData<&'b ()>);
        impl<'de: 'b, 'b> serde::de::Visitor<'de> for Visit<'b> {
            type Value = Text<'b>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'b>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'b>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'b>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit(std::marker::PhantomData))
    }
}

type Labels<'b> = BTreeMap<Text<'b>, Text<'b>>;

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectIn<'b> {
    #[serde(default, borrow)]
    metadata: MetaIn<'b>,
    #[serde(default, borrow)]
    spec: Option<SpecIn<'b>>,
}

/// A Pod spec and a workload spec in one: their fields do not overlap, so one
/// pass reads either (`template` for workloads, `jobTemplate` for CronJobs).
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecIn<'b> {
    #[serde(default, borrow)]
    template: Option<TemplateIn<'b>>,
    #[serde(default, borrow)]
    job_template: Option<JobTemplateIn<'b>>,
    #[serde(default, borrow)]
    containers: Option<Vec<ContainerIn<'b>>>,
    #[serde(default, borrow)]
    init_containers: Vec<ContainerIn<'b>>,
    #[serde(default, borrow)]
    ephemeral_containers: Vec<ContainerIn<'b>>,
    #[serde(default, borrow)]
    volumes: Vec<VolumeIn<'b>>,
    #[serde(default, borrow)]
    image_pull_secrets: Vec<NameRef<'b>>,
    #[serde(default, borrow)]
    service_account_name: Option<Text<'b>>,
}

#[derive(Default, Deserialize)]
struct JobTemplateIn<'b> {
    #[serde(default, borrow)]
    spec: Option<JobSpecIn<'b>>,
}

#[derive(Default, Deserialize)]
struct JobSpecIn<'b> {
    #[serde(default, borrow)]
    template: Option<TemplateIn<'b>>,
}

#[derive(Default, Deserialize)]
struct TemplateIn<'b> {
    #[serde(default, borrow)]
    metadata: MetaIn<'b>,
    #[serde(default, borrow)]
    spec: Option<PodSpecIn<'b>>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecIn<'b> {
    #[serde(default, borrow)]
    containers: Option<Vec<ContainerIn<'b>>>,
    #[serde(default, borrow)]
    init_containers: Vec<ContainerIn<'b>>,
    #[serde(default, borrow)]
    ephemeral_containers: Vec<ContainerIn<'b>>,
    #[serde(default, borrow)]
    volumes: Vec<VolumeIn<'b>>,
    #[serde(default, borrow)]
    image_pull_secrets: Vec<NameRef<'b>>,
    #[serde(default, borrow)]
    service_account_name: Option<Text<'b>>,
}

#[derive(Deserialize)]
struct ContainerIn<'b> {
    #[serde(default, borrow)]
    name: Text<'b>,
    #[serde(default, borrow)]
    image: Option<Text<'b>>,
}

#[derive(Deserialize)]
struct VolumeIn<'b> {
    #[serde(default, borrow)]
    name: Text<'b>,
    #[serde(default, borrow)]
    image: Option<ImageVolumeIn<'b>>,
}

#[derive(Deserialize)]
struct ImageVolumeIn<'b> {
    #[serde(default, borrow)]
    reference: Option<Text<'b>>,
}

#[derive(Deserialize)]
struct NameRef<'b> {
    #[serde(default, borrow)]
    name: Text<'b>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaIn<'b> {
    #[serde(default, borrow)]
    labels: Labels<'b>,
    #[serde(default, borrow)]
    name: Option<Text<'b>>,
    #[serde(default, borrow)]
    generate_name: Option<Text<'b>>,
    #[serde(default, borrow)]
    namespace: Option<Text<'b>>,
    #[serde(default, borrow)]
    owner_references: Vec<OwnerIn<'b>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerIn<'b> {
    #[serde(default, borrow)]
    api_version: Text<'b>,
    #[serde(default, borrow)]
    kind: Text<'b>,
    #[serde(default, borrow)]
    name: Text<'b>,
    #[serde(default, borrow)]
    uid: Text<'b>,
    #[serde(default)]
    controller: Option<bool>,
}

impl Request<'_> {
    /// The workload of this request, or `None` when its kind or operation is
    /// not gated. Owner references count only when `trust` names the requester.
    pub fn workload(&self, trust: &OwnerTrust) -> Result<Option<Workload>, AdmissionError> {
        if !matches!(self.operation, Operation::Create | Operation::Update) {
            return Ok(None);
        }
        // Subresources (status, scale, ...) never change images, except
        // `ephemeralcontainers`, which adds containers to a running pod.
        if let Some(sub) = self.sub_resource.as_deref()
            && sub != "ephemeralcontainers"
        {
            return Ok(None);
        }
        let kind = self.kind.kind.as_str();
        let Some(path) = pod_spec_path(&self.kind.group, kind) else {
            return Ok(None);
        };
        let object = self.object.as_ref().ok_or(AdmissionError::NoObject)?;
        let malformed = |name: &str, message: String| AdmissionError::MalformedSpec {
            kind: kind.to_owned(),
            name: name.to_owned(),
            path,
            message,
        };
        let read;
        let object: &ObjectIn<'_> = match object {
            ObjectJson::Decoded(o) => o,
            ObjectJson::Raw(raw) => {
                read = serde_json::from_str::<ObjectIn>(raw.get())
                    .map_err(|e| malformed(&self.name, e.to_string()))?;
                &read
            }
        };
        let name = object
            .metadata
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(object.metadata.generate_name.as_deref())
            .map_or_else(|| self.name.clone(), str::to_owned);
        let (template_labels, spec) = pod_spec(object.spec.as_ref(), kind)
            .ok_or_else(|| malformed(&name, "missing".into()))?;
        let labels = if kind == "Pod" {
            &object.metadata.labels
        } else {
            template_labels
        };
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // On UPDATE, images the old object already had are not gated again;
        // an old object that does not read gates every image.
        let old_read;
        let old = match (self.operation, &self.old_object) {
            (Operation::Update, Some(ObjectJson::Decoded(old))) => Some(&**old),
            (Operation::Update, Some(ObjectJson::Raw(old))) => {
                old_read = serde_json::from_str::<ObjectIn>(old.get()).ok();
                old_read.as_ref()
            }
            _ => None,
        };
        let old_images = old_images(old, kind);
        let containers = gated(&spec)
            .into_iter()
            .filter(|c| !old_images.contains(c.image.as_str()))
            .collect();
        let owners = &object.metadata.owner_references;
        let claimed = owners
            .iter()
            .find(|o| o.controller == Some(true))
            .or_else(|| owners.first());
        let trusted = trust.controllers.contains(&self.user.username);
        let owner = claimed.filter(|_| trusted).map(|o| OwnerClaim {
            api_version: o.api_version.to_string(),
            kind: o.kind.to_string(),
            name: o.name.to_string(),
            uid: o.uid.to_string(),
        });
        let workload = match (&owner, kind) {
            (Some(o), "Pod") => Some(owning_workload(o, &labels)),
            (None, "Pod") => None,
            (Some(o), _) => Some(o.name.clone()),
            (None, _) => Some(name.clone()),
        };
        Ok(Some(Workload {
            kind: kind.to_owned(),
            namespace: self
                .namespace
                .clone()
                .or_else(|| object.metadata.namespace.as_deref().map(str::to_owned))
                .unwrap_or_default(),
            pod_name: (kind == "Pod").then(|| name.clone()),
            name,
            workload,
            owner_ignored: claimed.is_some() && !trusted,
            owner,
            labels,
            containers,
            pull_secrets: spec
                .image_pull_secrets
                .iter()
                .filter(|r| !r.name.is_empty())
                .map(|r| r.name.to_string())
                .collect(),
            service_account: spec
                .service_account_name
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_owned(),
        }))
    }
}

/// The images of an UPDATE's old object (those not changed are not gated again).
fn old_images<'o>(old: Option<&'o ObjectIn<'_>>, kind: &str) -> BTreeSet<&'o str> {
    old.and_then(|o| pod_spec(o.spec.as_ref(), kind))
        .map(|(_, s)| s.images().collect())
        .unwrap_or_default()
}

/// The parts of a pod spec gating reads, borrowed from a Pod's spec or a
/// template's.
struct PodSpecView<'o> {
    containers: &'o [ContainerIn<'o>],
    init_containers: &'o [ContainerIn<'o>],
    ephemeral_containers: &'o [ContainerIn<'o>],
    volumes: &'o [VolumeIn<'o>],
    image_pull_secrets: &'o [NameRef<'o>],
    service_account_name: Option<&'o str>,
}

static NO_LABELS: Labels<'static> = BTreeMap::new();

/// The pod spec (and the template's labels) of a kind's object.
fn pod_spec<'o>(
    spec: Option<&'o SpecIn<'_>>,
    kind: &str,
) -> Option<(&'o Labels<'o>, PodSpecView<'o>)> {
    let spec = spec?;
    let template = match kind {
        "Pod" => {
            return Some((
                &NO_LABELS,
                PodSpecView {
                    containers: spec.containers.as_deref()?,
                    init_containers: &spec.init_containers,
                    ephemeral_containers: &spec.ephemeral_containers,
                    volumes: &spec.volumes,
                    image_pull_secrets: &spec.image_pull_secrets,
                    service_account_name: spec.service_account_name.as_deref(),
                },
            ));
        }
        "CronJob" => spec
            .job_template
            .as_ref()?
            .spec
            .as_ref()?
            .template
            .as_ref()?,
        _ => spec.template.as_ref()?,
    };
    let pod = template.spec.as_ref()?;
    Some((
        &template.metadata.labels,
        PodSpecView {
            containers: pod.containers.as_deref()?,
            init_containers: &pod.init_containers,
            ephemeral_containers: &pod.ephemeral_containers,
            volumes: &pod.volumes,
            image_pull_secrets: &pod.image_pull_secrets,
            service_account_name: pod.service_account_name.as_deref(),
        },
    ))
}

impl<'o> PodSpecView<'o> {
    /// Each image with its name and list, in the order the kubelet pulls.
    fn entries(&self) -> impl Iterator<Item = (Cow<'o, str>, &'o str, ContainerKind)> + '_ {
        let lists = [
            (self.init_containers, ContainerKind::Init),
            (self.containers, ContainerKind::Container),
            (self.ephemeral_containers, ContainerKind::Ephemeral),
        ];
        let containers = lists.into_iter().flat_map(|(list, kind)| {
            list.iter().filter_map(move |c| {
                c.image
                    .as_deref()
                    .map(|image| (Cow::Borrowed(&*c.name), image, kind))
            })
        });
        let volumes = self.volumes.iter().filter_map(|v| {
            let reference = v.image.as_ref()?.reference.as_deref()?;
            Some((
                Cow::Owned(format!("volume:{}", &*v.name)),
                reference,
                ContainerKind::ImageVolume,
            ))
        });
        containers.chain(volumes)
    }

    fn images(&self) -> impl Iterator<Item = &'o str> + '_ {
        self.entries().map(|(_, image, _)| image)
    }
}

/// Every image the kubelet pulls for this spec.
fn gated(spec: &PodSpecView<'_>) -> Vec<GatedContainer> {
    spec.entries()
        .map(|(name, image, kind)| GatedContainer {
            name: name.into_owned(),
            image: image.to_owned(),
            kind,
        })
        .collect()
}

/// A Pod's owning workload as far as its own request tells: a ReplicaSet's
/// Deployment (name minus the `pod-template-hash`), else the owner. In a
/// cluster the gate replaces this with the owner's own controller.
fn owning_workload(owner: &OwnerClaim, labels: &BTreeMap<String, String>) -> String {
    if owner.kind == "ReplicaSet"
        && let Some(hash) = labels.get("pod-template-hash")
        && let Some(deployment) = owner.name.strip_suffix(&format!("-{hash}"))
    {
        return deployment.to_owned();
    }
    owner.name.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workload of a Pod CREATE by `username`.
    fn workload(object: &str, username: &str, trust: &OwnerTrust) -> Workload {
        let body = format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u1","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"name":"p","namespace":"team","operation":"CREATE","userInfo":{{"username":"{username}"}},"object":{object}}}}}"#
        );
        let review = decode_review(body.as_bytes()).unwrap();
        review.request.workload(trust).unwrap().unwrap()
    }

    const OWNED_POD: &str = r#"{"metadata":{"name":"web-7d9f-abcde","labels":{"pod-template-hash":"7d9f"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d9f","uid":"rs-uid","controller":true}]},"spec":{"containers":[{"name":"c","image":"nginx"}],"volumes":[{"name":"models","image":{"reference":"registry.example.com/models:1"}},{"name":"tmp","emptyDir":{}}]}}"#;

    #[test]
    fn image_volumes_are_gated_as_volume_containers() {
        let w = workload(OWNED_POD, "x", &OwnerTrust::default());
        let images: Vec<(&str, &str, ContainerKind)> = w
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.image.as_str(), c.kind))
            .collect();
        assert_eq!(
            images,
            [
                ("c", "nginx", ContainerKind::Container),
                (
                    "volume:models",
                    "registry.example.com/models:1",
                    ContainerKind::ImageVolume
                )
            ]
        );
    }

    #[test]
    fn owner_references_count_only_from_a_trusted_controller() {
        let trust = OwnerTrust::default();
        let w = workload(
            OWNED_POD,
            "system:serviceaccount:kube-system:replicaset-controller",
            &trust,
        );
        assert_eq!(w.workload.as_deref(), Some("web"));
        assert_eq!(w.owner.as_ref().map(|o| o.uid.as_str()), Some("rs-uid"));
        assert!(!w.owner_ignored);
        // The same Pod written by a tenant is judged as itself.
        let w = workload(OWNED_POD, "alice", &trust);
        assert_eq!(w.workload, None);
        assert_eq!(w.owner, None);
        assert!(w.owner_ignored);
    }

    #[test]
    fn escaped_strings_are_read_unescaped() {
        // Strings are borrowed from the body unless they carry escapes: an
        // escaped image must be gated as the image it spells, not as its
        // escape sequence nor skipped.
        let pod = r#"{"metadata":{"name":"w\u0065b","labels":{"\u0061pp":"w\"eb","plain":"x"}},"spec":{"containers":[{"name":"c\u0031","image":"registry.example.com/ng\u0069nx:1"},{"name":"c2","image":"docker.io/library/redis:7"}],"volumes":[{"name":"v\/1","image":{"reference":"registry.example.com\/models:1"}}],"serviceAccountName":"b\u0075ild"}}"#;
        let w = workload(pod, "x", &OwnerTrust::default());
        assert_eq!(w.name, "web");
        assert_eq!(w.service_account, "build");
        assert_eq!(
            w.labels.iter().collect::<Vec<_>>(),
            [
                (&"app".to_owned(), &"w\"eb".to_owned()),
                (&"plain".to_owned(), &"x".to_owned())
            ]
        );
        let images: Vec<(&str, &str)> = w
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.image.as_str()))
            .collect();
        assert_eq!(
            images,
            [
                ("c1", "registry.example.com/nginx:1"),
                ("c2", "docker.io/library/redis:7"),
                ("volume:v/1", "registry.example.com/models:1"),
            ]
        );
    }

    /// What a body decodes to, by `decode`: the review's error, or the
    /// workload's outcome under the default trust and trusting the requester.
    fn outcome(
        decode: fn(&[u8]) -> Result<Review<'_>, ReviewError>,
        body: &[u8],
    ) -> Result<Vec<Result<Option<Workload>, AdmissionError>>, ReviewError> {
        let review = decode(body)?;
        let mut trusting = OwnerTrust::default();
        trusting
            .controllers
            .insert(review.request.user.username.clone());
        Ok([OwnerTrust::default(), trusting]
            .iter()
            .map(|t| review.request.workload(t))
            .collect())
    }

    #[test]
    fn one_pass_decoding_answers_as_two_passes_do() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/admission-review");
        let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(bodies.len() >= 5);
        let wrap = |object: &str, old: &str| {
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u1","kind":{{"group":"","version":"v1","kind":"Pod"}},"name":"p","namespace":"team","operation":"UPDATE","userInfo":{{"username":"system:serviceaccount:kube-system:replicaset-controller"}},"object":{object},"oldObject":{old}}}}}"#
            )
            .into_bytes()
        };
        let pod =
            r#"{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}"#;
        for (object, old) in [
            (pod, "null"),
            (OWNED_POD, pod),
            // An array of the fields, which a derived struct decoder accepts.
            (
                r#"[{"name":"a"},{"containers":[{"name":"c","image":"evil"}]}]"#,
                "null",
            ),
            (
                pod,
                r#"[{}, {"containers":[{"name":"c","image":"nginx"}]}]"#,
            ),
            // Duplicate fields, at the top of the object and inside.
            (
                r#"{"spec":{"containers":[]},"spec":{"containers":[{"name":"c","image":"evil"}]}}"#,
                "null",
            ),
            (
                r#"{"metadata":{},"metadata":{"name":"x"},"spec":{"containers":[{"image":"evil"}]}}"#,
                "null",
            ),
            (
                r#"{"spec":{"containers":[{"image":"a","image":"evil"}]}}"#,
                "null",
            ),
            // Escaped keys.
            (
                r#"{"sp\u0065c":{"cont\u0061iners":[{"name":"c","image":"evil"}]}}"#,
                "null",
            ),
            // Malformed pod specs: a denial with the path, not a 400.
            (r#"{"spec":{"containers":"evil"}}"#, "null"),
            (
                r#"{"spec":{"containers":[{"name":"c","image":7}]}}"#,
                "null",
            ),
            (r#"{"spec":{}}"#, "null"),
            (pod, r#"{"spec":{"containers":"x"}}"#),
            (pod, r#""old""#),
            ("7", "null"),
            ("null", "null"),
            (
                r#"{"spec":{"containers":[{"name":"c","image":"a"}],"template":{"spec":{"containers":[{"image":"t"}]}}}}"#,
                "null",
            ),
        ] {
            bodies.push(wrap(object, old));
        }
        // Deep nesting inside the object.
        let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
        bodies.push(wrap(
            &format!(r#"{{"x":{deep},"spec":{{"containers":[{{"image":"a"}}]}}}}"#),
            "null",
        ));
        for body in &bodies {
            let one = outcome(decode_review, body);
            let two = outcome(decode_review_in_two_passes, body);
            assert_eq!(one, two, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn reviews_of_the_wrong_type_are_refused() {
        for (body, want) in [
            (r#"{"apiVersion":"v1","kind":"Pod"}"#, "got v1 Pod"),
            (
                r#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{}}"#,
                "got admission.k8s.io/v2",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "without a request",
            ),
            (r#"[1,2]"#, "not an AdmissionReview"),
        ] {
            let e = decode_review(body.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn responses_echo_the_uid_and_version() {
        let d = AdmissionDecision {
            allowed: false,
            action: crate::engine::Action::Deny,
            message: Some("no".into()),
            warnings: vec!["w".into()],
        };
        let out: serde_json::Value =
            serde_json::from_slice(&encode_response("admission.k8s.io/v1beta1", "u-9", &d))
                .unwrap();
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(out["response"]["uid"], "u-9");
        assert_eq!(out["response"]["allowed"], false);
        assert_eq!(out["response"]["status"]["code"], 403);
        assert_eq!(out["response"]["status"]["message"], "no");
        assert_eq!(out["response"]["warnings"][0], "w");
    }
}
