//! Shared by the `bench_*` examples (not an example itself): seeding a real
//! registry over the distribution API, generated Grype reports, the TLS
//! floor, wrk, `/proc` readings and `perf record`.
//!
//! Every benchmark drives the real `portcullis-webhook` binary from the same
//! target directory (`cargo build --release -p portcullis-webhook --bins
//! --examples`), started by `tests/support` exactly as the end-to-end tests
//! start it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const FINDINGS_TYPE: &str = "application/vnd.portcullis.findings.v1+json";
pub const DSSE_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Pushes images and referrers straight over the distribution API (what
/// skopeo and `portcullis-attach` do, minus a process per push, so 10,000
/// images take seconds). `fallback`: also maintain the `sha256-<hex>` tag
/// index, for registries without the referrers API (distribution 2.8).
#[derive(Clone)]
pub struct Seeder {
    http: reqwest::Client,
    base: String,
    pub fallback: bool,
}

/// A pushed manifest: digest, size, media type.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: String,
    pub size: usize,
    pub media_type: &'static str,
}

impl Seeder {
    pub fn new(addr: &str, fallback: bool) -> Seeder {
        crate::support::install_crypto();
        Seeder {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            base: format!("http://{addr}"),
            fallback,
        }
    }

    pub async fn blob(&self, repo: &str, bytes: &[u8]) -> (String, usize) {
        let digest = sha256(bytes);
        let head = self
            .http
            .head(format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .send()
            .await
            .unwrap();
        if head.status().is_success() {
            return (digest, bytes.len());
        }
        let start = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .send()
            .await
            .unwrap();
        assert!(start.status().is_success(), "{}", start.status());
        let location = start.headers()["location"].to_str().unwrap().to_owned();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let done = self
            .http
            .put(format!("{url}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert!(done.status().is_success(), "{}", done.status());
        (digest, bytes.len())
    }

    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &'static str,
        bytes: Vec<u8>,
    ) -> Pushed {
        let digest = sha256(&bytes);
        let size = bytes.len();
        let resp = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("content-type", media_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "{}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        Pushed {
            digest,
            size,
            media_type,
        }
    }

    /// A single-platform image whose config names `seed`, so every digest differs.
    pub async fn image(&self, repo: &str, tag: &str, seed: &str) -> Pushed {
        let layer = b"portcullis benchmark layer (not a real tar)".to_vec();
        let (layer_digest, layer_size) = self.blob(repo, &layer).await;
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"bench": seed}},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))
        .unwrap();
        let (config_digest, config_size) = self.blob(repo, &config).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
        });
        self.manifest(
            repo,
            tag,
            OCI_MANIFEST,
            serde_json::to_vec(&manifest).unwrap(),
        )
        .await
    }

    /// Attaches `content` to `subject` as `portcullis-attach` does: an
    /// artifact manifest with `subject`, and on registries without the
    /// referrers API the fallback tag index (this seeder attaches one
    /// artifact per subject, so the index is written whole).
    pub async fn attach(
        &self,
        repo: &str,
        subject: &Pushed,
        content: &[u8],
        artifact_type: &str,
        layer_type: &str,
        created: &str,
    ) -> Pushed {
        let (empty_digest, empty_size) = self.blob(repo, b"{}").await;
        let (digest, size) = self.blob(repo, content).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY, "digest": empty_digest, "size": empty_size},
            "layers": [{"mediaType": layer_type, "digest": digest, "size": size}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
            "annotations": {"org.opencontainers.image.created": created},
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let artifact = self
            .manifest(repo, &sha256(&bytes), OCI_MANIFEST, bytes)
            .await;
        if self.fallback {
            let index = json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [{
                    "mediaType": OCI_MANIFEST,
                    "digest": artifact.digest,
                    "size": artifact.size,
                    "artifactType": artifact_type,
                    "annotations": {"org.opencontainers.image.created": created},
                }],
            });
            self.manifest(
                repo,
                &subject.digest.replacen(':', "-", 1),
                OCI_INDEX,
                serde_json::to_vec(&index).unwrap(),
            )
            .await;
        }
        artifact
    }
}

/// xorshift64*: reproducible reports without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The vulnerability ID of pool entry `i`: CVE IDs with a share of GHSA IDs,
/// as Grype reports them.
pub fn vulnerability_id(i: usize) -> String {
    if i % 10 == 9 {
        const A: &[u8] = b"23456789cfghjmpqrvwx";
        let c = |k: usize| A[(i / 10 * 7 + k * 13) % A.len()] as char;
        format!(
            "GHSA-{}{}{}{}-{}{}{}{}-{}{}{}{}",
            c(0),
            c(1),
            c(2),
            c(3),
            c(4),
            c(5),
            c(6),
            c(7),
            c(8),
            c(9),
            c(10),
            c(11)
        )
    } else {
        format!("CVE-{}-{}", 2014 + i % 12, 10_000 + i)
    }
}

/// Severity of pool entry `i` (fixed per ID, as a real database has it):
/// about 3% Critical, 15% High, 40% Medium, 30% Low, 12% Negligible/Unknown.
pub fn severity_of(i: usize) -> &'static str {
    match (i.wrapping_mul(2_654_435_761) >> 7) % 100 {
        0..=2 => "Critical",
        3..=17 => "High",
        18..=57 => "Medium",
        58..=87 => "Low",
        88..=95 => "Negligible",
        _ => "Unknown",
    }
}

/// A Grype JSON report of `findings` matches whose IDs come from a pool of
/// `pool` IDs and whose packages come from `packages` names; about 60% have
/// a fix. `rng` makes each report different.
pub fn grype_report(rng: &mut Rng, findings: usize, pool: usize, packages: usize) -> Vec<u8> {
    let mut matches = Vec::with_capacity(findings);
    for _ in 0..findings {
        let i = rng.below(pool);
        let p = rng.below(packages);
        let fixed = rng.below(10) < 6;
        let fix = if fixed {
            json!({"versions": [format!("{}.{}.{}", p % 7, i % 13 + 1, 4)], "state": "fixed"})
        } else {
            json!({"versions": [], "state": "not-fixed"})
        };
        matches.push(json!({
            "vulnerability": {
                "id": vulnerability_id(i),
                "severity": severity_of(i),
                "fix": fix,
            },
            "artifact": {
                "name": format!("lib{}-{}", ["ssl", "xml", "curl", "gnutls", "sqlite", "pcre", "zstd", "krb5"][p % 8], p),
                "version": format!("{}.{}.{}", p % 7, i % 13, 1),
                "purl": format!("pkg:deb/debian/lib{}@{}.{}.1?distro=debian-12", p, p % 7, i % 13),
            },
        }));
    }
    serde_json::to_vec(&json!({
        "matches": matches,
        "source": {"type": "image"},
        "descriptor": {"name": "grype", "version": "0.87.0", "timestamp": "2026-11-20T10:00:00Z"},
    }))
    .unwrap()
}

/// The transport floor: a bare rustls + hyper HTTP/1.1 server (the stack the
/// webhook's own server is written on), same certificate, no connection
/// bounds or timers. For each request it reads the whole body, finds the
/// review's `request.uid` by a byte search and answers a fixed allow that
/// echoes it. Runs on the caller's runtime; returns its port.
pub async fn start_floor(cert: &Path, key: &Path) -> u16 {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tls), hyper::service::service_fn(floor))
                    .await;
            });
        }
    });
    port
}

async fn floor(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let uid = find_uid(&body);
    let json = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":"{uid}","allowed":true}}}}"#
    );
    let mut resp = Response::new(Full::new(Bytes::from(json)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `request.uid`: the first `"uid":"` after `"request":` (the API server
/// writes `uid` first in the request).
fn find_uid(body: &[u8]) -> &str {
    let Some(r) = find(body, b"\"request\":") else {
        return "";
    };
    let rest = &body[r..];
    let Some(u) = find(rest, b"\"uid\":\"") else {
        return "";
    };
    let value = &rest[u + 7..];
    let end = value.iter().position(|b| *b == b'"').unwrap_or(0);
    std::str::from_utf8(&value[..end]).unwrap_or("")
}

/// What wrk measured.
#[derive(Debug, Clone, Default)]
pub struct Load {
    pub rps: f64,
    /// Requests completed in the run.
    pub requests: u64,
    pub p50: String,
    pub p99: String,
    pub errors: Option<String>,
}

/// Where the load generator and the server run: shared (every process on
/// every core, as the two share a small machine) or pinned (wrk on CPU 0,
/// the server measured on CPU 1: a load generator with its own core, as on a
/// separate machine, and a server with exactly one core).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Shared,
    Pinned,
}

impl Placement {
    /// Puts every thread of `pid` where the server belongs.
    pub fn place_server(self, pid: u32) {
        let cpus = match self {
            Placement::Shared => "0-1023",
            Placement::Pinned => "1",
        };
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("taskset (util-linux)");
        assert!(status.success(), "taskset -p {pid}");
    }
}

/// wrk, 2 threads, keep-alive connections, POSTing `body` (written to a Lua script).
pub fn wrk(url: &str, body: &str, connections: usize, seconds: u64) -> Load {
    wrk_placed(url, body, connections, seconds, Placement::Shared)
}

/// [`wrk`], on CPU 0 when `placement` is pinned.
pub fn wrk_placed(
    url: &str,
    body: &str,
    connections: usize,
    seconds: u64,
    placement: Placement,
) -> Load {
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("post.lua");
    std::fs::write(
        &lua,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = {}\n",
            serde_json::to_string(body).unwrap()
        ),
    )
    .unwrap();
    let mut command = match placement {
        Placement::Shared => Command::new("wrk"),
        Placement::Pinned => {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", "wrk"]);
            c
        }
    };
    let out = command
        .args(["-t2", "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency", "-s"])
        .arg(&lua)
        .arg(url)
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let pct = |p: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .unwrap_or_default()
    };
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(str::to_owned);
    // "123456 requests in 10.00s, 45.67MB read"
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Load {
        rps,
        requests,
        p50: pct("50%"),
        p99: pct("99%"),
        errors,
    }
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// `/proc/<pid>/stat` (clock ticks of 1/100 s).
pub fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; count from the ')'.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11, 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `perf record -e cpu-clock --call-graph dwarf` on `pid` for `seconds`, in
/// the background; wait on the returned child.
pub fn perf_record(pid: u32, seconds: u64, out: &Path) -> std::process::Child {
    Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "--call-graph",
            "dwarf,16384",
        ])
        .args(["-p", &pid.to_string(), "-o"])
        .arg(out)
        .args(["--", "sleep", &seconds.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("perf (apt-get install linux-perf)")
}

/// A realistic Pod as a ReplicaSet's controller creates it from a
/// `kubectl create deployment` template, fleshed out as real deployments
/// are: env, ports, resources, probes, volume mounts, security context,
/// projected service-account token. `images[0]` is an init container when
/// there are three or more images.
pub fn realistic_pod(namespace: &str, images: &[String]) -> Value {
    let container = |name: &str, image: &str| {
        json!({
            "name": name,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "env": [
                {"name": "LOG_LEVEL", "value": "info"},
                {"name": "HTTP_PORT", "value": "8080"},
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability:4317"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "checkout-db", "key": "password"}}},
            ],
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/checkout", "readOnly": true},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "kube-api-access-7xk2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
            ],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        })
    };
    let (init, main) = if images.len() >= 3 {
        (&images[..1], &images[1..])
    } else {
        (&images[..0], images)
    };
    let containers: Vec<Value> = main
        .iter()
        .enumerate()
        .map(|(i, image)| {
            container(
                &if i == 0 {
                    "app".to_owned()
                } else {
                    format!("sidecar-{i}")
                },
                image,
            )
        })
        .collect();
    let init: Vec<Value> = init
        .iter()
        .map(|image| {
            json!({
                "name": "migrate", "image": image, "command": ["/bin/migrate", "--wait"],
                "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "checkout-7d9f8b6c5-",
            "namespace": namespace,
            "labels": {"app": "checkout", "app.kubernetes.io/name": "checkout", "app.kubernetes.io/part-of": "shop", "pod-template-hash": "7d9f8b6c5"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-20T10:00:00Z", "prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8b6c5", "uid": "0b5c3a3e-4a7c-4f3e-9d2b-6f1f0e3c2a11", "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "initContainers": init,
            "containers": containers,
            "volumes": [
                {"name": "config", "configMap": {"name": "checkout-config", "defaultMode": 420}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                {"name": "kube-api-access-7xk2p", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ]}},
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "checkout",
            "serviceAccount": "checkout",
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ],
        },
    })
}

/// An AdmissionReview for a Pod CREATE as the API server writes it (field
/// order of `admission/v1`: `uid` first), from the ReplicaSet controller.
pub fn pod_review(pod: &Value, uid: &str) -> String {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    format!(
        concat!(
            r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"{uid}","#,
            r#""kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"#,
            r#""requestKind":{{"group":"","version":"v1","kind":"Pod"}},"requestResource":{{"group":"","version":"v1","resource":"pods"}},"#,
            r#""namespace":"{ns}","operation":"CREATE","#,
            r#""userInfo":{{"username":"system:serviceaccount:kube-system:replicaset-controller","uid":"4f1c2e8a-0d7e-4e55-9a53-2c7f3d1b9e01","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]}},"#,
            r#""object":{object},"oldObject":null,"dryRun":false,"#,
            r#""options":{{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}}}}"#
        ),
        uid = uid,
        ns = namespace,
        object = serde_json::to_string(pod).unwrap(),
    )
}
