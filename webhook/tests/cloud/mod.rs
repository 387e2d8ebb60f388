//! Local stand-ins for the clouds' identity services and registry fronts,
//! speaking their real wire formats over TLS under their real host names
//! (the webhook reaches them through `--resolve`, trusting a test CA with
//! `--registry-ca`). Every request is recorded so tests can assert exactly
//! what was sent where.
//!
//! Registry fronts sit in front of a real distribution registry with token
//! authentication (`support::TokenServer`): they play the cloud's side of the
//! registry protocol (ACR's `/oauth2/exchange` and `/oauth2/token`, Artifact
//! Registry's `/v2/token`, ECR's basic challenge) and hand the registry's
//! own bearer tokens through, so the registry checks every read.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// A request as a fake service received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// The form fields of an `application/x-www-form-urlencoded` body.
    pub fn form(&self) -> BTreeMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
}

/// An answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
        }
    }
    pub fn xml(status: u16, text: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/xml".into())],
            body: text.as_bytes().to_vec(),
        }
    }
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
}

pub type Handler =
    Arc<dyn Fn(Recorded) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Recorded) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    Arc::new(move |r| Box::pin(f(r)))
}

/// A test CA and one serving certificate for every name the tests use.
pub struct Pki {
    pub ca_file: PathBuf,
    cert_pem: String,
    key_pem: String,
    _dir: tempfile::TempDir,
}

impl Pki {
    pub fn new(names: &[&str]) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portcullis test clouds CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            ca_file,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            _dir: dir,
        }
    }
}

/// A fake service: its address, the name it plays, what it received.
pub struct Fake {
    pub name: String,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Recorded>>>,
}

impl Fake {
    /// Serves `handler` over TLS as `name` (which `pki` must cover).
    pub async fn https(pki: &Pki, name: &str, handler: Handler) -> Fake {
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
            pki.cert_pem.clone().into_bytes(),
            pki.key_pem.clone().into_bytes(),
        )
        .await
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (router, log) = router(handler);
        let server = axum_server::tls_rustls::from_tcp_rustls(listener, config).unwrap();
        tokio::spawn(async move { server.serve(router.into_make_service()).await });
        Fake {
            name: name.to_owned(),
            addr,
            log,
        }
    }

    /// Serves `handler` over plain HTTP at `bind` (an identity agent).
    pub async fn http(bind: &str, handler: Handler) -> Fake {
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (router, log) = router(handler);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Fake {
            name: addr.to_string(),
            addr,
            log,
        }
    }

    /// `--resolve` for the webhook: the name to this fake.
    pub fn resolve(&self) -> String {
        format!("--resolve={}={}", self.name, self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// Every Authorization header received.
    pub fn authorizations(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r.header("authorization").to_owned())
            .filter(|a| !a.is_empty())
            .collect()
    }
}

fn router(handler: Handler) -> (axum::Router, Arc<Mutex<Vec<Recorded>>>) {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;
    let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let seen = log.clone();
    let router = axum::Router::new().fallback(move |req: Request| {
        let (handler, seen) = (handler.clone(), seen.clone());
        async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or_default().to_owned();
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap();
            let recorded = Recorded {
                method,
                path,
                query,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            seen.lock().unwrap().push(recorded.clone());
            let reply = handler(recorded).await;
            let mut b = Response::builder().status(reply.status);
            for (k, v) in &reply.headers {
                b = b.header(k, v);
            }
            b.body(Body::from(reply.body)).unwrap()
        }
    });
    (router, log)
}

/// The registry protocol a front plays.
#[derive(Clone)]
pub enum Front {
    /// ACR: `/oauth2/exchange` (Entra token → refresh token), `/oauth2/token`
    /// (the refresh token with ACR's null user → a registry token).
    Acr {
        tenant: String,
        entra_token: String,
        refresh_token: String,
    },
    /// Artifact Registry: `/v2/token` (`oauth2accesstoken` and one of these
    /// Google access tokens → a registry token).
    Gar {
        access_tokens: Arc<Mutex<HashSet<String>>>,
    },
    /// ECR: basic `AWS:<password>` on every request, one of the passwords
    /// the ECR API issued.
    Ecr {
        passwords: Arc<Mutex<HashSet<String>>>,
    },
    /// A host that must never receive credentials: it asks for basic
    /// credentials, records and refuses whatever it gets.
    Recording,
}

/// The real registry behind a front: distribution with token auth, its
/// token server, and the credentials that token server accepts.
#[derive(Clone)]
pub struct Upstream {
    pub registry: String,
    pub tokens: String,
    pub user: String,
    pub password: String,
}

/// A registry front at `host`, playing `front` over `upstream`.
pub async fn registry_front(
    pki: &Pki,
    host: &str,
    front: Front,
    upstream: Option<&Upstream>,
) -> Fake {
    let http = reqwest::Client::new();
    let upstream = upstream.cloned();
    let me = host.to_owned();
    Fake::https(
        pki,
        host,
        handler(move |r: Recorded| {
            let (front, http, upstream, me) = (front.clone(), http.clone(), upstream.clone(), me.clone());
            async move {
                let basic_challenge = || {
                    Reply::status(401).with_header("www-authenticate", &format!("Basic realm=\"https://{me}/\""))
                };
                let (Some(up), false) = (upstream, matches!(front, Front::Recording)) else {
                    return basic_challenge();
                };
                let given = basic_credentials_of(r.header("authorization"));
                // A registry token from the real token server, for the
                // scope asked (or the repository of the path).
                let registry_token = |scope: String| {
                    let (http, up) = (http.clone(), up.clone());
                    async move {
                        let v: Value = http
                            .get(format!("http://{}/token", up.tokens))
                            .query(&[("service", "portcullis-test"), ("scope", scope.as_str())])
                            .header("authorization", basic(&up.user, &up.password))
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        v["token"].as_str().unwrap().to_owned()
                    }
                };
                let scope = || {
                    url::form_urlencoded::parse(r.query.as_bytes())
                        .find(|(k, _)| k == "scope")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                };
                match (&front, r.method.as_str(), r.path.as_str()) {
                    (Front::Acr { tenant, entra_token, refresh_token }, "POST", "/oauth2/exchange") => {
                        let f = r.form();
                        let ok = f.get("grant_type").map(String::as_str) == Some("access_token")
                            && f.get("service") == Some(&me)
                            && f.get("tenant") == Some(tenant)
                            && f.get("access_token") == Some(entra_token);
                        if ok {
                            Reply::json(200, &json!({"refresh_token": refresh_token}))
                        } else {
                            Reply::json(401, &json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad exchange"}]}))
                        }
                    }
                    (Front::Acr { refresh_token, .. }, "GET", "/oauth2/token") => {
                        if given == Some((ACR_USER.to_owned(), refresh_token.clone())) {
                            Reply::json(200, &json!({"access_token": registry_token(scope()).await}))
                        } else {
                            Reply::json(401, &json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad refresh token"}]}))
                        }
                    }
                    (Front::Gar { access_tokens }, "GET", "/v2/token") => {
                        let ok = given.is_some_and(|(u, p)| {
                            u == "oauth2accesstoken" && access_tokens.lock().unwrap().contains(&p)
                        });
                        if ok {
                            Reply::json(200, &json!({"token": registry_token(scope()).await, "expires_in": 300}))
                        } else {
                            Reply::json(403, &json!({"errors": [{"code": "DENIED", "message": "bad access token"}]}))
                        }
                    }
                    (Front::Ecr { passwords }, _, _) => {
                        let ok = given.is_some_and(|(u, p)| u == "AWS" && passwords.lock().unwrap().contains(&p));
                        if !ok {
                            return Reply::status(401).with_header(
                                "www-authenticate",
                                &format!("Basic realm=\"https://{me}/\",service=\"ecr.amazonaws.com\""),
                            );
                        }
                        let bearer = format!(
                            "Bearer {}",
                            registry_token(format!("repository:{}:pull", repository_of(&r.path))).await
                        );
                        forward(&http, &up.registry, &r, Some(&bearer), &me, "").await
                    }
                    (Front::Acr { .. }, _, _) => forward(&http, &up.registry, &r, None, &me, "/oauth2/token").await,
                    (Front::Gar { .. }, _, _) => forward(&http, &up.registry, &r, None, &me, "/v2/token").await,
                    (Front::Recording, _, _) => basic_challenge(),
                }
            }
        }),
    )
    .await
}

/// ACR's user name for refresh tokens.
pub const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";

pub fn basic_credentials_of(header: &str) -> Option<(String, String)> {
    let text = String::from_utf8(STANDARD.decode(header.strip_prefix("Basic ")?).ok()?).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// The user and password of every basic Authorization a fake received.
pub fn basic_credentials(fake: &Fake) -> Vec<(String, String)> {
    fake.authorizations()
        .iter()
        .filter_map(|a| basic_credentials_of(a))
        .collect()
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
}

/// `/v2/<repository>/(manifests|blobs|referrers|tags)/...` → the repository.
fn repository_of(path: &str) -> String {
    let rest = path.trim_start_matches("/v2/");
    for marker in ["/manifests/", "/blobs/", "/referrers/", "/tags/"] {
        if let Some(i) = rest.find(marker) {
            return rest[..i].to_owned();
        }
    }
    String::new()
}

/// Forwards to the real registry; its bearer challenge is rewritten to
/// name this front's own token endpoint (`realm_path`), as the cloud does.
async fn forward(
    http: &reqwest::Client,
    upstream: &str,
    r: &Recorded,
    authorization: Option<&str>,
    me: &str,
    realm_path: &str,
) -> Reply {
    let url = if r.query.is_empty() {
        format!("http://{upstream}{}", r.path)
    } else {
        format!("http://{upstream}{}?{}", r.path, r.query)
    };
    let mut req = http.get(url).header("accept", r.header("accept"));
    let auth = authorization.unwrap_or(r.header("authorization"));
    if !auth.is_empty() {
        req = req.header("authorization", auth);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let mut headers = Vec::new();
    for (k, v) in resp.headers() {
        let v = v.to_str().unwrap_or("").to_owned();
        if k == "content-length" || k == "transfer-encoding" {
            continue;
        }
        if k == "www-authenticate" {
            let scope = v
                .split("scope=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("");
            headers.push((
                k.to_string(),
                format!(
                    "Bearer realm=\"https://{me}{realm_path}\",service=\"{me}\",scope=\"{scope}\""
                ),
            ));
            continue;
        }
        headers.push((k.to_string(), v));
    }
    Reply {
        status,
        headers,
        body: resp.bytes().await.unwrap().to_vec(),
    }
}

/// Entra ID's token endpoint (client credentials with a client assertion).
pub async fn entra(pki: &Pki, tenant: &str, client: &str, assertion: &str, token: &str) -> Fake {
    let (path, client, assertion, token) = (
        format!("/{tenant}/oauth2/v2.0/token"),
        client.to_owned(),
        assertion.to_owned(),
        token.to_owned(),
    );
    Fake::https(
        pki,
        "login.microsoftonline.com",
        handler(move |r: Recorded| {
            let f = r.form();
            let ok = r.method == "POST"
                && r.path == path
                && f.get("client_id") == Some(&client)
                && f.get("grant_type").map(String::as_str) == Some("client_credentials")
                && f.get("scope").map(String::as_str) == Some("https://containerregistry.azure.net/.default")
                && f.get("client_assertion_type").map(String::as_str)
                    == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                && f.get("client_assertion") == Some(&assertion);
            let reply = if ok {
                Reply::json(200, &json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}))
            } else {
                Reply::json(400, &json!({"error": "invalid_client", "error_description": "AADSTS700016: unexpected request"}))
            };
            async move { reply }
        }),
    )
    .await
}

/// Role credentials an AWS stand-in hands out.
#[derive(Clone)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl AwsKeys {
    pub fn new(tag: &str) -> AwsKeys {
        AwsKeys {
            access_key_id: format!("ASIA{}", tag.to_uppercase()),
            secret_access_key: format!("secret/{tag}+key"),
            session_token: format!("session-token-{tag}"),
        }
    }
}

/// STS `AssumeRoleWithWebIdentity` (query protocol, XML answer), accepting
/// `web_identity_token` for `role_arn`.
pub async fn aws_sts(
    pki: &Pki,
    region: &str,
    role_arn: &str,
    web_identity_token: &str,
    keys: AwsKeys,
) -> Fake {
    let (role_arn, web_identity_token) = (role_arn.to_owned(), web_identity_token.to_owned());
    Fake::https(
        pki,
        &format!("sts.{region}.amazonaws.com"),
        handler(move |r: Recorded| {
            let f = r.form();
            let ok = r.method == "POST"
                && r.path == "/"
                && f.get("Action").map(String::as_str) == Some("AssumeRoleWithWebIdentity")
                && f.get("Version").map(String::as_str) == Some("2011-06-15")
                && f.get("RoleArn") == Some(&role_arn)
                && f.get("WebIdentityToken") == Some(&web_identity_token)
                && f.contains_key("RoleSessionName");
            let expiration = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
            let reply = if ok {
                Reply::xml(200, &format!(r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:portcullis:portcullis-webhook</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser><Arn>{role_arn}/portcullis-webhook</Arn><AssumedRoleId>AROATEST:portcullis-webhook</AssumedRoleId></AssumedRoleUser>
    <Credentials>
      <SessionToken>{}</SessionToken>
      <SecretAccessKey>{}</SecretAccessKey>
      <Expiration>{}</Expiration>
      <AccessKeyId>{}</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::111111111111:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/TEST</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#, keys.session_token, keys.secret_access_key, expiration.strftime("%Y-%m-%dT%H:%M:%SZ"), keys.access_key_id))
            } else {
                Reply::xml(400, r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>unexpected request</Message></Error><RequestId>x</RequestId></ErrorResponse>"#)
            };
            async move { reply }
        }),
    )
    .await
}

/// ECR's API (`GetAuthorizationToken`, JSON 1.1). Each call issues a new
/// password, valid `valid_for` seconds, added to `passwords` (which the
/// region's registry fronts accept). The signature is checked by the test.
pub async fn ecr_api(
    pki: &Pki,
    region: &str,
    tag: &str,
    valid_for: i64,
    passwords: Arc<Mutex<HashSet<String>>>,
) -> Fake {
    let counter = Arc::new(Mutex::new(0u32));
    let tag = tag.to_owned();
    Fake::https(
        pki,
        &format!("api.ecr.{region}.amazonaws.com"),
        handler(move |r: Recorded| {
            let ok = r.method == "POST"
                && r.path == "/"
                && r.header("x-amz-target") == "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
                && r.header("content-type") == "application/x-amz-json-1.1"
                && r.header("authorization").starts_with("AWS4-HMAC-SHA256 ");
            let reply = if ok {
                let n = {
                    let mut c = counter.lock().unwrap();
                    *c += 1;
                    *c
                };
                let password = format!("{tag}-password-{n}");
                passwords.lock().unwrap().insert(password.clone());
                let expires = jiff::Timestamp::now().as_second() + valid_for;
                Reply::json(200, &json!({"authorizationData": [{
                    "authorizationToken": STANDARD.encode(format!("AWS:{password}")),
                    "expiresAt": expires as f64,
                    "proxyEndpoint": "https://111111111111.dkr.ecr.us-east-1.amazonaws.com",
                }]}))
            } else {
                Reply::json(400, &json!({"__type": "InvalidSignatureException", "message": "unexpected request"}))
            };
            async move { reply }
        }),
    )
    .await
}

/// The EKS Pod Identity agent at `bind` (plain HTTP), accepting `token`.
pub async fn eks_agent(bind: &str, token: &str, keys: AwsKeys) -> Fake {
    let token = token.to_owned();
    Fake::http(
        bind,
        handler(move |r: Recorded| {
            let reply = if r.method == "GET"
                && r.path == "/v1/credentials"
                && r.header("authorization") == token
            {
                let expiration = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(6);
                Reply::json(
                    200,
                    &json!({
                        "AccessKeyId": keys.access_key_id,
                        "SecretAccessKey": keys.secret_access_key,
                        "Token": keys.session_token,
                        "AccountId": "111111111111",
                        "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    }),
                )
            } else {
                Reply::json(401, &json!({"Message": "invalid token"}))
            };
            async move { reply }
        }),
    )
    .await
}

/// Google STS (`/v1/token`, token exchange) accepting `subject` for
/// `audience`, answering `token`.
pub async fn google_sts(pki: &Pki, audience: &str, subject: &str, token: &str) -> Fake {
    let (audience, subject, token) = (audience.to_owned(), subject.to_owned(), token.to_owned());
    Fake::https(
        pki,
        "sts.googleapis.com",
        handler(move |r: Recorded| {
            let f = r.form();
            let field = |k: &str| f.get(k).map(String::as_str);
            let ok = r.method == "POST"
                && r.path == "/v1/token"
                && field("grant_type") == Some("urn:ietf:params:oauth:grant-type:token-exchange")
                && field("audience") == Some(audience.as_str())
                && field("requested_token_type") == Some("urn:ietf:params:oauth:token-type:access_token")
                && field("subject_token_type") == Some("urn:ietf:params:oauth:token-type:jwt")
                && field("subject_token") == Some(subject.as_str())
                && field("scope") == Some("https://www.googleapis.com/auth/cloud-platform");
            let reply = if ok {
                Reply::json(200, &json!({"access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 3600}))
            } else {
                Reply::json(400, &json!({"error": "invalid_request", "error_description": "unexpected request"}))
            };
            async move { reply }
        }),
    )
    .await
}

/// IAM Credentials `generateAccessToken` for `account`, accepting the
/// federated `bearer`, answering `token`.
pub async fn iam_credentials(pki: &Pki, account: &str, bearer: &str, token: &str) -> Fake {
    let (path, bearer, token) = (
        format!("/v1/projects/-/serviceAccounts/{account}:generateAccessToken"),
        format!("Bearer {bearer}"),
        token.to_owned(),
    );
    Fake::https(
        pki,
        "iamcredentials.googleapis.com",
        handler(move |r: Recorded| {
            let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            let ok = r.method == "POST"
                && r.path == path
                && r.header("authorization") == bearer
                && body["scope"] == json!(["https://www.googleapis.com/auth/cloud-platform"]);
            let reply = if ok {
                let expire = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
                Reply::json(200, &json!({"accessToken": token, "expireTime": expire.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}))
            } else {
                Reply::json(403, &json!({"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' denied", "status": "PERMISSION_DENIED"}}))
            };
            async move { reply }
        }),
    )
    .await
}

/// The GKE metadata server at `bind` (plain HTTP): `account`'s token with
/// `Metadata-Flavor: Google`, as GKE's serves it.
pub async fn gke_metadata(bind: &str, account: &str, token: &str) -> Fake {
    let (path, token) = (
        format!("/computeMetadata/v1/instance/service-accounts/{account}/token"),
        token.to_owned(),
    );
    Fake::http(
        bind,
        handler(move |r: Recorded| {
            let reply = if r.header("metadata-flavor") != "Google"
                || r.headers.contains_key("x-forwarded-for")
            {
                Reply::status(403)
            } else if r.method == "GET" && r.path == path {
                Reply::json(
                    200,
                    &json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
                )
                .with_header("metadata-flavor", "Google")
            } else {
                Reply::status(404)
            };
            async move { reply }
        }),
    )
    .await
}

/// Recomputes a SigV4 `Authorization` header with botocore (an independent
/// implementation) for a recorded request, signing the headers the request
/// says it signed, at the time it says.
pub fn botocore_authorization(
    r: &Recorded,
    host: &str,
    keys: &AwsKeys,
    region: &str,
    service: &str,
) -> String {
    let auth = r.header("authorization");
    let signed: Vec<&str> = auth
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
        .split(';')
        .collect();
    let headers: BTreeMap<&str, &str> = signed
        .iter()
        .filter(|h| **h != "host")
        .map(|h| (*h, r.header(h)))
        .collect();
    let input = json!({
        "method": r.method,
        "url": format!("https://{host}{}", r.path),
        "headers": headers,
        "body": r.body,
        "access_key": keys.access_key_id,
        "secret_key": keys.secret_access_key,
        "token": keys.session_token,
        "region": region,
        "service": service,
        "amz_date": r.header("x-amz-date"),
    });
    let mut child = std::process::Command::new("python3")
        .arg(crate::support::repo_root().join("e2e/tools/sigv4_check.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sigv4_check.py (botocore; `bash e2e/install-tools.sh` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
