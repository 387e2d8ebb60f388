//! The local demo (README, first command): a real registry, sample images with
//! real scanner outputs attached as OCI referrers, the webhook binary over TLS
//! with the policies of `config/samples`, real admission requests built by
//! kubectl, and the decisions printed. Everything started is stopped at the end.
//!
//!     bash e2e/demo.sh
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::Value;
use support::{Registry, Webhook, fixture, kubectl, repo_root, sign};

struct Scenario {
    what: &'static str,
    kind: &'static str,
    name: &'static str,
    namespace: &'static str,
    image: String,
    expect: &'static str,
}

#[tokio::main]
async fn main() {
    println!("== starting a local registry (distribution 2.8)");
    let registry = Registry::distribution(None);
    let r = registry.addr.clone();
    let port = r.rsplit(':').next().unwrap().to_owned();
    let recent = jiff::Timestamp::now().to_string();

    println!("== pushing sample images with skopeo and attaching findings from testdata/");
    let push = |image: &str, platforms: &[&str]| registry.push_image(image, platforms, None);
    let attach_as = |image: &str, shown: &str, report: &str, created: &str| {
        registry.attach(image, &fixture(report), created, None);
        println!("   {shown:<28} <- {report}");
    };
    let attach =
        |image: &str, report: &str, created: &str| attach_as(image, image, report, created);
    push("shop/cart:1.0", &[]);
    attach(
        "shop/cart:1.0",
        "trivy-json/trivy-sl-micro-rancher5.4-novulns.json.golden",
        &recent,
    );
    push("shop/ruby-api:3.0", &[]);
    attach(
        "shop/ruby-api:3.0",
        "grype-json/grype-chainguard-ruby-test.json",
        &recent,
    );
    push("shop/payments:4.2", &[]);
    attach(
        "shop/payments:4.2",
        "trivy-json/trivy-debian-buster.json.golden",
        &recent,
    );
    push("shop/batch:0.9", &[]);
    println!("   {:<28} <- (nothing attached)", "shop/batch:0.9");
    push("shop/legacy:7", &[]);
    attach(
        "shop/legacy:7",
        "trivy-json/trivy-alpine-310.json.golden",
        "2025-01-15T00:00:00Z",
    );
    let (_, platforms) = push("shop/edge:2.0", &["linux/amd64", "linux/arm64"]);
    attach_as(
        &format!("shop/edge@{}", platforms[0].1),
        "shop/edge:2.0 linux/amd64",
        "trivy-json/trivy-sl-micro-rancher5.4-novulns.json.golden",
        &recent,
    );
    attach_as(
        &format!("shop/edge@{}", platforms[1].1),
        "shop/edge:2.0 linux/arm64",
        "trivy-json/trivy-debian-buster.json.golden",
        &recent,
    );
    push("infra/metallb:0.16", &[]);
    attach(
        "infra/metallb:0.16",
        "cosign-vuln-attestation/sluice-obs-metallb-configmaptocrs.trivy_vuln.intoto.json",
        &recent,
    );

    // Signed evidence: the demo's CI key (made now) signs an in-toto
    // statement about the image it pushed; someone who can push attaches a
    // newer-looking clean report.
    let keys = tempfile::tempdir().unwrap();
    sign(&["keygen", keys.path().to_str().unwrap()]);
    let key = keys.path().join("key.pem").display().to_string();
    let signed_statement = |digest: &str, predicate: &std::path::Path, name: &str| {
        let out = keys.path().join(name);
        sign(&[
            "dsse",
            &key,
            digest,
            predicate.to_str().unwrap(),
            "https://cosign.sigstore.dev/attestation/vuln/v1",
            out.to_str().unwrap(),
            "--scan-time",
            &recent,
        ]);
        out
    };
    let clean_predicate = keys.path().join("clean-predicate.json");
    std::fs::write(
        &clean_predicate,
        r#"{"invocation":{"parameters":null,"uri":"","event_id":"","builder.id":""},"scanner":{"uri":"pkg:github/aquasecurity/trivy@0.50.0","version":"0.50.0","result":{"SchemaVersion":2,"Results":[]}},"metadata":{"scanStartedOn":"2026-01-01T00:00:00Z","scanFinishedOn":"2026-01-01T00:00:00Z"}}"#,
    )
    .unwrap();
    let (clean_digest, _) = push("shop/checkout:5.1", &[]);
    let env = signed_statement(&clean_digest, &clean_predicate, "clean.dsse.json");
    registry.attach("shop/checkout:5.1", &env, &recent, None);
    println!(
        "   {:<28} <- a clean report, signed by the CI key (DSSE)",
        "shop/checkout:5.1"
    );
    let (critical_digest, _) = push("shop/checkout:5.0", &[]);
    let env = signed_statement(
        &critical_digest,
        &fixture("cosign-vuln-attestation/trivy-docs-cosign-vuln-predicate-alpine-3.10.json"),
        "critical.dsse.json",
    );
    registry.attach("shop/checkout:5.0", &env, &recent, None);
    registry.attach(
        "shop/checkout:5.0",
        &fixture("trivy-json/trivy-sl-micro-rancher5.4-novulns.json.golden"),
        "2099-01-01T00:00:00Z",
        None,
    );
    println!(
        "   {:<28} <- a Critical report signed by the CI key, plus an unsigned clean one dated 2099",
        "shop/checkout:5.0"
    );

    // config/samples, with the local registry standing in for your registry
    // in the allowed-registries rule, and the demo's key as the CI scanner's.
    let samples = repo_root().join("config/samples");
    let mut files: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(&samples).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if name == "trustedproducer-ci-scanner-key.yaml" {
            let public = std::fs::read_to_string(keys.path().join("key.pub")).unwrap();
            text = format!(
                "apiVersion: portcullis.dev/v1alpha1\nkind: TrustedProducer\nmetadata: {{name: ci-scanner}}\nspec:\n  publicKeys:\n  - pem: |\n        {}\n",
                public.trim().replace('\n', "\n        ")
            );
        }
        if name == "allowed-registries.yaml" {
            text = text.replace(
                r#""registry.example.com"]"#,
                &format!(r#""registry.example.com", "{r}"]"#),
            );
        }
        files.push((name, text));
    }
    let policies: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    println!("== starting portcullis-webhook (TLS) with the policies of config/samples");
    println!(
        "   (allowed-registries also allows {r}, the demo's registry; ci-scanner trusts the demo's key)"
    );
    let webhook = Webhook::start_with(
        &policies,
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--allow-destination=localhost:{port}"),
            &format!("--insecure-registry={r},localhost:{port}"),
            "--log=warn",
        ],
    );

    let scenarios = [
        Scenario {
            what: "clean image",
            kind: "deployment",
            name: "cart",
            namespace: "shop-dev",
            image: format!("{r}/shop/cart:1.0"),
            expect: "ALLOWED",
        },
        Scenario {
            what: "High findings",
            kind: "deployment",
            name: "ruby-api",
            namespace: "shop-dev",
            image: format!("{r}/shop/ruby-api:3.0"),
            expect: "AUDITED",
        },
        Scenario {
            what: "Critical in prod",
            kind: "deployment",
            name: "payments",
            namespace: "prod-eu",
            image: format!("{r}/shop/payments:4.2"),
            expect: "DENIED",
        },
        Scenario {
            what: "Critical in dev",
            kind: "job",
            name: "payments-migrate",
            namespace: "shop-dev",
            image: format!("{r}/shop/payments:4.2"),
            expect: "AUDITED",
        },
        Scenario {
            what: "unscanned in prod",
            kind: "cronjob",
            name: "batch",
            namespace: "prod-eu",
            image: format!("{r}/shop/batch:0.9"),
            expect: "DENIED",
        },
        Scenario {
            what: "stale scan in prod",
            kind: "deployment",
            name: "legacy",
            namespace: "prod-eu",
            image: format!("{r}/shop/legacy:7"),
            expect: "DENIED",
        },
        Scenario {
            what: "multi-arch, arm64 vulnerable",
            kind: "deployment",
            name: "edge",
            namespace: "prod-eu",
            image: format!("{r}/shop/edge:2.0"),
            expect: "DENIED",
        },
        Scenario {
            what: "in-toto vuln attestation",
            kind: "deployment",
            name: "metallb",
            namespace: "prod-eu",
            image: format!("{r}/infra/metallb:0.16"),
            expect: "AUDITED",
        },
        Scenario {
            what: "signed clean report",
            kind: "deployment",
            name: "checkout",
            namespace: "payments",
            image: format!("{r}/shop/checkout:5.1"),
            expect: "ALLOWED",
        },
        Scenario {
            what: "signed Critical vs spoofed",
            kind: "deployment",
            name: "checkout",
            namespace: "payments",
            image: format!("{r}/shop/checkout:5.0"),
            expect: "DENIED",
        },
        Scenario {
            what: "registry not allowed",
            kind: "deployment",
            name: "tool",
            namespace: "shop-dev",
            image: format!("localhost:{port}/shop/cart:1.0"),
            expect: "DENIED",
        },
    ];
    println!(
        "\n{:<29} {:<9} {:<25} {:<8} ANSWER",
        "SCENARIO", "NAMESPACE", "OBJECT", "DECISION"
    );
    let mut unexpected = 0;
    let mut objects = Vec::new();
    for s in &scenarios {
        let mut args = vec![s.kind, s.name];
        let image_flag = format!("--image={}", s.image);
        args.push(&image_flag);
        if s.kind == "cronjob" {
            args.push("--schedule=0 3 * * *");
        }
        let object = kubectl(&args, s.namespace);
        let resp = webhook.review("CREATE", &object, None).await;
        objects.push(object);
        let warnings: Vec<String> = resp["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let (decision, mut lines) = if resp["allowed"] == false {
            (
                "DENIED",
                vec![
                    resp["status"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ],
            )
        } else if warnings.is_empty() {
            ("ALLOWED", vec![String::new()])
        } else {
            ("AUDITED", Vec::new())
        };
        lines.extend(warnings.iter().map(|w| format!("warning: {w}")));
        if decision != s.expect {
            unexpected += 1;
            lines[0] = format!("(expected {}) {}", s.expect, lines[0]);
        }
        let object = format!("{}/{}", s.kind, s.name);
        println!(
            "{:<29} {:<9} {:<25} {:<8} {}",
            s.what, s.namespace, object, decision, lines[0]
        );
        for l in &lines[1..] {
            println!("{:<74} {}", "", l);
        }
    }
    let metrics = webhook.metrics().await;
    println!("\n== a few of the webhook's metrics (/metrics)");
    for line in metrics.lines().filter(|l| {
        l.starts_with("portcullis_decisions_total")
            || l.starts_with("portcullis_admission_requests_total")
    }) {
        println!("   {line}");
    }
    // e2e/monitoring.sh: keep the webhook up and send the same requests again
    // until the file named by PORTCULLIS_DEMO_HOLD is removed (3 minutes at
    // most), so that a real Prometheus scrapes live traffic.
    if let Some(hold) = std::env::var_os("PORTCULLIS_DEMO_HOLD") {
        let hold = std::path::PathBuf::from(hold);
        let partial = hold.with_extension("partial");
        std::fs::write(
            &partial,
            format!("metrics=127.0.0.1:{}\n", webhook.metrics_port),
        )
        .unwrap();
        std::fs::rename(&partial, &hold).unwrap();
        println!(
            "\n== replaying the requests until {} is removed",
            hold.display()
        );
        let until = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while hold.exists() && std::time::Instant::now() < until {
            for object in &objects {
                webhook.review("CREATE", object, None).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    println!("\n== stopping the webhook and the registry");
    drop(webhook);
    drop(registry);
    if unexpected > 0 {
        eprintln!("demo: {unexpected} decisions differ from what the sample policies should give");
        std::process::exit(1);
    }
}
