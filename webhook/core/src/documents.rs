//! Policy files: YAML or JSON documents read strictly, the way
//! `kubectl apply --validate=strict` and the API server would read them, so
//! a typo is an error with its place instead of a rule that silently does
//! less (`critcal: 0`, `ignoredCve:`, `exemption:` all loaded without a word
//! before).
//!
//! - Every `portcullis.dev/v1alpha1` kind is known (from the generated CRDs).
//!   Its documents are checked against the CRD's OpenAPI schema: unknown
//!   fields, wrong types, enum values and integer ranges are errors naming
//!   the document and the field path.
//! - A `portcullis.dev` object of another version or kind is an error.
//! - Core `v1` Secrets and ServiceAccounts are returned for registry access.
//! - Anything else is skipped, and the caller is told, so a directory of mixed
//!   manifests still loads.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use portcullis_crds::{GROUP, RegistryAccess, SecurityArtifactPolicy, TrustedProducer};
use serde_json::Value;

/// Documents accepted in one file. The YAML parser's default (1,024) stopped
/// start-up on large generated files; this is far above any hand-kept file
/// and still bounds a document-separator storm.
pub const MAX_DOCUMENTS: usize = 65_536;

/// The version of every Portcullis kind.
pub const VERSION: &str = "v1alpha1";

/// One object read from a file.
#[derive(Debug, Clone)]
pub enum Document {
    /// A rule.
    Policy(Box<SecurityArtifactPolicy>),
    /// Registry credentials settings.
    Access(Box<RegistryAccess>),
    /// Who may vouch for findings.
    Producer(Box<TrustedProducer>),
    /// A Secret (for `BasicSecret` and `PullSecrets` outside a cluster).
    Secret(Box<Secret>),
    /// A ServiceAccount (its `imagePullSecrets`).
    ServiceAccount(Box<ServiceAccount>),
    /// A known Portcullis kind this reader does not use (e.g. `RuleSource`),
    /// already checked against its schema.
    Unused {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// An object of another API group, not read.
    Foreign {
        /// `apiVersion`.
        api_version: String,
        /// `kind`.
        kind: String,
    },
}

/// Where in a file something is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file (as the caller names it).
    pub file: String,
    /// 1-based document number.
    pub document: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (document {})", self.file, self.document)
    }
}

/// A document that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not YAML or JSON, or over the document limit.
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// Not an object with `apiVersion` and `kind`.
    #[error("{place}: {message}")]
    Shape {
        /// Where.
        place: Place,
        /// What is wrong.
        message: String,
    },
    /// A `portcullis.dev` object of an unknown version or kind.
    #[error("{place}: {api_version} {kind} is not a Portcullis kind (known: {known})")]
    UnknownKind {
        /// Where.
        place: Place,
        /// Its `apiVersion`.
        api_version: String,
        /// Its `kind`.
        kind: String,
        /// The kinds there are.
        known: String,
    },
    /// A field the schema does not allow.
    #[error("{place}: {object}: {path}: {message}")]
    Field {
        /// Where.
        place: Place,
        /// `Kind name`.
        object: String,
        /// JSON path of the field, e.g. `spec.conditions.maxAllowedSeverities.critcal`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads every document of a YAML (or JSON) text.
pub fn parse_documents(text: &str, file: &str) -> Result<Vec<Document>, DocumentError> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: MAX_DOCUMENTS,
        },
    };
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
            DocumentError::Syntax {
                file: file.to_owned(),
                message: e.to_string(),
            }
        })?;
    let mut out = Vec::with_capacity(docs.len());
    for (i, doc) in docs.into_iter().enumerate() {
        let place = Place {
            file: file.to_owned(),
            document: i + 1,
        };
        if doc.is_null() {
            continue;
        }
        out.push(read_document(doc, place)?);
    }
    Ok(out)
}

fn read_document(doc: Value, place: Place) -> Result<Document, DocumentError> {
    let shape = |message: &str| DocumentError::Shape {
        place: place.clone(),
        message: message.to_owned(),
    };
    let Value::Object(map) = &doc else {
        return Err(shape(
            "a document must be an object with apiVersion and kind",
        ));
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
    let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
        return Err(shape("apiVersion and kind are required"));
    };
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    if group == GROUP {
        let schemas = &*SCHEMAS;
        let Some(schema) = schemas
            .get(kind.as_str())
            .filter(|_| api_version == format!("{GROUP}/{VERSION}"))
        else {
            return Err(DocumentError::UnknownKind {
                place,
                api_version,
                kind,
                known: schemas.keys().copied().collect::<Vec<_>>().join(", "),
            });
        };
        let field = |path: String, message: String| DocumentError::Field {
            place: place.clone(),
            object: format!("{kind} {name}"),
            path,
            message,
        };
        if name.is_empty() {
            return Err(field("metadata.name".into(), "required".into()));
        }
        check_object(&doc, schema, &kind).map_err(|(path, message)| field(path, message))?;
        let typed = |e: serde_json::Error| field(String::new(), e.to_string());
        return Ok(match kind.as_str() {
            "SecurityArtifactPolicy" => {
                Document::Policy(Box::new(serde_json::from_value(doc).map_err(typed)?))
            }
            "RegistryAccess" => {
                Document::Access(Box::new(serde_json::from_value(doc).map_err(typed)?))
            }
            "TrustedProducer" => {
                Document::Producer(Box::new(serde_json::from_value(doc).map_err(typed)?))
            }
            _ => Document::Unused { kind, name },
        });
    }
    let core = |e: serde_json::Error| DocumentError::Shape {
        place: place.clone(),
        message: format!("{kind} {name}: {e}"),
    };
    Ok(match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => Document::Secret(Box::new(serde_json::from_value(doc).map_err(core)?)),
        ("v1", "ServiceAccount") => {
            Document::ServiceAccount(Box::new(serde_json::from_value(doc).map_err(core)?))
        }
        _ => Document::Foreign { api_version, kind },
    })
}

/// The OpenAPI schema of every Portcullis kind, by kind (built once).
static SCHEMAS: LazyLock<BTreeMap<&'static str, JSONSchemaProps>> = LazyLock::new(|| {
    portcullis_crds::all_crds()
        .into_iter()
        .filter_map(|(_, crd)| {
            let kind: &'static str = match crd.spec.names.kind.as_str() {
                "SecurityArtifactPolicy" => "SecurityArtifactPolicy",
                "RegistryAccess" => "RegistryAccess",
                "RuleSource" => "RuleSource",
                "TrustedProducer" => "TrustedProducer",
                _ => return None,
            };
            let schema = crd
                .spec
                .versions
                .into_iter()
                .find(|v| v.name == VERSION)?
                .schema?
                .open_api_v3_schema?;
            Some((kind, schema))
        })
        .collect()
});

/// Fields `metadata` may carry in a file (what `kubectl get -o yaml` writes).
const METADATA_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "generateName",
    "managedFields",
    "ownerReferences",
    "selfLink",
];

type Problem = (String, String);

fn check_object(doc: &Value, schema: &JSONSchemaProps, kind: &str) -> Result<(), Problem> {
    let Value::Object(map) = doc else {
        return Err((String::new(), "not an object".into()));
    };
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                let Value::Object(meta) = value else {
                    return Err(("metadata".into(), "must be an object".into()));
                };
                if let Some(unknown) = meta.keys().find(|k| !METADATA_FIELDS.contains(&k.as_str()))
                {
                    return Err((format!("metadata.{unknown}"), "unknown field".into()));
                }
            }
            other => {
                let Some(sub) = schema.properties.as_ref().and_then(|p| p.get(other)) else {
                    return Err((other.to_owned(), format!("unknown field of {kind}")));
                };
                check(value, sub, other)?;
            }
        }
    }
    Ok(())
}

/// Checks `value` against `schema` at `path`, as the API server's structural
/// schema validation and strict field validation do.
fn check(value: &Value, schema: &JSONSchemaProps, path: &str) -> Result<(), Problem> {
    let fail = |message: String| Err((path.to_owned(), message));
    if value.is_null() {
        return if schema.nullable.unwrap_or(false) {
            Ok(())
        } else {
            fail("must not be null".into())
        };
    }
    if schema.x_kubernetes_int_or_string == Some(true) {
        return if value.is_string() || value.is_i64() || value.is_u64() {
            Ok(())
        } else {
            fail("must be an integer or a string".into())
        };
    }
    match schema.type_.as_deref() {
        Some("object") => {
            let Value::Object(map) = value else {
                return fail(format!("must be an object, not {}", kind_of(value)));
            };
            for (key, v) in map {
                let sub_path = format!("{path}.{key}");
                if let Some(sub) = schema.properties.as_ref().and_then(|p| p.get(key)) {
                    check(v, sub, &sub_path)?;
                } else if let Some(JSONSchemaPropsOrBool::Schema(sub)) =
                    &schema.additional_properties
                {
                    check(v, sub, &sub_path)?;
                } else if matches!(
                    schema.additional_properties,
                    Some(JSONSchemaPropsOrBool::Bool(true))
                ) || schema.x_kubernetes_preserve_unknown_fields == Some(true)
                {
                } else {
                    let known = schema
                        .properties
                        .as_ref()
                        .map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "))
                        .unwrap_or_default();
                    return Err((sub_path, format!("unknown field (known: {known})")));
                }
            }
            Ok(())
        }
        Some("array") => {
            let Value::Array(items) = value else {
                return fail(format!("must be a list, not {}", kind_of(value)));
            };
            if let Some(JSONSchemaPropsOrArray::Schema(item)) = &schema.items {
                for (i, v) in items.iter().enumerate() {
                    check(v, item, &format!("{path}[{i}]"))?;
                }
            }
            Ok(())
        }
        Some("string") => {
            let Value::String(s) = value else {
                return fail(format!("must be a string, not {}", kind_of(value)));
            };
            if let Some(allowed) = &schema.enum_
                && !allowed.iter().any(|a| a.0 == *value)
            {
                let names: Vec<String> = allowed
                    .iter()
                    .filter_map(|a| a.0.as_str().map(str::to_owned))
                    .collect();
                return fail(format!("{s:?} is not one of {}", names.join(", ")));
            }
            Ok(())
        }
        Some("integer") => {
            let Some(n) = value
                .as_i64()
                .map(i128::from)
                .or(value.as_u64().map(i128::from))
            else {
                return fail(format!("must be an integer, not {}", kind_of(value)));
            };
            let (low, high): (i128, i128) = match schema.format.as_deref() {
                Some("uint32") => (0, i128::from(u32::MAX)),
                Some("int32") => (i128::from(i32::MIN), i128::from(i32::MAX)),
                Some("uint64") => (0, i128::from(u64::MAX)),
                _ => (i128::from(i64::MIN), i128::from(i64::MAX)),
            };
            let low = schema.minimum.map_or(low, |m| low.max(m.ceil() as i128));
            if n < low || n > high {
                return fail(format!("{n} is outside {low}..={high}"));
            }
            Ok(())
        }
        Some("number") if !value.is_number() => {
            fail(format!("must be a number, not {}", kind_of(value)))
        }
        Some("boolean") if !value.is_boolean() => {
            fail(format!("must be true or false, not {}", kind_of(value)))
        }
        _ => Ok(()),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(spec: &str) -> String {
        format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityArtifactPolicy\nmetadata: {{name: r}}\nspec:\n{spec}"
        )
    }

    fn error(text: &str) -> String {
        match parse_documents(text, "rules.yaml") {
            Ok(d) => panic!("should fail: {d:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn typos_are_errors_naming_the_file_document_and_field() {
        let e = error(&policy(
            "  action: Deny\n  conditions: {maxAllowedSeverities: {critcal: 0}}",
        ));
        assert!(
            e.starts_with("rules.yaml (document 1): SecurityArtifactPolicy r: spec.conditions.maxAllowedSeverities.critcal: unknown field"),
            "{e}"
        );
        let e = error(&policy(
            "  action: Deny\n  conditions: {forbiddenCves: [X]}\n  ignoredCve: [{id: X}]",
        ));
        assert!(e.contains("spec.ignoredCve: unknown field"), "{e}");
        let e = error(&policy(
            "  action: Deny\n  conditions: {forbiddenCves: [X]}\n  exemption: []",
        ));
        assert!(e.contains("spec.exemption: unknown field"), "{e}");
        let e = error(&format!("{}\nstatu: {{}}", policy("  action: Deny")));
        assert!(e.contains("statu: unknown field"), "{e}");
        let e = error(&policy(
            "  action: Deny\n  conditions: {maxAllowedSeverities: {critical: -1}}",
        ));
        assert!(
            e.contains(
                "spec.conditions.maxAllowedSeverities.critical: -1 is outside 0..=4294967295"
            ),
            "{e}"
        );
        let e = error(&policy("  action: Deny\n  priority: many"));
        assert!(
            e.contains("spec.priority: must be an integer, not a string"),
            "{e}"
        );
        let e = error(&policy("  action: Block"));
        assert!(
            e.contains("spec.action: \"Block\" is not one of Audit, Deny"),
            "{e}"
        );
        let e = error(&policy(
            "  action: Deny\n  scope: [{matcherType: Namespace, operator: Like, values: [a]}]",
        ));
        assert!(e.contains("spec.scope[0].operator"), "{e}");
        let e = error(
            "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityArtifactPolicy\nmetadata: {nam: r}\nspec: {action: Deny}",
        );
        assert!(
            e.contains("metadata.name: required") || e.contains("metadata.nam"),
            "{e}"
        );
    }

    #[test]
    fn portcullis_objects_of_unknown_versions_or_kinds_are_errors() {
        let e = error(
            "apiVersion: portcullis.dev/v1\nkind: SecurityArtifactPolicy\nmetadata: {name: r}\nspec: {action: Deny}",
        );
        assert!(
            e.contains("portcullis.dev/v1 SecurityArtifactPolicy is not a Portcullis kind"),
            "{e}"
        );
        let e = error(
            "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityArtifactPolicies\nmetadata: {name: r}\nspec: {action: Deny}",
        );
        assert!(
            e.contains("SecurityArtifactPolicies is not a Portcullis kind"),
            "{e}"
        );
        assert!(error("just text").contains("document 1"));
        assert!(error("kind: Foo").contains("apiVersion and kind are required"));
    }

    #[test]
    fn other_kinds_are_returned_for_the_caller_to_use_or_skip() {
        let docs = parse_documents(
            "apiVersion: portcullis.dev/v1alpha1\nkind: RuleSource\nmetadata: {name: portal}\nspec: {url: 'https://portal.example.com/rules', format: portcullis}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: team-a}\nstringData: {username: u, password: p}\n---\n",
            "mixed.yaml",
        )
        .unwrap();
        assert!(matches!(&docs[0], Document::Unused { kind, .. } if kind == "RuleSource"));
        assert!(matches!(&docs[1], Document::Foreign { kind, .. } if kind == "ConfigMap"));
        assert!(matches!(&docs[2], Document::Secret(_)));
        assert_eq!(docs.len(), 3);
    }

    #[test]
    fn thousands_of_documents_in_one_file_load() {
        let one = policy("  action: Audit\n  conditions: {maxAllowedSeverities: {high: 0}}");
        let text: String = (0..2000)
            .map(|i| one.replace("name: r", &format!("name: r{i}")))
            .collect::<Vec<_>>()
            .join("\n---\n");
        assert_eq!(parse_documents(&text, "big.yaml").unwrap().len(), 2000);
    }
}
