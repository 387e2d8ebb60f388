//! Rule documents served by a portal, in either format, validated as a whole
//! before anything is applied.
//!
//! The `portcullis` format (JSON or YAML):
//!
//! ```yaml
//! revision: "2026-11-20.1"        # optional; shown on the RuleSource and policies
//! rules:
//! - name: deny-critical-prod      # a DNS label, unique in the document
//!   action: Deny                  # ...then any SecurityArtifactPolicy.spec field
//!   scope: [{matcherType: Namespace, values: ["prod-*"]}]
//!   conditions: {maxAllowedSeverities: {critical: 0}}
//! ```
//!
//! The `defender` format is the reference product's
//! `defender.microsoft.com/v1alpha3` `SecurityArtifactPolicy`, converted by
//! `portcullis_crds::defender`.

use std::collections::BTreeSet;

use portcullis_crds::RuleFormat;
use portcullis_crds::SecurityArtifactPolicySpec;
use portcullis_crds::defender::{dns_label, import_document};
use serde_json::Value;

/// One rule of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRule {
    /// The rule's name in the document (a DNS label).
    pub name: String,
    /// Its settings.
    pub spec: SecurityArtifactPolicySpec,
}

/// A validated document.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDocument {
    /// The document's own revision, if it states one.
    pub revision: Option<String>,
    /// The rules, in document order.
    pub rules: Vec<DocumentRule>,
}

/// Why a document was refused; nothing is applied then.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    /// Not JSON/YAML, or not the expected shape.
    #[error("not a valid rules document: {0}")]
    Shape(String),
    /// A rule is invalid.
    #[error("rule {name:?}: {message}")]
    Rule {
        /// The rule.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Two rules share a name.
    #[error("rule name {0:?} appears twice")]
    Duplicate(String),
}

/// Parses and validates a whole document.
pub fn parse(text: &str, format: RuleFormat) -> Result<RuleDocument, DocumentError> {
    let doc = match format {
        RuleFormat::Portcullis => parse_portcullis(text)?,
        RuleFormat::Defender => {
            let imported =
                import_document(text).map_err(|e| DocumentError::Shape(e.to_string()))?;
            RuleDocument {
                revision: imported.revision,
                rules: imported
                    .rules
                    .into_iter()
                    .map(|r| DocumentRule {
                        name: r.name,
                        spec: r.spec,
                    })
                    .collect(),
            }
        }
    };
    let mut names = BTreeSet::new();
    for rule in &doc.rules {
        if dns_label(&rule.name) != rule.name {
            return Err(DocumentError::Rule {
                name: rule.name.clone(),
                message: "names must be DNS labels (lower-case letters, digits, '-')".into(),
            });
        }
        if !names.insert(rule.name.clone()) {
            return Err(DocumentError::Duplicate(rule.name.clone()));
        }
        rule.spec.validate().map_err(|e| DocumentError::Rule {
            name: rule.name.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(doc)
}

fn parse_portcullis(text: &str) -> Result<RuleDocument, DocumentError> {
    // YAML is a superset of JSON; one parser reads both.
    let value: Value =
        serde_saphyr::from_str(text).map_err(|e| DocumentError::Shape(e.to_string()))?;
    let Value::Object(mut top) = value else {
        return Err(DocumentError::Shape(
            "expected a mapping with `rules`".into(),
        ));
    };
    let revision = match top.remove("revision") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(DocumentError::Shape(format!(
                "revision must be a string, got {other}"
            )));
        }
    };
    let Some(Value::Array(rules)) = top.remove("rules") else {
        return Err(DocumentError::Shape("`rules` must be a list".into()));
    };
    if let Some(key) = top.keys().next() {
        return Err(DocumentError::Shape(format!(
            "unknown top-level field {key:?}"
        )));
    }
    let mut out = Vec::with_capacity(rules.len());
    for (i, rule) in rules.into_iter().enumerate() {
        let Value::Object(mut fields) = rule else {
            return Err(DocumentError::Shape(format!(
                "rule {} is not a mapping",
                i + 1
            )));
        };
        let name = match fields.remove("name") {
            Some(Value::String(n)) => n,
            _ => return Err(DocumentError::Shape(format!("rule {} has no name", i + 1))),
        };
        let spec: SecurityArtifactPolicySpec = serde_json::from_value(Value::Object(fields))
            .map_err(|e| DocumentError::Rule {
                name: name.clone(),
                message: e.to_string(),
            })?;
        out.push(DocumentRule { name, spec });
    }
    Ok(RuleDocument {
        revision,
        rules: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_example() {
        let doc = parse(
            "revision: r1\nrules:\n- name: deny-critical-prod\n  action: Deny\n  scope: [{matcherType: Namespace, values: [\"prod-*\"]}]\n  conditions: {maxAllowedSeverities: {critical: 0}}\n",
            RuleFormat::Portcullis,
        )
        .unwrap();
        assert_eq!(doc.revision.as_deref(), Some("r1"));
        assert_eq!(doc.rules.len(), 1);
        assert_eq!(doc.rules[0].name, "deny-critical-prod");
    }

    #[test]
    fn the_example_in_config_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/rule-documents/portcullis-example.yaml"
        );
        let doc = parse(
            &std::fs::read_to_string(path).unwrap(),
            RuleFormat::Portcullis,
        )
        .unwrap();
        assert_eq!(
            doc.rules
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["deny-critical-prod", "audit-high"]
        );
    }

    #[test]
    fn refuses_whole_documents_for_one_bad_rule() {
        let bad = [
            (
                "rules: [{name: a, action: Deny, conditions: {}}]",
                "rule \"a\"",
            ),
            (
                "rules: [{name: Not_A_Label, action: Deny, conditions: {maxAllowedSeverities: {high: 0}}}]",
                "DNS labels",
            ),
            (
                "rules: [{name: a, action: Deny, conditions: {maxAllowedSeverities: {high: 0}}}, {name: a, action: Audit, conditions: {maxAllowedSeverities: {high: 0}}}]",
                "twice",
            ),
            (
                "{\"rules\": [{\"name\": \"a\", \"action\": \"Deny\"",
                "not a valid",
            ),
            ("rules: 3", "must be a list"),
            ("revision: 1\nrules: []\nextra: true", "unknown top-level"),
            (
                "rules: [{name: a, action: Maybe, conditions: {}}]",
                "rule \"a\"",
            ),
        ];
        for (text, expected) in bad {
            let err = parse(text, RuleFormat::Portcullis).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
