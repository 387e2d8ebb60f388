//! End to end with real parts: distribution and ferro-oci-server registries,
//! images pushed with skopeo, findings attached with portcullis-attach and
//! oras-py, objects from kubectl, and the webhook binary over TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value;
use support::{POLICIES, Registry, Webhook, fixture, kubectl};

const RECENT: &str = "2026-11-20T10:00:00Z";

fn warnings(resp: &Value) -> Vec<String> {
    resp["warnings"]
        .as_array()
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn denial(resp: &Value) -> String {
    assert_eq!(resp["allowed"], false, "expected a denial: {resp}");
    resp["status"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_workloads_on_findings_attached_in_real_registries() {
    let dist = Registry::distribution(None);
    let ferro = Registry::ferro();
    let d = &dist.addr;
    let f = &ferro.addr;

    dist.push_image("shop/clean:1.0", &[], None);
    dist.attach(
        "shop/clean:1.0",
        &fixture("trivy-json/trivy-sl-micro-rancher5.4-novulns.json.golden"),
        RECENT,
        None,
    );
    dist.push_image("shop/ruby:3.0", &[], None);
    dist.attach(
        "shop/ruby:3.0",
        &fixture("grype-json/grype-chainguard-ruby-test.json"),
        RECENT,
        None,
    );
    dist.push_image("shop/payments:4.2", &[], None);
    dist.attach(
        "shop/payments:4.2",
        &fixture("trivy-json/trivy-debian-buster.json.golden"),
        RECENT,
        None,
    );
    dist.push_image("shop/batch:0.9", &[], None);
    // A multi-platform index whose platforms carry different findings.
    let (_, platforms) = dist.push_image("shop/multi:2.0", &["linux/amd64", "linux/arm64"], None);
    let amd64 = &platforms[0].1;
    let arm64 = &platforms[1].1;
    dist.attach(
        &format!("shop/multi@{amd64}"),
        &fixture("trivy-json/trivy-sl-micro-rancher5.4-novulns.json.golden"),
        RECENT,
        None,
    );
    dist.attach(
        &format!("shop/multi@{arm64}"),
        &fixture("trivy-json/trivy-debian-buster.json.golden"),
        RECENT,
        None,
    );
    // Referrers API registry, findings attached by oras-py. For team/api the
    // newest artifact is clean and an older one critical: the newest wins.
    let (api, _) = ferro.push_image("team/api:1.0", &[], None);
    ferro.oras_attach(
        &format!("team/api@{api}"),
        &fixture("grype-json/grype-snapshot-TestJsonImgsPresenter.golden"),
        "2026-10-01T00:00:00Z",
    );
    ferro.oras_attach(
        &format!("team/api@{api}"),
        &fixture("grype-json/defectdojo-grype-no_vuln.json"),
        RECENT,
    );
    let (worker, _) = ferro.push_image("team/worker:1.0", &[], None);
    ferro.oras_attach(
        &format!("team/worker@{worker}"),
        &fixture("grype-sarif/grype-snapshot-TestSarifPresenter_image.golden"),
        RECENT,
    );

    let wh = Webhook::start(
        POLICIES,
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={d},{f}"),
            "--log-format=json",
        ],
    );

    // Clean image: allowed, no warnings.
    let dep = kubectl(
        &["deployment", "web", &format!("--image={d}/shop/clean:1.0")],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(warnings(&r).is_empty(), "{r}");

    // High findings: admitted with a warning naming the rule and the CVEs.
    let dep = kubectl(
        &["deployment", "ruby", &format!("--image={d}/shop/ruby:3.0")],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert_eq!(r["allowed"], true, "{r}");
    let w = warnings(&r);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(&format!(
            "portcullis audited {d}/shop/ruby:3.0 (rule audit-high): Image contains 3 high or higher CVEs, which is more than the allowed count of: 0: "
        )),
        "{w:?}"
    );

    // Critical finding, in a Job: denied with the reference message.
    let job = kubectl(
        &["job", "pay", &format!("--image={d}/shop/payments:4.2")],
        "shop",
    );
    let r = wh.review("CREATE", &job, None).await;
    assert_eq!(
        denial(&r),
        format!(
            "{d}/shop/payments:4.2: Image contains 1 critical CVEs, which is more than the allowed count of: 0 (rule deny-critical)"
        )
    );

    // No findings: allowed by default, denied where a rule blocks unscanned images.
    let cron = kubectl(
        &[
            "cronjob",
            "batch",
            &format!("--image={d}/shop/batch:0.9"),
            "--schedule=*/5 * * * *",
        ],
        "shop",
    );
    let r = wh.review("CREATE", &cron, None).await;
    assert_eq!(r["allowed"], true, "{r}");
    let cron = kubectl(
        &[
            "cronjob",
            "batch",
            &format!("--image={d}/shop/batch:0.9"),
            "--schedule=*/5 * * * *",
        ],
        "strict",
    );
    let r = wh.review("CREATE", &cron, None).await;
    assert_eq!(
        denial(&r),
        format!(
            "{d}/shop/batch:0.9: No vulnerability findings are attached to the image; unscanned images are not allowed by policy (rule strict-scanned)"
        )
    );

    // Multi-platform: the arm64 platform carries the critical finding.
    let dep = kubectl(
        &[
            "deployment",
            "multi",
            &format!("--image={d}/shop/multi:2.0"),
        ],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert_eq!(
        denial(&r),
        format!(
            "{d}/shop/multi:2.0 (linux/arm64): Image contains 1 critical CVEs, which is more than the allowed count of: 0 (rule deny-critical)"
        )
    );

    // Referrers API + oras-py: newest artifact (clean) wins over an older critical one.
    let dep = kubectl(
        &["deployment", "api", &format!("--image={f}/team/api:1.0")],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert_eq!(r["allowed"], true, "{r}");
    // SARIF from Grype with a critical result, found through the referrers API.
    let dep = kubectl(
        &[
            "deployment",
            "worker",
            &format!("--image={f}/team/worker:1.0"),
        ],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert!(denial(&r).contains("(rule deny-critical)"), "{r}");

    // Several containers: one denial line per denied image, warnings for audited ones.
    let dep = kubectl(
        &[
            "deployment",
            "mix",
            &format!("--image={d}/shop/clean:1.0"),
            &format!("--image={d}/shop/ruby:3.0"),
            &format!("--image={d}/shop/payments:4.2"),
        ],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert!(
        denial(&r).starts_with(&format!("{d}/shop/payments:4.2: ")),
        "{r}"
    );
    // Audit violations are reported for every image, the denied one included.
    let w = warnings(&r);
    assert_eq!(w.len(), 2, "{r}");
    assert!(
        w[0].contains("shop/ruby:3.0 (rule audit-high)")
            && w[1].contains("shop/payments:4.2 (rule audit-high)"),
        "{w:?}"
    );

    // UPDATE that keeps the denied image: not re-gated, allowed.
    let job = kubectl(
        &["job", "pay", &format!("--image={d}/shop/payments:4.2")],
        "shop",
    );
    let r = wh.review("UPDATE", &job, Some(&job)).await;
    assert_eq!(r["allowed"], true, "{r}");

    // The trail: one JSON log line per Audit/Deny, and metrics.
    let log = wh.log();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["target"] == "portcullis::decision" && l["name"] == "pay")
        .unwrap_or_else(|| panic!("no decision log line in {log}"));
    assert_eq!(line["action"], "Deny");
    assert_eq!(line["rule"], "deny-critical");
    assert_eq!(line["reason"], "SeverityThreshold");
    assert_eq!(line["kind"], "Job");
    assert_eq!(line["namespace"], "shop");
    assert_eq!(line["container"], "pay");
    assert!(line["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(line["timestamp"].is_string());
    let metrics = wh.metrics().await;
    for needle in [
        r#"portcullis_admission_requests_total{decision="Deny",kind="Job",operation="CREATE"} 1"#,
        r#"portcullis_decisions_total{action="Deny",reason="SeverityThreshold",rule="deny-critical"}"#,
        r#"portcullis_decisions_total{action="Deny",reason="NoFindings",rule="strict-scanned"} 1"#,
        "portcullis_admission_duration_seconds_bucket",
        r#"operation="referrers_tag",registry=""#,
        r#"portcullis_cache_lookups_total{cache="tag",result="hit"}"#,
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_admission_payloads_and_bad_requests() {
    let wh = Webhook::start(
        // Rules that apply only elsewhere: the fixtures' public images are not looked up.
        "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityArtifactPolicy\nmetadata: {name: elsewhere}\nspec:\n  action: Deny\n  scope: [{matcherType: Namespace, values: [elsewhere]}]\n  conditions: {maxAllowedSeverities: {critical: 0}}\n",
        None,
        &["--max-body-bytes=200000"],
    );
    for name in [
        "whorf-request-deployment.json",
        "connaisseur-02_pod.json",
        "connaisseur-20_pod_ephemeralcontainer.json",
    ] {
        let bytes = std::fs::read(fixture(&format!("admission-review/{name}"))).unwrap();
        let uid = serde_json::from_slice::<Value>(&bytes).unwrap()["request"]["uid"].clone();
        let (status, body) = wh.post(bytes).await;
        assert_eq!(status, 200, "{name}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["response"]["uid"], uid, "{name}");
        assert_eq!(v["response"]["allowed"], true, "{name}: {body}");
    }
    let (status, body) = wh.post(b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("not an AdmissionReview"), "{body}");
    let (status, _) = wh
        .post(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec())
        .await;
    assert_eq!(status, 400);
    let (status, _) = wh.post(vec![b' '; 300_000]).await;
    assert_eq!(status, 413);
    // An image reference that cannot be pulled anyway is denied.
    let mut pod = kubectl(&["deployment", "x", "--image=nginx"], "elsewhere");
    pod["spec"]["template"]["spec"]["containers"][0]["image"] =
        "Registry.Example.com/UPPER:case".into();
    let r = wh.review("CREATE", &pod, None).await;
    let message = denial(&r);
    assert!(message.contains("(reason InvalidReference)"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_files_are_reloaded_and_a_broken_edit_keeps_the_rules_in_force() {
    let dist = Registry::distribution(None);
    let d = &dist.addr;
    dist.push_image("shop/payments:4.2", &[], None);
    dist.attach(
        "shop/payments:4.2",
        &fixture("trivy-json/trivy-debian-buster.json.golden"),
        RECENT,
        None,
    );
    let audit = "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityArtifactPolicy\nmetadata: {name: critical}\nspec:\n  action: Audit\n  conditions: {maxAllowedSeverities: {critical: 0}}\n";
    let wh = Webhook::start(
        audit,
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={d}"),
            "--policy-reload-interval=100ms",
        ],
    );
    let dep = kubectl(
        &[
            "deployment",
            "pay",
            &format!("--image={d}/shop/payments:4.2"),
        ],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert_eq!(r["allowed"], true, "{r}");

    let rules = wh.dir.path().join("policies/rules.yaml");
    std::fs::write(&rules, audit.replace("action: Audit", "action: Deny")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = wh.review("CREATE", &dep, None).await;
        if r["allowed"] == false {
            assert!(denial(&r).ends_with("(rule critical)"), "{r}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edited policy was not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A broken edit: logged, and the Deny rule stays in force.
    std::fs::write(&rules, "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityArtifactPolicy\nmetadata: {name: critical}\nspec: {action: Deny, conditions: {}}\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !wh.log().contains("policy files changed but do not load") {
        assert!(
            std::time::Instant::now() < deadline,
            "the broken edit was not noticed: {}",
            wh.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = wh.review("CREATE", &dep, None).await;
    assert!(denial(&r).ends_with("(rule critical)"), "{r}");
}
