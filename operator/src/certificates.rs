//! The webhook's serving certificate (DESIGN §5): a CA and a serving
//! certificate for the webhook Service's DNS names in a `kubernetes.io/tls`
//! Secret, the CA in the ValidatingWebhookConfiguration's `caBundle`, and
//! rotation well before expiry. Rotation makes a new CA and puts it into
//! `caBundle` next to the old one *before* the Secret changes, so the API
//! server trusts the webhook whichever certificate it is serving; the old CA
//! leaves the bundle when it expires.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::metrics::Metrics;
use crate::rule_source::MANAGER;

/// Where the certificate lives and how long it lasts.
#[derive(Debug, Clone)]
pub struct CertSettings {
    /// Namespace of the webhook Service and Secret.
    pub namespace: String,
    /// The Secret (`kubernetes.io/tls`, plus `ca.crt`).
    pub secret: String,
    /// The webhook Service name (the certificate's DNS names derive from it).
    pub service: String,
    /// The ValidatingWebhookConfiguration whose `caBundle` is managed.
    pub webhook_configuration: String,
    /// Lifetime of a new CA and serving certificate.
    pub validity: Duration,
    /// Rotate when the serving certificate expires within this.
    pub renew_before: Duration,
}

/// What a check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertOutcome {
    /// No Secret or an unreadable one: a new CA and certificate were issued.
    Created,
    /// Inside the renewal window: rotated with both CAs trusted.
    Rotated,
    /// The bundle lost an expired CA.
    Pruned,
    /// Nothing to do.
    Unchanged,
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The ValidatingWebhookConfiguration is missing.
    #[error("ValidatingWebhookConfiguration {0} not found (install the webhook first)")]
    NoWebhookConfiguration(String),
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// The API server refused a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

struct Issued {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn issue(settings: &CertSettings, now: time::OffsetDateTime) -> Result<Issued, rcgen::Error> {
    let validity =
        time::Duration::seconds(i64::try_from(settings.validity.as_secs()).unwrap_or(i64::MAX / 2));
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("portcullis-webhook-ca {}", now.unix_timestamp()),
    );
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    ca_params.not_before = now - time::Duration::hours(1);
    ca_params.not_after = now + validity;
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let (svc, ns) = (&settings.service, &settings.namespace);
    let names = vec![
        svc.clone(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ];
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{svc}.{ns}.svc"));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + validity;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// `(not_after, pem)` of every certificate in a PEM bundle; unreadable ones are skipped.
fn certificates(pem: &str) -> Vec<(time::OffsetDateTime, String)> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .filter_map(|p| {
            let cert = p.parse_x509().ok()?;
            let not_after = cert.validity().not_after.to_datetime();
            let body = STANDARD.encode(&p.contents);
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .filter_map(|c| std::str::from_utf8(c).ok())
                .collect();
            Some((
                not_after,
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    lines.join("\n")
                ),
            ))
        })
        .collect()
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// One check; run it periodically. `now` is an argument for tests.
pub async fn reconcile_certificates(
    client: &kube::Client,
    settings: &CertSettings,
    metrics: &Metrics,
    now: time::OffsetDateTime,
) -> Result<CertOutcome, CertError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let current = secrets.get_opt(&settings.secret).await?;
    let serving = current
        .as_ref()
        .and_then(|s| secret_text(s, "tls.crt"))
        .and_then(|pem| certificates(&pem).into_iter().next());
    let bundle: Vec<(time::OffsetDateTime, String)> = current
        .as_ref()
        .and_then(|s| secret_text(s, "ca.crt"))
        .map(|pem| certificates(&pem))
        .unwrap_or_default()
        .into_iter()
        .filter(|(not_after, _)| *not_after > now)
        .collect();
    let renew_before = time::Duration::seconds(
        i64::try_from(settings.renew_before.as_secs()).unwrap_or(i64::MAX / 2),
    );

    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let vwc = vwcs
        .get_opt(&settings.webhook_configuration)
        .await?
        .ok_or_else(|| CertError::NoWebhookConfiguration(settings.webhook_configuration.clone()))?;

    let (outcome, issued) = match &serving {
        Some((not_after, _)) if *not_after - now > renew_before && !bundle.is_empty() => {
            (CertOutcome::Unchanged, None)
        }
        Some(_) if !bundle.is_empty() => (CertOutcome::Rotated, Some(issue(settings, now)?)),
        _ => (CertOutcome::Created, Some(issue(settings, now)?)),
    };
    // New CA first, then the CAs still valid (the one the webhook serves now).
    let mut new_bundle: Vec<String> = issued.iter().map(|i| i.ca_pem.clone()).collect();
    new_bundle.extend(bundle.iter().map(|(_, pem)| pem.clone()));
    let bundle_pem = new_bundle.concat();
    let bundle_b64 = STANDARD.encode(&bundle_pem);

    let stale_webhooks: Vec<usize> = vwc
        .webhooks
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, w)| {
            w.client_config
                .ca_bundle
                .as_ref()
                .map(|b| STANDARD.encode(&b.0))
                != Some(bundle_b64.clone())
        })
        .map(|(i, _)| i)
        .collect();
    let secret_bundle_changed = current
        .as_ref()
        .and_then(|s| secret_text(s, "ca.crt"))
        .as_deref()
        != Some(bundle_pem.as_str());
    let outcome = if outcome == CertOutcome::Unchanged
        && (secret_bundle_changed || !stale_webhooks.is_empty())
    {
        CertOutcome::Pruned
    } else {
        outcome
    };
    // Trust first: the API server must accept the new certificate before it is served.
    if !stale_webhooks.is_empty() {
        let ops: Vec<serde_json::Value> = stale_webhooks
            .iter()
            .map(|i| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle_b64}))
            .collect();
        let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
            .map_err(|e| CertError::Kube(kube::Error::SerdeError(e)))?;
        vwcs.patch(
            &settings.webhook_configuration,
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await?;
    }
    if issued.is_some() || secret_bundle_changed {
        let (cert, key) = match &issued {
            Some(i) => (i.cert_pem.clone(), i.key_pem.clone()),
            None => (
                current
                    .as_ref()
                    .and_then(|s| secret_text(s, "tls.crt"))
                    .unwrap_or_default(),
                current
                    .as_ref()
                    .and_then(|s| secret_text(s, "tls.key"))
                    .unwrap_or_default(),
            ),
        };
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": settings.secret, "namespace": settings.namespace,
                         "labels": {"app.kubernetes.io/managed-by": MANAGER}},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": STANDARD.encode(cert), "tls.key": STANDARD.encode(key), "ca.crt": bundle_b64},
        });
        secrets
            .patch(
                &settings.secret,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(secret),
            )
            .await?;
    }
    let expiry = match (&issued, &serving) {
        (Some(_), _) => {
            now + time::Duration::seconds(i64::try_from(settings.validity.as_secs()).unwrap_or(0))
        }
        (None, Some((not_after, _))) => *not_after,
        (None, None) => now,
    };
    metrics.certificate_expiry((expiry - now).whole_seconds());
    Ok(outcome)
}
