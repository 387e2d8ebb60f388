//! Federated cloud identities end to end: the webhook binary reads a private
//! registry (a real distribution registry with token authentication) behind
//! local stand-ins for ACR, ECR and Artifact Registry, with local Entra, AWS
//! STS, ECR API, EKS Pod Identity agent, Google STS, IAM Credentials and GKE
//! metadata endpoints, all under their real host names (`--resolve`, so the
//! destination guard still judges the loopback address they resolve to) and
//! over TLS where the real ones are. Every request they receive is asserted,
//! SigV4 signatures are recomputed with botocore, and no credential may
//! reach a host outside its scope.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud;
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud::{AwsKeys, Fake, Front, Pki, Upstream};
use serde_json::Value;
use support::{POLICIES, Registry, TokenServer, Webhook, fixture, kubectl};

const RECENT: &str = "2026-11-20T10:00:00Z";
const ROLE: &str = "arn:aws:iam::111111111111:role/portcullis-ecr";
const GSA: &str = "portcullis@team-project.iam.gserviceaccount.com";
const PROVIDER: &str =
    "projects/123456789/locations/global/workloadIdentityPools/clusters/providers/prod";

/// A real registry holding `repos` (each `repo:1.0`, with Critical
/// findings attached), readable only with its token server's credentials.
struct Private {
    upstream: Upstream,
    _tokens: TokenServer,
    _registry: Registry,
}

async fn private_registry(repos: &[&str]) -> Private {
    let tokens = TokenServer::start("master", "m4ster-password").await;
    let registry = Registry::distribution_with_token_auth(&tokens);
    let creds = Some(("master", "m4ster-password"));
    for repo in repos {
        registry.push_image(&format!("{repo}:1.0"), &[], creds);
        registry.attach(
            &format!("{repo}:1.0"),
            &fixture("trivy-json/trivy-debian-buster.json.golden"),
            RECENT,
            creds,
        );
    }
    Private {
        upstream: Upstream {
            registry: registry.addr.clone(),
            tokens: tokens.addr.clone(),
            user: "master".into(),
            password: "m4ster-password".into(),
        },
        _tokens: tokens,
        _registry: registry,
    }
}

fn token_file(dir: &tempfile::TempDir, name: &str, token: &str) -> String {
    let path = dir.path().join(name);
    // As the kubelet writes it: a JWT and no newline; a trailing newline
    // must not matter either.
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path.display().to_string()
}

fn access(name: &str, registries: &[&str], auth: &str) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: RegistryAccess\nmetadata: {{name: {name}}}\nspec:\n  registries: {}\n  auth: {auth}\n",
        serde_json::to_string(registries).unwrap()
    )
}

/// The webhook with the test CA, the fakes' names resolved to them, and
/// loopback 127.0.0.1 (where the fakes listen) allowed; nothing else.
fn webhook(pki: &Pki, fakes: &[&Fake], registry_config: &str, extra: &[String]) -> Webhook {
    let mut args = vec![
        "--allow-destination=127.0.0.1/32".to_owned(),
        format!("--registry-ca={}", pki.ca_file.display()),
        "--registry-timeout=5s".to_owned(),
        "--deadline=10s".to_owned(),
    ];
    args.extend(
        fakes
            .iter()
            .filter(|f| !f.name.starts_with("127."))
            .map(|f| f.resolve()),
    );
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Webhook::start(POLICIES, Some(registry_config), &args)
}

async fn review(wh: &Webhook, image: &str) -> Value {
    let dep = kubectl(&["deployment", "app", &format!("--image={image}")], "shop");
    wh.review("CREATE", &dep, None).await
}

fn denied_by_findings(r: &Value) -> bool {
    r["allowed"] == false
        && r["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("(rule deny-critical)")
}

/// The reason code shown for an image that could not be judged.
fn reason(r: &Value) -> String {
    format!("{} {}", r["status"]["message"], r["warnings"])
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn shared() -> Arc<Mutex<HashSet<String>>> {
    Arc::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_irsa_reads_private_ecr_and_each_token_stays_in_its_account_and_region() {
    support::install_crypto();
    let us_host = "111111111111.dkr.ecr.us-east-1.amazonaws.com";
    let eu_host = "111111111111.dkr.ecr.eu-west-1.amazonaws.com";
    let other_account = "222222222222.dkr.ecr.us-east-1.amazonaws.com";
    let pki = Pki::new(&[
        us_host,
        eu_host,
        other_account,
        "sts.us-east-1.amazonaws.com",
        "api.ecr.us-east-1.amazonaws.com",
        "api.ecr.eu-west-1.amazonaws.com",
    ]);
    let private = private_registry(&["team/app"]).await;
    let (us_passwords, eu_passwords) = (shared(), shared());
    let ecr = |host: &'static str, passwords: &Arc<Mutex<HashSet<String>>>| {
        let passwords = passwords.clone();
        let (pki, up) = (&pki, &private.upstream);
        async move { cloud::registry_front(pki, host, Front::Ecr { passwords }, Some(up)).await }
    };
    let us = ecr(us_host, &us_passwords).await;
    let eu = ecr(eu_host, &eu_passwords).await;
    // Another account's registry in the same region would accept the
    // us-east-1 token (ECR tokens are per region): only the pattern keeps it
    // from being sent there.
    let other = ecr(other_account, &us_passwords).await;
    let keys = AwsKeys::new("irsa");
    let sts = cloud::aws_sts(&pki, "us-east-1", ROLE, "projected-aws-token", keys.clone()).await;
    // us-east-1 tokens live 8 s, so the test sees one refreshed.
    let us_api = cloud::ecr_api(&pki, "us-east-1", "us", 8, us_passwords.clone()).await;
    let eu_api = cloud::ecr_api(&pki, "eu-west-1", "eu", 12 * 3600, eu_passwords.clone()).await;

    let dir = tempfile::tempdir().unwrap();
    let token = token_file(&dir, "aws-token", "projected-aws-token");
    let config = access(
        "ecr-team",
        &[us_host, eu_host],
        &format!("{{type: AwsWebIdentity, awsWebIdentity: {{roleArn: \"{ROLE}\"}}}}"),
    );
    let wh = webhook(
        &pki,
        &[&us, &eu, &other, &sts, &us_api, &eu_api],
        &config,
        &[
            format!("--aws-web-identity-token-file={token}"),
            "--aws-region=us-east-1".into(),
        ],
    );

    let r = review(&wh, &format!("{us_host}/team/app:1.0")).await;
    assert!(denied_by_findings(&r), "{r}\n{}", wh.log());
    let r = review(&wh, &format!("{eu_host}/team/app:1.0")).await;
    assert!(denied_by_findings(&r), "{r}\n{}", wh.log());
    let r = review(&wh, &format!("{other_account}/team/app:1.0")).await;
    assert!(reason(&r).contains("(reason RegistryAuth)"), "{r}");

    // STS once, exactly as the AWS SDKs ask.
    let calls = sts.requests();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let form = calls[0].form();
    assert_eq!(
        form.iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("RoleArn", ROLE),
            ("RoleSessionName", "portcullis-webhook"),
            ("Version", "2011-06-15"),
            ("WebIdentityToken", "projected-aws-token"),
        ]
    );
    // ECR in each region, signed with the role's credentials: botocore
    // computes the same Authorization header.
    for (api, region) in [(&us_api, "us-east-1"), (&eu_api, "eu-west-1")] {
        let calls = api.requests();
        assert_eq!(calls.len(), 1, "{region}: {calls:?}");
        let c = &calls[0];
        assert_eq!(c.body, "{}");
        assert_eq!(c.header("x-amz-security-token"), keys.session_token);
        let auth = c.header("authorization");
        assert!(
            auth.contains(&format!("Credential={}/", keys.access_key_id))
                && auth.contains(&format!("/{region}/ecr/aws4_request"))
                && auth.contains(
                    "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target,"
                ),
            "{auth}"
        );
        let expected = cloud::botocore_authorization(c, &api.name, &keys, region, "ecr");
        assert_eq!(auth, expected, "SigV4 differs from botocore's");
    }
    // Each region's token went to that region's registry only, and the
    // other account's registry got nothing.
    let users = |f: &Fake| cloud::basic_credentials(f);
    assert!(!users(&us).is_empty());
    assert!(
        users(&us)
            .iter()
            .all(|(u, p)| u == "AWS" && p.starts_with("us-password-")),
        "{:?}",
        users(&us)
    );
    assert!(!users(&eu).is_empty());
    assert!(
        users(&eu)
            .iter()
            .all(|(u, p)| u == "AWS" && p.starts_with("eu-password-")),
        "{:?}",
        users(&eu)
    );
    assert_eq!(other.authorizations(), Vec::<String>::new());

    let m = wh.metrics().await;
    assert_eq!(
        metric(
            &m,
            "portcullis_registry_access_usable{registry_access=\"ecr-team\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "portcullis_registry_identity_exchanges_total{registry_access=\"ecr-team\",result=\"success\"}"
        ),
        Some(2.0)
    );

    // The us-east-1 token is refreshed before it expires, once for many
    // admissions at the same time, and the evidence caches survive it:
    // the registry sees no new request.
    let reads_before = us.requests().len();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let image = format!("{us_host}/team/app:1.0");
    let answers = futures::future::join_all((0..4).map(|_| review(&wh, &image))).await;
    assert!(answers.iter().all(denied_by_findings), "{answers:?}");
    assert_eq!(us_api.requests().len(), 2, "one refresh");
    assert_eq!(
        sts.requests().len(),
        1,
        "the role's credentials are still valid"
    );
    assert_eq!(
        us.requests().len(),
        reads_before,
        "caches were emptied by the refresh"
    );
    // The new token is the one used from now on.
    let r = review(&wh, &format!("{us_host}/team/app:2.0")).await;
    assert!(reason(&r).contains("(reason ImageNotFound)"), "{r}");
    assert_eq!(
        users(&us).last().map(|(_, p)| p.clone()).as_deref(),
        Some("us-password-2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_agents_are_reachable_by_the_identity_path_only() {
    support::install_crypto();
    let ecr_host = "111111111111.dkr.ecr.us-east-1.amazonaws.com";
    let gar_host = "us-docker.pkg.dev";
    let pki = Pki::new(&[ecr_host, gar_host, "api.ecr.us-east-1.amazonaws.com"]);
    let private = private_registry(&["team/app", "team-project/images/app"]).await;
    let (passwords, access_tokens) = (shared(), shared());
    access_tokens
        .lock()
        .unwrap()
        .insert("ya29.metadata-token".into());
    let ecr = cloud::registry_front(
        &pki,
        ecr_host,
        Front::Ecr {
            passwords: passwords.clone(),
        },
        Some(&private.upstream),
    )
    .await;
    let gar = cloud::registry_front(
        &pki,
        gar_host,
        Front::Gar { access_tokens },
        Some(&private.upstream),
    )
    .await;
    let api = cloud::ecr_api(&pki, "us-east-1", "pod", 12 * 3600, passwords).await;
    // The agents on other loopback addresses than the allowed 127.0.0.1:
    // only their explicit exceptions reach them.
    let keys = AwsKeys::new("podidentity");
    let agent = cloud::eks_agent("127.0.0.2:0", "eks-pod-identity-token", keys.clone()).await;
    let metadata = cloud::gke_metadata("127.0.0.3:0", GSA, "ya29.metadata-token").await;

    let dir = tempfile::tempdir().unwrap();
    let token = token_file(&dir, "eks-pod-identity-token", "eks-pod-identity-token");
    let config = access(
        "ecr",
        &[ecr_host],
        &format!("{{type: AwsWebIdentity, awsWebIdentity: {{roleArn: \"{ROLE}\"}}}}"),
    ) + &access(
        "gar",
        &[gar_host],
        &format!(
            "{{type: GcpWorkloadIdentity, gcpWorkloadIdentity: {{serviceAccount: \"{GSA}\"}}}}"
        ),
    );
    let wh = webhook(
        &pki,
        &[&ecr, &gar, &api],
        &config,
        &[
            format!(
                "--aws-container-credentials-full-uri=http://{}/v1/credentials",
                agent.addr
            ),
            format!("--aws-container-authorization-token-file={token}"),
            format!("--gce-metadata-host={}", metadata.addr),
        ],
    );

    let r = review(&wh, &format!("{ecr_host}/team/app:1.0")).await;
    assert!(denied_by_findings(&r), "{r}\n{}", wh.log());
    let r = review(&wh, &format!("{gar_host}/team-project/images/app:1.0")).await;
    assert!(denied_by_findings(&r), "{r}\n{}", wh.log());
    // The ECR call was signed with the agent's credentials.
    let calls = api.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].header("authorization"),
        cloud::botocore_authorization(&calls[0], &api.name, &keys, "us-east-1", "ecr")
    );
    assert_eq!(
        cloud::basic_credentials(&gar)
            .first()
            .map(|(u, _)| u.as_str()),
        Some("oauth2accesstoken")
    );

    // Images naming the agents, at their real addresses or where these
    // run, are refused before any request.
    for image in [
        "169.254.170.23/x:1".to_owned(),
        "[fd00:ec2::23]/x:1".to_owned(),
        "169.254.169.254/x:1".to_owned(),
        "169.254.169.254:80/x:1".to_owned(),
        format!("{}/v1/credentials:1", agent.addr),
        format!("{}/x:1", metadata.addr),
    ] {
        let r = review(&wh, &image).await;
        assert_eq!(r["allowed"], false, "{image}: {r}");
        assert!(reason(&r).contains("BlockedDestination"), "{image}: {r}");
    }
    // Each agent was asked once, by the identity path, as its clients ask.
    let asked = agent.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        (asked[0].path.as_str(), asked[0].header("authorization")),
        ("/v1/credentials", "eks-pod-identity-token")
    );
    let asked = metadata.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        asked[0].path,
        format!("/computeMetadata/v1/instance/service-accounts/{GSA}/token")
    );
    assert_eq!(asked[0].header("metadata-flavor"), "Google");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_federation_reads_artifact_registry_and_google_tokens_stay_on_google_registries() {
    support::install_crypto();
    let gar_host = "europe-west1-docker.pkg.dev";
    let pki = Pki::new(&[
        gar_host,
        "registry.example.com",
        "sts.googleapis.com",
        "iamcredentials.googleapis.com",
    ]);
    let private = private_registry(&["team-project/images/app"]).await;
    let access_tokens = shared();
    access_tokens
        .lock()
        .unwrap()
        .insert("ya29.impersonated".into());
    let gar = cloud::registry_front(
        &pki,
        gar_host,
        Front::Gar { access_tokens },
        Some(&private.upstream),
    )
    .await;
    let elsewhere =
        cloud::registry_front(&pki, "registry.example.com", Front::Recording, None).await;
    let audience = format!("//iam.googleapis.com/{PROVIDER}");
    let sts = cloud::google_sts(&pki, &audience, "projected-gcp-token", "ya29.federated").await;
    let iam = cloud::iam_credentials(&pki, GSA, "ya29.federated", "ya29.impersonated").await;

    let dir = tempfile::tempdir().unwrap();
    let token = token_file(&dir, "gcp-token", "projected-gcp-token");
    let gcp = format!(
        "{{type: GcpWorkloadIdentity, gcpWorkloadIdentity: {{serviceAccount: \"{GSA}\", workloadIdentityProvider: \"{PROVIDER}\"}}}}"
    );
    let config = access("gar", &["*-docker.pkg.dev"], &gcp)
        + &access("not-google", &["registry.example.com"], &gcp);
    let wh = webhook(
        &pki,
        &[&gar, &elsewhere, &sts, &iam],
        &config,
        &[format!("--gcp-federated-token-file={token}")],
    );

    let r = review(&wh, &format!("{gar_host}/team-project/images/app:1.0")).await;
    assert!(denied_by_findings(&r), "{r}\n{}", wh.log());
    let r = review(&wh, "registry.example.com/team-project/images/app:1.0").await;
    assert!(reason(&r).contains("(reason RegistryAuth)"), "{r}");
    assert!(
        reason(&r).contains("is not a registry Google credentials are sent to"),
        "{r}"
    );

    let calls = sts.requests();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].form().get("audience"), Some(&audience));
    let calls = iam.requests();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].header("authorization"), "Bearer ya29.federated");
    assert_eq!(
        cloud::basic_credentials(&gar),
        vec![(
            "oauth2accesstoken".to_owned(),
            "ya29.impersonated".to_owned()
        )]
    );
    assert_eq!(elsewhere.authorizations(), Vec::<String>::new());
    let m = wh.metrics().await;
    assert_eq!(
        metric(
            &m,
            "portcullis_registry_access_usable{registry_access=\"gar\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_workload_identity_reads_acr_and_the_entra_token_stays_on_acr_hosts() {
    support::install_crypto();
    let acr_host = "team.azurecr.io";
    let pki = Pki::new(&[
        acr_host,
        "registry.example.com",
        "login.microsoftonline.com",
    ]);
    let private = private_registry(&["team/app"]).await;
    let acr = cloud::registry_front(
        &pki,
        acr_host,
        Front::Acr {
            tenant: "tenant-1".into(),
            entra_token: "entra-access-token".into(),
            refresh_token: "acr-refresh-token".into(),
        },
        Some(&private.upstream),
    )
    .await;
    let elsewhere =
        cloud::registry_front(&pki, "registry.example.com", Front::Recording, None).await;
    let entra = cloud::entra(
        &pki,
        "tenant-1",
        "client-1",
        "projected-azure-token",
        "entra-access-token",
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let token = token_file(&dir, "azure-identity-token", "projected-azure-token");
    let azure = "{type: AzureWorkloadIdentity, azureWorkloadIdentity: {tenantId: tenant-1, clientId: client-1}}";
    let config =
        access("acr", &["*.azurecr.io"], azure) + &access("not-acr", &["*.example.com"], azure);
    // The default authority (https://login.microsoftonline.com/), resolved
    // to the stand-in.
    let wh = webhook(
        &pki,
        &[&acr, &elsewhere, &entra],
        &config,
        &[format!("--azure-federated-token-file={token}")],
    );

    let r = review(&wh, &format!("{acr_host}/team/app:1.0")).await;
    assert!(denied_by_findings(&r), "{r}\n{}", wh.log());
    let r = review(&wh, "registry.example.com/team/app:1.0").await;
    assert!(reason(&r).contains("(reason RegistryAuth)"), "{r}");

    assert_eq!(entra.requests().len(), 1, "Entra asked only for the ACR");
    let exchanges: Vec<_> = acr
        .requests()
        .into_iter()
        .filter(|r| r.path == "/oauth2/exchange")
        .collect();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(
        exchanges[0].form().into_iter().collect::<Vec<_>>(),
        [
            ("access_token".to_owned(), "entra-access-token".to_owned()),
            ("grant_type".to_owned(), "access_token".to_owned()),
            ("service".to_owned(), acr_host.to_owned()),
            ("tenant".to_owned(), "tenant-1".to_owned()),
        ]
    );
    assert!(
        cloud::basic_credentials(&acr)
            .iter()
            .all(|c| c == &(cloud::ACR_USER.to_owned(), "acr-refresh-token".to_owned()))
    );
    // Not an ACR host: no exchange, no credential of any kind.
    assert!(
        elsewhere
            .requests()
            .iter()
            .all(|r| r.path != "/oauth2/exchange")
    );
    assert_eq!(elsewhere.authorizations(), Vec::<String>::new());
    let m = wh.metrics().await;
    assert_eq!(
        metric(
            &m,
            "portcullis_registry_access_usable{registry_access=\"acr\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // A RegistryAccess that never gave credentials shows 0: "Ready but never
    // usable" can be alerted on.
    assert_eq!(
        metric(
            &m,
            "portcullis_registry_access_usable{registry_access=\"not-acr\"}"
        ),
        Some(0.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_and_path_scoped_keys_keep_basic_credentials_in_scope_and_secrets_are_reread() {
    support::install_crypto();
    let hosts = [
        "team.example.com",
        "evil-example.com",
        "example.com.evil.net",
        "registry.example.com.evil.net",
    ];
    let pki = Pki::new(&hosts);
    let mut fronts = Vec::new();
    for h in hosts {
        fronts.push(cloud::registry_front(&pki, h, Front::Recording, None).await);
    }
    let secret = |password: &str| {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("team:{password}"));
        let docker =
            serde_json::json!({"auths": {"team.example.com/team": {"auth": auth}}}).to_string();
        access(
            "wildcard",
            &["*.example.com"],
            "{type: BasicSecret, secretRef: {namespace: portcullis, name: team}}",
        ) + &access(
            "suffix",
            &["registry.example.com*"],
            "{type: BasicSecret, secretRef: {namespace: portcullis, name: team}}",
        ) + &format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{namespace: portcullis, name: team}}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{docker}'\n"
        )
    };
    let refs: Vec<&Fake> = fronts.iter().collect();
    let wh = webhook(
        &pki,
        &refs,
        &secret("first-password"),
        &["--policy-reload-interval=200ms".into()],
    );

    // A path the Secret's key does not cover gets no credentials, and says so.
    let r = review(&wh, "team.example.com/other/app:1").await;
    assert!(reason(&r).contains("(reason RegistryAuth)"), "{r}");
    assert!(
        reason(&r).contains("holds no credentials for team.example.com/other/app"),
        "{r}"
    );
    for image in [
        "team.example.com/team/app:1",
        "evil-example.com/team/app:1",
        "example.com.evil.net/team/app:1",
        "registry.example.com.evil.net/team/app:1",
    ] {
        let r = review(&wh, image).await;
        assert!(reason(&r).contains("(reason RegistryAuth)"), "{image}: {r}");
    }
    let sent = |i: usize| -> Vec<(String, String, String)> {
        fronts[i]
            .requests()
            .iter()
            .filter_map(|r| {
                let (u, p) = cloud::basic_credentials_of(r.header("authorization"))?;
                Some((r.path.clone(), u, p))
            })
            .collect()
    };
    // In scope: the key's path, on the pattern's host.
    let team = sent(0);
    assert!(!team.is_empty());
    assert!(
        team.iter().all(|(path, u, p)| path.starts_with("/v2/team/")
            && u == "team"
            && p == "first-password"),
        "{team:?}"
    );
    // Out of scope: hosts the patterns only seem to match are read, anonymously.
    for (i, host) in hosts.iter().enumerate().skip(1) {
        assert_eq!(fronts[i].authorizations(), Vec::<String>::new(), "{host}");
        assert!(
            !fronts[i].requests().is_empty(),
            "{host} was not asked at all"
        );
    }

    // The Secret changes in the file: the new password is used, without a
    // restart.
    std::fs::write(
        wh.dir.path().join("registry.yaml"),
        secret("second-password"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = review(&wh, "team.example.com/team/app:2").await;
        assert!(reason(&r).contains("(reason RegistryAuth)"), "{r}");
        if sent(0).iter().any(|(_, _, p)| p == "second-password") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the changed Secret was not used"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_override_is_judged_by_the_destination_guard() {
    support::install_crypto();
    let config = access("anon", &["registry.example.com"], "{type: Anonymous}");
    let image = "registry.example.com/team/app:1.0";
    // Overridden to loopback: refused like a DNS answer would be.
    let wh = Webhook::start(
        POLICIES,
        Some(&config),
        &["--resolve=registry.example.com=127.0.0.1:9"],
    );
    let r = review(&wh, image).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(reason(&r).contains("BlockedDestination"), "{r}");
    drop(wh);
    // Allowed: the override's address and port are where it connects
    // (nothing listens on port 9).
    let wh = Webhook::start(
        POLICIES,
        Some(&config),
        &[
            "--resolve=registry.example.com=127.0.0.1:9",
            "--allow-destination=127.0.0.1/32",
        ],
    );
    let r = review(&wh, image).await;
    assert!(reason(&r).contains("(reason RegistryUnavailable)"), "{r}");
    assert!(reason(&r).contains("registry.example.com"), "{r}");
}
