//! OpenVEX documents: statements that a vulnerability does or does not affect
//! a product. Parsed so they can be recognised and reported on; they carry no
//! findings of their own.

use serde::Deserialize;

use super::{FindingsError, Limits, from_slice, null_as_default};

/// Status of a VEX statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VexStatus {
    /// Not affected.
    NotAffected,
    /// Affected.
    Affected,
    /// Fixed.
    Fixed,
    /// Under investigation.
    UnderInvestigation,
}

/// One VEX statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VexStatement {
    /// Vulnerability name (CVE ID).
    pub vulnerability: String,
    /// The status.
    pub status: VexStatus,
    /// Product identifiers (purls or image references).
    pub products: Vec<String>,
}

#[derive(Deserialize)]
struct Document {
    #[serde(rename = "@context")]
    context: String,
    #[serde(default, deserialize_with = "null_as_default")]
    statements: Vec<Statement>,
}

#[derive(Deserialize)]
struct Statement {
    vulnerability: Vulnerability,
    status: VexStatus,
    #[serde(default, deserialize_with = "null_as_default")]
    products: Vec<Product>,
}

/// OpenVEX 0.2 names vulnerabilities as objects; 0.0.x as plain strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Vulnerability {
    Named { name: String },
    Plain(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Product {
    Identified {
        #[serde(rename = "@id")]
        id: String,
    },
    Plain(String),
}

/// Parses an OpenVEX document.
pub fn parse_openvex(bytes: &[u8]) -> Result<Vec<VexStatement>, FindingsError> {
    let limits = Limits::default();
    if bytes.len() > limits.max_bytes {
        return Err(FindingsError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let doc: Document = from_slice(bytes, "OpenVEX")?;
    if !doc.context.contains("openvex") {
        return Err(FindingsError::Shape {
            format: "OpenVEX",
            message: format!("@context {:?} is not OpenVEX", doc.context),
        });
    }
    Ok(doc
        .statements
        .into_iter()
        .map(|s| VexStatement {
            vulnerability: match s.vulnerability {
                Vulnerability::Named { name } | Vulnerability::Plain(name) => name,
            },
            status: s.status,
            products: s
                .products
                .into_iter()
                .map(|p| match p {
                    Product::Identified { id } | Product::Plain(id) => id,
                })
                .collect(),
        })
        .collect())
}
