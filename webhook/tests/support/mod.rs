//! Real parts for end-to-end tests: registry processes (distribution and
//! ferro-oci-server), images pushed with skopeo, findings attached with
//! `portcullis-attach` and oras-py, the webhook binary over TLS, and a
//! fault-injecting proxy. Tools are installed by `e2e/test.sh`; a missing tool
//! fails the test with the install hint (never a silent skip).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixture(path: &str) -> PathBuf {
    repo_root().join("testdata").join(path)
}

/// A binary of this package: Cargo tells tests where; examples (the demo)
/// find it beside themselves in the target directory.
pub fn bin(name: &str) -> PathBuf {
    let from_cargo = match name {
        "portcullis-webhook" => option_env!("CARGO_BIN_EXE_portcullis-webhook"),
        "portcullis-attach" => option_env!("CARGO_BIN_EXE_portcullis-attach"),
        _ => None,
    };
    from_cargo.map_or_else(
        || {
            let exe = std::env::current_exe().unwrap();
            // target/<profile>/examples/demo -> target/<profile>/<name>
            exe.parent().unwrap().parent().unwrap().join(name)
        },
        PathBuf::from,
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is not installed: run `bash e2e/test.sh`, which installs it"
    );
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_http(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"2") || o.stdout.starts_with(b"401"));
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not come up at {url}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running registry.
pub struct Registry {
    /// `127.0.0.1:port`.
    pub addr: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Debian's distribution 2.8 (no referrers API: tag fallback), optionally
    /// with htpasswd basic auth.
    pub fn distribution(basic: Option<(&str, &str)>) -> Registry {
        require("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut auth = String::new();
        if let Some((user, pass)) = basic {
            require("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .unwrap();
            std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: portcullis-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        Self::serve_distribution(dir, port, &auth)
    }

    /// Writes the configuration (plus `auth`, YAML) and starts distribution.
    fn serve_distribution(dir: tempfile::TempDir, port: u16, auth: &str) -> Registry {
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        wait_http(&format!("http://{addr}/v2/"), "docker-registry");
        Registry {
            addr,
            _proc: Proc(child),
            _dir: dir,
        }
    }

    /// distribution 2.8 with token authentication: its realm is `token`, a
    /// real JWT issuer (see [`TokenServer`]) that gives pull tokens to `user`.
    pub fn distribution_with_token_auth(token: &TokenServer) -> Registry {
        require("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("issuer.pem"), &token.cert_pem).unwrap();
        let auth = format!(
            "auth:\n  token:\n    realm: http://{}/token\n    service: portcullis-test\n    issuer: portcullis-test-issuer\n    rootcertbundle: {}\n",
            token.addr,
            dir.path().join("issuer.pem").display()
        );
        Self::serve_distribution(dir, port, &auth)
    }

    /// ferro-oci-server, which implements the referrers API.
    pub fn ferro() -> Registry {
        require("ferro-oci-server");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("ferro-oci-server")
            .env("FERRO_OCI_LISTEN", &addr)
            .env("FERRO_OCI_STORAGE_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_http(&format!("http://{addr}/v2/"), "ferro-oci-server");
        Registry {
            addr,
            _proc: Proc(child),
            _dir: dir,
        }
    }

    /// Pushes a generated image (one platform: a manifest; several: an index)
    /// with skopeo. Returns the top digest and the per-platform digests.
    pub fn push_image(
        &self,
        repo_tag: &str,
        platforms: &[&str],
        creds: Option<(&str, &str)>,
    ) -> (String, Vec<(String, String)>) {
        require("skopeo");
        let mut cmd = Command::new("python3");
        cmd.arg(repo_root().join("e2e/tools/make_image.py"))
            .arg(format!("{}/{repo_tag}", self.addr))
            .arg("--insecure");
        for p in platforms {
            cmd.args(["--platform", p]);
        }
        if let Some((u, p)) = creds {
            cmd.env("REGISTRY_AUTH_FILE", auth_file(&self.addr, u, p));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "make_image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let top = lines.next().unwrap().to_owned();
        let per = lines
            .map(|l| {
                let (p, d) = l.split_once(' ').unwrap();
                (p.to_owned(), d.to_owned())
            })
            .collect();
        (top, per)
    }

    /// Attaches `report` to `image` (`repo:tag` or `repo@digest`) with our
    /// own client, `portcullis-attach`.
    pub fn attach(
        &self,
        image: &str,
        report: &Path,
        created: &str,
        creds: Option<(&str, &str)>,
    ) -> String {
        let mut cmd = Command::new(bin("portcullis-attach"));
        cmd.arg(format!("{}/{image}", self.addr))
            .arg(report)
            .arg("--insecure")
            .args(["--created", created]);
        if let Some((u, p)) = creds {
            cmd.env("PORTCULLIS_USERNAME", u)
                .env("PORTCULLIS_PASSWORD", p);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "portcullis-attach: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Attaches `file` with portcullis-attach under an explicit artifact type
    /// (SBOMs, VEX, ...). Returns the artifact manifest's digest.
    pub fn attach_as(
        &self,
        image: &str,
        file: &Path,
        created: &str,
        artifact_type: &str,
    ) -> String {
        let out = Command::new(bin("portcullis-attach"))
            .arg(format!("{}/{image}", self.addr))
            .arg(file)
            .arg("--insecure")
            .args(["--created", created, "--artifact-type", artifact_type])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "portcullis-attach: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Uploads a blob over the distribution API; returns its digest.
    pub async fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        install_crypto();
        use sha2::Digest;
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(bytes));
        let http = reqwest::Client::new();
        let start = http
            .post(format!("http://{}/v2/{repo}/blobs/uploads/", self.addr))
            .send()
            .await
            .unwrap();
        assert!(start.status().is_success(), "{}", start.status());
        let location = start.headers()["location"].to_str().unwrap().to_owned();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", self.addr)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let done = http
            .put(format!("{url}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert!(done.status().is_success(), "{}", done.status());
        digest
    }

    /// Puts a manifest (or index) under a tag or digest; returns its digest.
    pub async fn put_manifest(&self, repo: &str, reference: &str, manifest: &Value) -> String {
        install_crypto();
        use sha2::Digest;
        let bytes = serde_json::to_vec(manifest).unwrap();
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
        let media = manifest["mediaType"].as_str().unwrap().to_owned();
        let resp = reqwest::Client::new()
            .put(format!(
                "http://{}/v2/{repo}/manifests/{reference}",
                self.addr
            ))
            .header("content-type", media)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "{}: {}",
            resp.status(),
            resp.text().await.unwrap()
        );
        digest
    }

    /// Attaches `report` with oras-py (third-party client; referrers API only).
    pub fn oras_attach(&self, repo_digest: &str, report: &Path, created: &str) {
        let out = Command::new("python3")
            .arg(repo_root().join("e2e/tools/oras_attach.py"))
            .arg(format!("{}/{repo_digest}", self.addr))
            .arg(report)
            .args(["--created", created])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "oras_attach: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn auth_file(addr: &str, user: &str, pass: &str) -> PathBuf {
    use base64::Engine;
    let path = std::env::temp_dir().join(format!("portcullis-auth-{addr}.json").replace(':', "_"));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(&path, json!({"auths": {addr: {"auth": auth}}}).to_string()).unwrap();
    path
}

/// A distribution token server (the protocol Docker Hub, GHCR and Harbor
/// use): checks basic credentials, issues ES256 JWTs carrying the signing
/// certificate in `x5c`, which the registry trusts through `rootcertbundle`.
pub struct TokenServer {
    pub addr: String,
    pub cert_pem: String,
    /// Authorization headers received.
    pub authorizations: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    pub async fn start(user: &str, password: &str) -> TokenServer {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["portcullis-test-issuer".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_der = STANDARD.encode(cert.der());
        let rng = ring::rand::SystemRandom::new();
        let signer = Arc::new(
            ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &key.serialize_der(),
                &rng,
            )
            .unwrap(),
        );
        let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        let authorizations: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = authorizations.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::get(move |headers: axum::http::HeaderMap, axum::extract::RawQuery(query): axum::extract::RawQuery| {
                let (signer, expected, seen, cert_der) = (signer.clone(), expected.clone(), seen.clone(), cert_der.clone());
                async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    seen.lock().unwrap().push(auth.clone());
                    if auth != expected {
                        return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                    }
                    let query = query.unwrap_or_default();
                    let scope = query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("scope="))
                        .map(|s| s.replace("%3A", ":").replace("%2F", "/").replace("%2C", ","))
                        .unwrap_or_default();
                    let repo = scope.split(':').nth(1).unwrap_or_default().to_owned();
                    let actions: Vec<&str> = scope.split(':').nth(2).unwrap_or("pull").split(',').collect();
                    let now = jiff::Timestamp::now().as_second();
                    let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [cert_der]});
                    let claims = json!({
                        "iss": "portcullis-test-issuer", "sub": "alice", "aud": "portcullis-test",
                        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{repo}"),
                        "access": [{"type": "repository", "name": repo, "actions": actions}],
                    });
                    let signing_input = format!(
                        "{}.{}",
                        URL_SAFE_NO_PAD.encode(header.to_string()),
                        URL_SAFE_NO_PAD.encode(claims.to_string())
                    );
                    let sig = signer.sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes()).unwrap();
                    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
                    (axum::http::StatusCode::OK, json!({"token": token, "expires_in": 300}).to_string())
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        TokenServer {
            addr,
            cert_pem: cert.pem(),
            authorizations,
        }
    }
}

/// Pass in `args` to return before `/readyz` answers 200 (the flag itself is
/// not given to the binary).
pub const NO_WAIT: &str = "--test-no-wait";

/// The webhook binary, serving TLS with a fresh self-signed certificate.
pub struct Webhook {
    pub port: u16,
    pub metrics_port: u16,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The serving certificate (PEM), for raw TLS clients.
    pub cert_pem: String,
    log: PathBuf,
    proc: Proc,
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Webhook {
    /// Starts the webhook with `policies` (YAML documents) and extra flags.
    pub fn start(policies: &str, registry_config: Option<&str>, args: &[&str]) -> Webhook {
        Self::start_with(&[("rules.yaml", policies)], registry_config, args)
    }

    /// Starts the webhook with several policy files.
    pub fn start_with(
        policy_files: &[(&str, &str)],
        registry_config: Option<&str>,
        args: &[&str],
    ) -> Webhook {
        install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        std::fs::write(dir.path().join("tls.crt"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        for (name, text) in policy_files {
            std::fs::write(dir.path().join("policies").join(name), text).unwrap();
        }
        let port = free_port();
        let metrics_port = free_port();
        let log = dir.path().join("webhook.log");
        let mut cmd = Command::new(bin("portcullis-webhook"));
        // As the container image sets it (Dockerfile).
        cmd.env("MIMALLOC_ARENA_EAGER_COMMIT", "0");
        cmd.arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--metrics-listen=127.0.0.1:{metrics_port}"))
            .arg(format!(
                "--tls-cert={}",
                dir.path().join("tls.crt").display()
            ))
            .arg(format!(
                "--tls-key={}",
                dir.path().join("tls.key").display()
            ))
            .arg(format!(
                "--policy-dir={}",
                dir.path().join("policies").display()
            ))
            .args(args.iter().filter(|a| **a != NO_WAIT))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(rc) = registry_config {
            std::fs::write(dir.path().join("registry.yaml"), rc).unwrap();
            cmd.arg(format!(
                "--registry-config={}",
                dir.path().join("registry.yaml").display()
            ));
        }
        let child = cmd.spawn().unwrap();
        let proc = Proc(child);
        if !args.contains(&NO_WAIT) {
            wait_http(
                &format!("http://127.0.0.1:{metrics_port}/readyz"),
                "portcullis-webhook",
            );
        }
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        Webhook {
            port,
            metrics_port,
            client,
            dir,
            cert_pem: cert.cert.pem(),
            log,
            proc,
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// A field of `/proc/<pid>/status` in kB (`VmHWM`, `VmRSS`) or as a
    /// count (`Threads`).
    pub fn status(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Sends SIGTERM and returns how long the process took to exit.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        loop {
            if self.proc.0.try_wait().unwrap().is_some() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the webhook did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the health port; the status code, or 0 when unreachable.
    pub async fn health(&self, path: &str) -> u16 {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        match client
            .get(format!("http://127.0.0.1:{}{path}", self.metrics_port))
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// A TLS connector trusting this webhook's certificate.
    pub fn tls_connector(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
    }

    /// POSTs raw bytes to /validate.
    pub async fn post(&self, body: Vec<u8>) -> (u16, String) {
        let resp = self
            .client
            .post(format!("https://localhost:{}/validate", self.port))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Sends an AdmissionReview for `object` and returns its `response`.
    pub async fn review(&self, operation: &str, object: &Value, old: Option<&Value>) -> Value {
        let review = review_for(operation, object, old);
        let (status, body) = self.post(serde_json::to_vec(&review).unwrap()).await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["response"]["uid"], review["request"]["uid"]);
        v["response"].clone()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An AdmissionReview as the API server sends it.
pub fn review_for(operation: &str, object: &Value, old: Option<&Value>) -> Value {
    let kind = object["kind"].as_str().unwrap();
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = format!("{}s", kind.to_lowercase());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{}", free_port()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "e2e"},
            "object": object,
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false
        }
    })
}

/// A real object from kubectl (`kubectl create ... --dry-run=client -o json`),
/// placed in `namespace`.
pub fn kubectl(args: &[&str], namespace: &str) -> Value {
    require("kubectl");
    let out = Command::new("kubectl")
        .arg("create")
        .args(args)
        .args(["--dry-run=client", "-o", "json", "-n", namespace])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["metadata"]["namespace"] = namespace.into();
    v
}

/// A fault injected by the proxy for requests whose path contains a marker.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Never answer.
    Hang,
    /// Answer with this status.
    Status(u16),
    /// 429 with `Retry-After: n`.
    Throttle(u32),
    /// Replace the body (headers kept, digest header included).
    Garbage,
    /// Answer 200 with this many bytes.
    Oversize(usize),
    /// Flip one byte of the body.
    Corrupt,
    /// Demand a bearer token from this realm.
    BearerRealm(String),
    /// Add this much latency, then forward.
    Delay(Duration),
    /// Answer 307 to this location.
    Redirect(String),
}

/// A fault-injecting HTTP proxy in front of a real registry; it also counts
/// requests per path and records Authorization headers.
pub struct FaultProxy {
    pub addr: String,
    pub rules: Arc<Mutex<Vec<(String, Fault)>>>,
    pub seen: Arc<Mutex<HashMap<String, usize>>>,
    pub authorizations: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        install_crypto();
        use axum::body::Body;
        use axum::extract::Request;
        use axum::response::Response;
        let rules: Arc<Mutex<Vec<(String, Fault)>>> = Arc::default();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let authorizations: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_owned();
        let http = reqwest::Client::new();
        let (r, s, a) = (rules.clone(), seen.clone(), authorizations.clone());
        let app = axum::Router::new().fallback(move |req: Request| {
            let (rules, seen, auths, http, upstream) = (
                r.clone(),
                s.clone(),
                a.clone(),
                http.clone(),
                upstream.clone(),
            );
            async move {
                let path = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                *seen.lock().unwrap().entry(path.clone()).or_default() += 1;
                if let Some(h) = req.headers().get("authorization") {
                    auths
                        .lock()
                        .unwrap()
                        .push(h.to_str().unwrap_or_default().to_owned());
                }
                let fault = rules
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(m, _)| path.contains(m.as_str()))
                    .map(|(_, f)| f.clone());
                let reply = |status: u16, body: Vec<u8>| {
                    Response::builder()
                        .status(status)
                        .body(Body::from(body))
                        .unwrap()
                };
                match &fault {
                    Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
                    Some(Fault::Hang) => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return reply(200, Vec::new());
                    }
                    Some(Fault::Status(code)) => return reply(*code, b"injected".to_vec()),
                    Some(Fault::Throttle(secs)) => {
                        return Response::builder()
                            .status(429)
                            .header("retry-after", secs.to_string())
                            .body(Body::empty())
                            .unwrap();
                    }
                    Some(Fault::Oversize(n)) => return reply(200, vec![b' '; *n]),
                    Some(Fault::Redirect(location)) => {
                        return Response::builder()
                            .status(307)
                            .header("location", location.as_str())
                            .body(Body::empty())
                            .unwrap();
                    }
                    Some(Fault::BearerRealm(realm))
                        if !req.headers().contains_key("authorization") =>
                    {
                        return Response::builder()
                            .status(401)
                            .header(
                                "www-authenticate",
                                format!("Bearer realm=\"{realm}\",service=\"test\""),
                            )
                            .body(Body::empty())
                            .unwrap();
                    }
                    _ => {}
                }
                let mut up = http.get(format!("http://{upstream}{path}"));
                for (k, v) in req.headers() {
                    if k != "host" {
                        up = up.header(k, v);
                    }
                }
                let resp = match up.send().await {
                    Ok(r) => r,
                    Err(e) => return reply(502, e.to_string().into_bytes()),
                };
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let mut body = resp.bytes().await.unwrap_or_default().to_vec();
                match fault {
                    Some(Fault::Garbage) => {
                        body = b"<html>definitely not a manifest</html>".to_vec()
                    }
                    Some(Fault::Corrupt) if !body.is_empty() => body[0] ^= 0x20,
                    _ => {}
                }
                let mut builder = Response::builder().status(status);
                for (k, v) in &headers {
                    if k != "content-length" && k != "transfer-encoding" {
                        builder = builder.header(k, v);
                    }
                }
                builder.body(Body::from(body)).unwrap()
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultProxy {
            addr,
            rules,
            seen,
            authorizations,
        }
    }

    pub fn inject(&self, marker: &str, fault: Fault) {
        self.rules.lock().unwrap().push((marker.to_owned(), fault));
    }

    pub fn count(&self, marker: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.contains(marker))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Runs e2e/tools/sign.py (PyPI `cryptography`, an independent signer).
pub fn sign(args: &[&str]) {
    let out = Command::new("python3")
        .arg(repo_root().join("e2e/tools/sign.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sign.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Test policies: deny Critical, audit High, block unscanned images in `strict`.
pub const POLICIES: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {name: deny-critical}
spec:
  action: Deny
  priority: 10
  conditions: {maxAllowedSeverities: {critical: 0}}
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {name: audit-high}
spec:
  action: Audit
  conditions: {maxAllowedSeverities: {high: 0}}
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {name: strict-scanned}
spec:
  action: Deny
  priority: 5
  scope: [{matcherType: Namespace, values: [strict]}]
  conditions: {}
  findings: {blockUnscannedImages: true}
"#;
