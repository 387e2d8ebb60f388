//! `portcullis-attach`: attaches a vulnerability report to an image as an OCI
//! referrer (an artifact manifest whose `subject` is the image), the way CI
//! pipelines publish scan results for the webhook to find. On registries
//! without the referrers API it also maintains the `sha256-<hex>` fallback tag.
//!
//!     portcullis-attach 127.0.0.1:5000/shop/web:1.0 trivy.json --insecure

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Attach a vulnerability report (or an SBOM) to an image as an OCI referrer.
///
/// Pushes the report as an artifact whose `subject` is the image's manifest,
/// where portcullis-webhook looks for findings; on registries without the
/// referrers API it also updates the `sha256-<hex>` fallback tag. Prints the
/// artifact's digest. What a CI pipeline runs after scanning an image.
#[derive(Debug, Parser)]
#[command(name = "portcullis-attach", version)]
struct Args {
    /// The image (tag or digest) the report is about.
    image: String,
    /// The file: a report (Trivy/Grype JSON, SARIF, CycloneDX, in-toto), or a
    /// signed DSSE envelope or Sigstore bundle, attached as-is.
    report: PathBuf,
    /// Artifact type of the referrer (default: the DSSE or Sigstore bundle
    /// type for signed files, else a Portcullis findings type).
    #[arg(long)]
    artifact_type: Option<String>,
    /// Media type of the layer (default: as the artifact type for signed
    /// files, else `application/json`).
    #[arg(long)]
    media_type: Option<String>,
    /// `org.opencontainers.image.created` of the artifact (RFC 3339; default now).
    #[arg(long)]
    created: Option<String>,
    /// Treat the image's registry as plain HTTP.
    #[arg(long)]
    insecure: bool,
    /// Username (with --password or PORTCULLIS_PASSWORD).
    #[arg(long, env = "PORTCULLIS_USERNAME")]
    username: Option<String>,
    /// Password.
    #[arg(long, env = "PORTCULLIS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const ACCEPT: &[&str] = &[
    OCI_INDEX,
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

fn main() -> ExitCode {
    let args = Args::parse();
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("portcullis-attach: crypto provider already installed");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis-attach: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis-attach: {e}");
            ExitCode::FAILURE
        }
    }
}

/// (artifact type, layer media type) for a file: signed shapes keep their
/// own types so verifiers recognise them; anything else is findings JSON.
fn signed_types(file: &[u8]) -> (&'static str, &'static str) {
    const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
    const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let v: Value = serde_json::from_slice(file).unwrap_or(Value::Null);
    if v.get("payloadType").is_some() && v.get("signatures").is_some() {
        (DSSE, DSSE)
    } else if v
        .get("mediaType")
        .and_then(Value::as_str)
        .is_some_and(|m| m.starts_with("application/vnd.dev.sigstore.bundle"))
    {
        (BUNDLE, BUNDLE)
    } else {
        (
            "application/vnd.portcullis.findings.v1+json",
            "application/json",
        )
    }
}

fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

async fn run(args: Args) -> Result<String, String> {
    let image: Reference = args
        .image
        .parse()
        .map_err(|e| format!("{}: {e}", args.image))?;
    let insecure: Vec<String> = if args.insecure {
        vec![image.registry().to_owned()]
    } else {
        Vec::new()
    };
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure.clone()),
        ..ClientConfig::default()
    });
    let auth = match (&args.username, &args.password) {
        (Some(u), Some(p)) => RegistryAuth::Basic(u.clone(), p.clone()),
        _ => RegistryAuth::Anonymous,
    };
    let report =
        std::fs::read(&args.report).map_err(|e| format!("{}: {e}", args.report.display()))?;
    let (default_artifact, default_media) = signed_types(&report);
    let artifact_type = args
        .artifact_type
        .clone()
        .unwrap_or_else(|| default_artifact.to_owned());
    let media_type = args
        .media_type
        .clone()
        .unwrap_or_else(|| default_media.to_owned());

    // The subject: the manifest the tag or digest names, by digest.
    let (subject_bytes, subject_digest) = client
        .pull_manifest_raw(&image, &auth, ACCEPT)
        .await
        .map_err(|e| format!("reading {}: {e}", args.image))?;
    let subject_type = serde_json::from_slice::<Value>(&subject_bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
        .unwrap_or_else(|| OCI_MANIFEST.to_owned());
    let repo = |digest: &str| {
        Reference::with_digest(
            image.registry().to_owned(),
            image.repository().to_owned(),
            digest.to_owned(),
        )
    };

    let empty = b"{}".to_vec();
    let empty_digest = sha256(&empty);
    let report_digest = sha256(&report);
    client
        .push_blob(&repo(&empty_digest), empty.clone(), &empty_digest)
        .await
        .map_err(|e| format!("pushing the config blob: {e}"))?;
    client
        .push_blob(&repo(&report_digest), report.clone(), &report_digest)
        .await
        .map_err(|e| format!("pushing the report: {e}"))?;
    let created = args
        .created
        .clone()
        .unwrap_or_else(|| jiff::Timestamp::now().to_string());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY, "digest": empty_digest, "size": empty.len()},
        "layers": [{"mediaType": media_type, "digest": report_digest, "size": report.len()}],
        "subject": {"mediaType": subject_type, "digest": subject_digest, "size": subject_bytes.len()},
        "annotations": {"org.opencontainers.image.created": created},
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let manifest_digest = sha256(&manifest_bytes);
    let content_type =
        |t: &str| reqwest::header::HeaderValue::from_str(t).map_err(|e| e.to_string());
    client
        .push_manifest_raw(
            &repo(&manifest_digest),
            manifest_bytes.clone(),
            content_type(OCI_MANIFEST)?,
        )
        .await
        .map_err(|e| format!("pushing the artifact manifest: {e}"))?;

    // Registries with the referrers API index the artifact themselves; for the
    // others, add it to the fallback tag's index (read-modify-write).
    let scheme = if insecure.iter().any(|h| h == image.registry()) {
        "http"
    } else {
        "https"
    };
    let url = format!(
        "{scheme}://{}/v2/{}/referrers/{subject_digest}",
        image.registry(),
        image.repository()
    );
    let mut req = reqwest::Client::new().get(&url).header("accept", OCI_INDEX);
    if let (Some(u), Some(p)) = (&args.username, &args.password) {
        req = req.basic_auth(u, Some(p));
    }
    let has_api = req
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    if !has_api {
        let tag = subject_digest.replacen(':', "-", 1);
        let tag_ref = Reference::with_tag(
            image.registry().to_owned(),
            image.repository().to_owned(),
            tag,
        );
        let mut index = match client
            .pull_manifest_raw(&tag_ref, &auth, &[OCI_INDEX])
            .await
        {
            Ok((bytes, _)) => serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| format!("fallback index: {e}"))?,
            Err(_) => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
        };
        let entry = json!({
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "artifactType": artifact_type,
            "annotations": {"org.opencontainers.image.created": created},
        });
        match index["manifests"].as_array_mut() {
            Some(list) => list.push(entry),
            None => return Err("fallback index has no manifests list".into()),
        }
        let body = serde_json::to_vec(&index).map_err(|e| e.to_string())?;
        client
            .push_manifest_raw(&tag_ref, body, content_type(OCI_INDEX)?)
            .await
            .map_err(|e| format!("updating the fallback tag: {e}"))?;
    }
    Ok(manifest_digest)
}
