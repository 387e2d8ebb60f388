//! Portcullis operator: syncs RuleSources (portal documents) into
//! SecurityArtifactPolicies. Certificates, federated identity and leader
//! election join in later issues' work (see the README's status table).

pub mod certificates;
pub mod default_rule;
pub mod document;
pub mod identity;
pub mod leadership;
pub mod metrics;
pub mod portal;
pub mod rule_source;
