//! AWS: ECR credentials from the webhook's IAM role.
//!
//! - IRSA (`AwsWebIdentity`): the projected ServiceAccount token
//!   (`AWS_WEB_IDENTITY_TOKEN_FILE`) → STS `AssumeRoleWithWebIdentity` for
//!   the RegistryAccess's `roleArn` → role credentials.
//! - EKS Pod Identity, where the environment provides it
//!   (`AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`
//!   and no web identity token): the agent's credentials (its association
//!   decides the role).
//! - Then ECR `GetAuthorizationToken` in the registry's region, signed with
//!   SigV4, gives basic credentials `AWS:<password>`.
//!
//! An ECR token opens every registry of its region that the role may read,
//! so it goes only to `<account>.dkr.ecr.<that region>.amazonaws.com[.cn]`
//! hosts on the default port (and, as always, only to those the
//! RegistryAccess pattern matches).
//!
//! Crates: `aws-sigv4` (the SDK's own signer, no HTTP client and no crypto
//! provider) over the webhook's guarded reqwest client. The AWS SDK proper
//! (aws-config, aws-sdk-sts, aws-sdk-ecr) was not used: without its default
//! features it has no HTTP client and would need a reqwest bridge anyway
//! (its own clients would bypass the destination guard and `--resolve`),
//! its default client pulls aws-lc-rs as a second rustls provider, and it
//! adds about 90 crates and minutes of build for three HTTP calls. STS
//! needs no signature (the web identity token is the credential); its XML
//! answer is read with roxmltree.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use portcullis_core::reference::RegistryHost;

use super::auth::Credentials;
use super::guard::AllowedDestination;
use super::identity::{IdentityError, IdentityHttp, TokenCache, form, read_token_file, until};
use crate::metrics::Metrics;

/// The role session name STS records (CloudTrail shows it).
const SESSION_NAME: &str = "portcullis-webhook";

/// AWS settings of the webhook (from the environment EKS sets up).
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// IRSA's projected token (`AWS_WEB_IDENTITY_TOKEN_FILE`).
    pub web_identity_token_file: Option<PathBuf>,
    /// Preferred STS region (`AWS_REGION`); else the registry's.
    pub region: Option<String>,
    /// EKS Pod Identity's agent, when the environment provides it.
    pub pod_identity: Option<PodIdentityAgent>,
}

/// The EKS Pod Identity agent (or the ECS container credentials endpoint).
#[derive(Debug, Clone)]
pub struct PodIdentityAgent {
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub uri: reqwest::Url,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
    pub token_file: PathBuf,
}

/// Agent addresses the guard lets the identity client reach (and nothing
/// else): EKS Pod Identity (IPv4 and IPv6) and ECS. Loopback is accepted as
/// the SDKs accept it (a local agent, and the tests).
fn is_agent_address(ip: std::net::IpAddr) -> bool {
    let known: [std::net::IpAddr; 3] = [
        std::net::IpAddr::from([169, 254, 170, 23]),
        std::net::IpAddr::from([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23]),
        std::net::IpAddr::from([169, 254, 170, 2]),
    ];
    known.contains(&ip) || ip.is_loopback()
}

impl PodIdentityAgent {
    /// Checks the URI: plain HTTP only to a known agent address.
    pub fn new(uri: &str, token_file: PathBuf) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(uri).map_err(|e| format!("{uri:?}: {e}"))?;
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        match parsed.scheme() {
            "https" => {}
            "http" if ip.is_some_and(is_agent_address) => {}
            _ => {
                return Err(format!(
                    "{uri:?}: the container credentials endpoint must be https, or http to the EKS Pod Identity agent (169.254.170.23, [fd00:ec2::23]), the ECS agent (169.254.170.2) or loopback"
                ));
            }
        }
        Ok(PodIdentityAgent {
            uri: parsed,
            token_file,
        })
    }

    /// The guard exception for the agent, for the identity client only:
    /// its address and port, when it is an agent address.
    pub fn exception(&self) -> Option<AllowedDestination> {
        let host = match self.uri.host()? {
            url::Host::Ipv4(ip) if is_agent_address(ip.into()) => ip.to_string(),
            url::Host::Ipv6(ip) if is_agent_address(ip.into()) => format!("[{ip}]"),
            _ => return None,
        };
        Some(AllowedDestination::Host {
            host,
            port: self.uri.port_or_known_default(),
        })
    }
}

/// An ECR registry host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcrRegistry {
    /// The account ID.
    pub account: String,
    /// The region.
    pub region: String,
    /// `amazonaws.com.cn` (the aws-cn partition).
    pub china: bool,
}

impl EcrRegistry {
    /// `<12 digits>.dkr.ecr.<region>.amazonaws.com[.cn]` on the default
    /// port, or `None`.
    pub fn parse(host: &RegistryHost) -> Option<Self> {
        if host.port().is_some() {
            return None;
        }
        let h = host.host();
        let (rest, china) = match h.strip_suffix(".amazonaws.com.cn") {
            Some(rest) => (rest, true),
            None => (h.strip_suffix(".amazonaws.com")?, false),
        };
        let mut labels = rest.split('.');
        let (account, dkr, ecr, region) = (
            labels.next()?,
            labels.next()?,
            labels.next()?,
            labels.next()?,
        );
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        (labels.next().is_none()
            && dkr == "dkr"
            && ecr == "ecr"
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && region_ok
            && region.starts_with("cn-") == china)
            .then(|| EcrRegistry {
                account: account.to_owned(),
                region: region.to_owned(),
                china,
            })
    }

    fn domain(&self) -> &'static str {
        if self.china {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        }
    }
}

/// Temporary AWS credentials.
#[derive(Clone)]
struct RoleCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
}

/// Which principal a set of credentials is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Principal {
    /// IRSA: this role, from STS in this region and partition.
    Role {
        arn: String,
        sts_region: String,
        china: bool,
    },
    /// EKS Pod Identity's association.
    PodIdentity,
}

/// ECR credentials for the webhook; cheap to clone.
#[derive(Clone)]
pub struct Aws {
    settings: AwsSettings,
    http: IdentityHttp,
    role_credentials: TokenCache<Principal, RoleCredentials>,
    /// `AWS:<password>` by principal and region.
    ecr_tokens: TokenCache<(Principal, String, bool), (String, String)>,
}

impl Aws {
    /// ECR credentials over `http`.
    pub fn new(settings: AwsSettings, http: IdentityHttp) -> Self {
        Aws {
            settings,
            http,
            role_credentials: TokenCache::new(256),
            ecr_tokens: TokenCache::new(1024),
        }
    }

    /// Basic credentials for `registry` as `role_arn`. `registry` must be an
    /// ECR registry; each region gets its own token from its own endpoint.
    /// A new ECR token is recorded in `metrics` for `registry_access`.
    pub async fn ecr_credentials(
        &self,
        role_arn: &str,
        registry: &RegistryHost,
        registry_access: &str,
        metrics: &Metrics,
    ) -> Result<Credentials, IdentityError> {
        let ecr = EcrRegistry::parse(registry).ok_or_else(|| IdentityError::OutOfScope {
            registry: registry.to_string(),
            what: "AWS",
            scope: "ECR registries, <account>.dkr.ecr.<region>.amazonaws.com[.cn]".into(),
        })?;
        let principal = self.principal(role_arn, &ecr)?;
        let key = (principal.clone(), ecr.region.clone(), ecr.china);
        let (username, password) = self
            .ecr_tokens
            .get(key, async {
                let result = self.fetch_ecr_token(&principal, &ecr).await;
                metrics.identity_exchange(registry_access, result.is_ok());
                result
            })
            .await?;
        Ok(Credentials::Basic { username, password })
    }

    fn principal(&self, role_arn: &str, ecr: &EcrRegistry) -> Result<Principal, IdentityError> {
        if self.settings.web_identity_token_file.is_some() {
            let sts_region = self
                .settings
                .region
                .clone()
                .filter(|r| r.starts_with("cn-") == ecr.china)
                .unwrap_or_else(|| ecr.region.clone());
            return Ok(Principal::Role {
                arn: role_arn.to_owned(),
                sts_region,
                china: ecr.china,
            });
        }
        if self.settings.pod_identity.is_some() {
            return Ok(Principal::PodIdentity);
        }
        Err(IdentityError::NotConfigured {
            what: "AWS identity",
            hint: "IRSA's AWS_WEB_IDENTITY_TOKEN_FILE (--aws-web-identity-token-file), or EKS Pod Identity's AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        })
    }

    async fn credentials(&self, principal: &Principal) -> Result<RoleCredentials, IdentityError> {
        self.role_credentials
            .get(principal.clone(), async {
                match principal {
                    Principal::Role {
                        arn,
                        sts_region,
                        china,
                    } => self.assume_role(arn, sts_region, *china).await,
                    Principal::PodIdentity => self.pod_identity().await,
                }
            })
            .await
    }

    /// STS `AssumeRoleWithWebIdentity` (query protocol, unsigned).
    async fn assume_role(
        &self,
        role_arn: &str,
        region: &str,
        china: bool,
    ) -> Result<(RoleCredentials, Duration), IdentityError> {
        let Some(file) = &self.settings.web_identity_token_file else {
            return Err(IdentityError::NotConfigured {
                what: "IRSA",
                hint: "AWS_WEB_IDENTITY_TOKEN_FILE",
            });
        };
        let token = read_token_file(file).await?;
        let domain = if china {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        let endpoint = format!("https://sts.{region}.{domain}/");
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| IdentityError::Settings(format!("{endpoint}: {e}")))?;
        let body = form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role_arn),
            ("RoleSessionName", SESSION_NAME),
            ("WebIdentityToken", &token),
        ]);
        let answer = self
            .http
            .send(
                self.http
                    .request(reqwest::Method::POST, url)
                    .header(
                        "content-type",
                        "application/x-www-form-urlencoded; charset=utf-8",
                    )
                    .body(body),
                &endpoint,
            )
            .await?;
        parse_assume_role(&answer, &endpoint)
    }

    /// The Pod Identity agent's credentials (`Authorization` is the token).
    async fn pod_identity(&self) -> Result<(RoleCredentials, Duration), IdentityError> {
        let Some(agent) = &self.settings.pod_identity else {
            return Err(IdentityError::NotConfigured {
                what: "EKS Pod Identity",
                hint: "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            });
        };
        let token = read_token_file(&agent.token_file).await?;
        let endpoint = agent.uri.to_string();
        let answer = self
            .http
            .send(
                self.http
                    .request(reqwest::Method::GET, agent.uri.clone())
                    .header("authorization", token),
                &endpoint,
            )
            .await?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            access_key_id: String,
            secret_access_key: String,
            token: String,
            expiration: jiff::Timestamp,
        }
        let a: Answer = serde_json::from_slice(&answer)
            .map_err(|e| IdentityError::bad_answer(&endpoint, e.to_string()))?;
        Ok((
            RoleCredentials {
                access_key_id: a.access_key_id,
                secret_access_key: a.secret_access_key,
                session_token: a.token,
            },
            until(a.expiration),
        ))
    }

    /// ECR `GetAuthorizationToken` (JSON 1.1 protocol, SigV4).
    async fn fetch_ecr_token(
        &self,
        principal: &Principal,
        ecr: &EcrRegistry,
    ) -> Result<((String, String), Duration), IdentityError> {
        let creds = self.credentials(principal).await?;
        let endpoint = format!("https://api.ecr.{}.{}/", ecr.region, ecr.domain());
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| IdentityError::Settings(format!("{endpoint}: {e}")))?;
        let body = b"{}";
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            (
                "x-amz-target",
                "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
            ),
        ];
        let signed = sigv4_headers(
            &creds,
            &ecr.region,
            "ecr",
            "POST",
            &endpoint,
            &headers,
            body,
            SystemTime::now(),
        )?;
        let mut req = self.http.request(reqwest::Method::POST, url);
        for (k, v) in headers.iter().copied() {
            req = req.header(k, v);
        }
        for (k, v) in signed {
            req = req.header(k, v);
        }
        let answer = self.http.send(req.body(body.to_vec()), &endpoint).await?;
        parse_ecr_token(&answer, &endpoint)
    }
}

/// The headers SigV4 adds (`authorization`, `x-amz-date`,
/// `x-amz-security-token`) for a request with these headers and body.
#[allow(clippy::too_many_arguments)]
fn sigv4_headers(
    creds: &RoleCredentials,
    region: &str,
    service: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, String)>, IdentityError> {
    let signing = |message: String| IdentityError::Signing {
        endpoint: url.to_owned(),
        message,
    };
    let identity: Identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        Some(creds.session_token.clone()),
        None,
        "portcullis",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| signing(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| signing(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| signing(e.to_string()))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// The `Credentials` of an `AssumeRoleWithWebIdentityResponse`.
fn parse_assume_role(
    answer: &[u8],
    endpoint: &str,
) -> Result<(RoleCredentials, Duration), IdentityError> {
    let bad = |m: &str| IdentityError::bad_answer(endpoint, m);
    let text = std::str::from_utf8(answer).map_err(|_| bad("not UTF-8"))?;
    let doc = roxmltree::Document::parse(text).map_err(|e| bad(&format!("not XML: {e}")))?;
    let creds = doc
        .descendants()
        .find(|n| n.has_tag_name("Credentials"))
        .ok_or_else(|| bad("no Credentials"))?;
    let field = |name: &str| {
        creds
            .children()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad(&format!("no {name}")))
    };
    let expiration: jiff::Timestamp = field("Expiration")?
        .parse()
        .map_err(|e| bad(&format!("Expiration: {e}")))?;
    Ok((
        RoleCredentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: field("SessionToken")?,
        },
        until(expiration),
    ))
}

/// The user name and password of a `GetAuthorizationToken` answer.
fn parse_ecr_token(
    answer: &[u8],
    endpoint: &str,
) -> Result<((String, String), Duration), IdentityError> {
    let bad = |m: &str| IdentityError::bad_answer(endpoint, m);
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        authorization_data: Vec<Data>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        authorization_token: String,
        /// Seconds since the epoch (JSON 1.1 timestamps are numbers).
        expires_at: f64,
    }
    let a: Answer = serde_json::from_slice(answer).map_err(|e| bad(&e.to_string()))?;
    let data = a
        .authorization_data
        .into_iter()
        .next()
        .ok_or_else(|| bad("no authorizationData"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data.authorization_token.trim())
        .map_err(|_| bad("authorizationToken is not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| bad("authorizationToken is not text"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| bad("authorizationToken is not user:password"))?;
    let expires = jiff::Timestamp::from_second(data.expires_at as i64)
        .map_err(|e| bad(&format!("expiresAt: {e}")))?;
    Ok(((user.to_owned(), password.to_owned()), until(expires)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> RegistryHost {
        RegistryHost::parse(s).unwrap()
    }

    #[test]
    fn only_ecr_hosts_on_the_default_port_are_ecr() {
        let ecr =
            EcrRegistry::parse(&host("123456789012.dkr.ecr.us-east-1.amazonaws.com")).unwrap();
        assert_eq!(
            (ecr.account.as_str(), ecr.region.as_str(), ecr.china),
            ("123456789012", "us-east-1", false)
        );
        let cn =
            EcrRegistry::parse(&host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn")).unwrap();
        assert!(cn.china);
        for not_ecr in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:5000",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.net",
            "evil.123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com",
            "123456789012.dkr.notecr.us-east-1.amazonaws.com",
            "public.ecr.aws",
            "registry.example.com",
        ] {
            assert_eq!(EcrRegistry::parse(&host(not_ecr)), None, "{not_ecr}");
        }
    }

    #[test]
    fn the_agent_exception_is_its_address_and_port_only() {
        let agent =
            PodIdentityAgent::new("http://169.254.170.23/v1/credentials", "t".into()).unwrap();
        assert_eq!(
            agent.exception(),
            Some(AllowedDestination::Host {
                host: "169.254.170.23".into(),
                port: Some(80)
            })
        );
        let v6 = PodIdentityAgent::new("http://[fd00:ec2::23]/v1/credentials", "t".into()).unwrap();
        assert_eq!(
            v6.exception(),
            Some(AllowedDestination::Host {
                host: "[fd00:ec2::23]".into(),
                port: Some(80)
            })
        );
        // Plain HTTP elsewhere is refused; HTTPS elsewhere gets no exception.
        assert!(PodIdentityAgent::new("http://169.254.169.254/", "t".into()).is_err());
        assert!(PodIdentityAgent::new("http://agent.example.com/", "t".into()).is_err());
        let https = PodIdentityAgent::new("https://creds.example.com/v1", "t".into()).unwrap();
        assert_eq!(https.exception(), None);
    }

    #[test]
    fn sts_and_ecr_answers_are_read() {
        let xml = br#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:portcullis:portcullis-webhook</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>arn:aws:sts::111111111111:assumed-role/portcullis/portcullis-webhook</Arn><AssumedRoleId>AROA:portcullis-webhook</AssumedRoleId></AssumedRoleUser>
    <Credentials>
      <SessionToken>FwoGZXIvYXdzEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>
      <Expiration>2099-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;
        let (c, valid) = parse_assume_role(xml, "sts").unwrap();
        assert_eq!(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(c.session_token, "FwoGZXIvYXdzEXAMPLE");
        assert!(valid > Duration::from_secs(3600));
        assert!(parse_assume_role(b"<ErrorResponse/>", "sts").is_err());

        let json = br#"{"authorizationData":[{"authorizationToken":"QVdTOmVjci1wYXNzd29yZA==","expiresAt":4.1E9,"proxyEndpoint":"https://111111111111.dkr.ecr.us-east-1.amazonaws.com"}]}"#;
        let ((u, p), valid) = parse_ecr_token(json, "ecr").unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("AWS", "ecr-password"));
        assert!(valid > Duration::from_secs(3600));
        assert!(parse_ecr_token(br#"{"authorizationData":[]}"#, "ecr").is_err());
    }

    #[test]
    fn sigv4_signs_what_ecr_needs() {
        // The shape: credential scope, every header that matters signed, the
        // session token sent. The signature itself is checked against an
        // independent implementation (botocore) in webhook/tests/e2e_cloud.rs.
        let creds = RoleCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: "session".into(),
        };
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let headers = sigv4_headers(
            &creds,
            "us-east-1",
            "ecr",
            "POST",
            "https://api.ecr.us-east-1.amazonaws.com/",
            &[
                ("content-type", "application/x-amz-json-1.1"),
                (
                    "x-amz-target",
                    "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
                ),
            ],
            b"{}",
            time,
        )
        .unwrap();
        let get = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(get("x-amz-security-token"), Some("session"));
        let auth = get("authorization").unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecr/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="), "{auth}");
    }
}
