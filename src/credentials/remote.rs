//! Credentials fetched over HTTP: STS `AssumeRole` (v1-signed by the caller's credentials) and
//! `AssumeRoleWithOIDC` (unsigned, with the token file's content), the ECS instance metadata
//! service, and a credentials URI (api-notes §7). Every answer is read as a `Value` and picked
//! apart by hand, so no error message can quote a secret field.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use super::provider::{Fetch, Issued, Provider};
use super::{Credentials, CredentialsError, Secret};
use crate::clock;
use crate::sign;

const STS_VERSION: &str = "2015-04-01";
/// The metadata service of every ECS instance.
pub(crate) const ECS_METADATA: &str = "http://100.100.100.200/";
const METADATA_TOKEN_TTL: &str = "21600";
const ROLE_PATH: &str = "latest/meta-data/ram/security-credentials/";

/// Checks an override URL: http(s), a host, no query; plain http only to a loopback host.
pub(crate) fn endpoint_override(var: &'static str, url: &str) -> Result<String, CredentialsError> {
    let bad = |reason: &str| CredentialsError::InvalidOverride {
        var,
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&format!("it is not a URL ({e})")))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if parsed.query().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("it must not carry a query or credentials"));
    }
    match parsed.scheme() {
        "https" => {}
        "http" if crate::net::is_loopback_host(parsed.host_str().unwrap_or_default()) => {}
        "http" => return Err(bad("plain http:// is only allowed to a loopback address")),
        _ => return Err(bad("it must start with https://")),
    }
    let mut base = parsed.to_string();
    if !base.ends_with('/') {
        base.push('/');
    }
    Ok(base)
}

/// The STS endpoint: the override, else `sts[-vpc].<region>.aliyuncs.com` or `sts.aliyuncs.com`.
pub(crate) fn sts_endpoint(
    override_url: Option<&str>,
    region: Option<&str>,
    vpc: bool,
) -> Result<String, CredentialsError> {
    if let Some(url) = override_url {
        return endpoint_override(super::ENV_STS_ENDPOINT, url);
    }
    Ok(match region {
        Some(region) if vpc => format!("https://sts-vpc.{region}.aliyuncs.com/"),
        Some(region) => format!("https://sts.{region}.aliyuncs.com/"),
        None => "https://sts.aliyuncs.com/".to_string(),
    })
}

fn http_client(connect: Duration, read: Duration, base: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .tls_backend_rustls()
        .connect_timeout(connect)
        .read_timeout(read)
        .timeout(connect + read * 2)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("face-enroll/", env!("CARGO_PKG_VERSION")));
    // The metadata service and loopback overrides are never reached through a proxy.
    if base.starts_with("http://") {
        builder = builder.no_proxy();
    }
    builder.build().unwrap_or_else(|_| reqwest::Client::new())
}

/// What `AssumeRole` and `AssumeRoleWithOIDC` share.
#[derive(Clone, Debug)]
pub(crate) struct Role {
    pub role_arn: String,
    pub session_name: String,
    /// At least 900 (the STS minimum); 3600 by default.
    pub duration_seconds: u32,
    pub policy: Option<String>,
}

/// `AssumeRole`, signed with the credentials of `source` (which may be temporary themselves).
pub(crate) struct AssumeRole {
    source: Provider,
    role: Role,
    external_id: Option<String>,
    base: String,
    http: reqwest::Client,
}

impl AssumeRole {
    pub fn new(source: Provider, role: Role, external_id: Option<String>, base: String) -> Self {
        let http = http_client(Duration::from_secs(5), Duration::from_secs(10), &base);
        AssumeRole {
            source,
            role,
            external_id,
            base,
            http,
        }
    }

    async fn once(&self, caller: &Credentials) -> Result<Issued, StsFailure> {
        let nonce = uuid::Uuid::new_v4().to_string();
        let timestamp = crate::clock::seconds_text(clock::now_utc());
        let mut query: Vec<(String, String)> = [
            ("Action", "AssumeRole"),
            ("Version", STS_VERSION),
            ("Format", "JSON"),
            ("Timestamp", timestamp.as_str()),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce.as_str()),
            ("AccessKeyId", caller.access_key_id.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(token) = &caller.security_token {
            query.push(("SecurityToken".into(), token.expose().to_string()));
        }
        let mut form = role_form(&self.role);
        if let Some(id) = &self.external_id {
            form.push(("ExternalId".into(), id.clone()));
        }
        let mut signed = query.clone();
        signed.extend(form.iter().cloned());
        let signature = sign::sign("POST", caller.access_key_secret.expose(), &signed);
        query.push(("Signature".into(), signature));
        let mut secrets = vec![caller.access_key_secret.expose().to_string()];
        secrets.extend(caller.security_token.iter().map(|t| t.expose().to_string()));
        post_sts(
            &self.http,
            &self.base,
            "AssumeRole",
            &query,
            &form,
            &secrets,
        )
        .await
    }
}

impl Fetch for AssumeRole {
    fn fetch(&self) -> BoxFuture<'_, Result<Issued, CredentialsError>> {
        Box::pin(async move {
            let caller = self.source.credentials().await?;
            match self.once(&caller).await {
                // The source's own temporary credentials ran out: renew them and ask once more.
                Err(StsFailure::Refused { code, .. })
                    if code.starts_with(super::EXPIRED_TOKEN)
                        && self.source.invalidate(&caller) =>
                {
                    let caller = self.source.credentials().await?;
                    self.once(&caller).await
                }
                other => other,
            }
            .map_err(|f| f.into_error("AssumeRole", &self.role.role_arn, &self.base))
        })
    }
}

/// `AssumeRoleWithOIDC`: no AccessKey signature; the token file is read at every fetch.
pub(crate) struct AssumeRoleWithOidc {
    role: Role,
    provider_arn: String,
    token_file: String,
    base: String,
    http: reqwest::Client,
}

impl AssumeRoleWithOidc {
    pub fn new(role: Role, provider_arn: String, token_file: String, base: String) -> Self {
        let http = http_client(Duration::from_secs(5), Duration::from_secs(10), &base);
        AssumeRoleWithOidc {
            role,
            provider_arn,
            token_file,
            base,
            http,
        }
    }
}

/// Reads the OIDC token file: missing, unreadable or empty files are errors naming the file.
pub(crate) async fn read_oidc_token(path: &str) -> Result<String, CredentialsError> {
    let bad = |reason: String| CredentialsError::OidcTokenFile {
        path: path.to_string(),
        reason,
    };
    let token = tokio::fs::read_to_string(path).await.map_err(|e| {
        bad(if e.kind() == std::io::ErrorKind::NotFound {
            "does not exist".to_string()
        } else {
            format!("cannot be read ({e})")
        })
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(bad("is empty".to_string()));
    }
    Ok(token.to_string())
}

impl Fetch for AssumeRoleWithOidc {
    fn fetch(&self) -> BoxFuture<'_, Result<Issued, CredentialsError>> {
        Box::pin(async move {
            let token = read_oidc_token(&self.token_file).await?;
            let timestamp = crate::clock::seconds_text(clock::now_utc());
            let query: Vec<(String, String)> = [
                ("Action", "AssumeRoleWithOIDC"),
                ("Version", STS_VERSION),
                ("Format", "JSON"),
                ("Timestamp", timestamp.as_str()),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let mut form = role_form(&self.role);
            form.push(("OIDCProviderArn".into(), self.provider_arn.clone()));
            form.push(("OIDCToken".into(), token.clone()));
            let secrets = [token];
            post_sts(
                &self.http,
                &self.base,
                "AssumeRoleWithOIDC",
                &query,
                &form,
                &secrets,
            )
            .await
            .map_err(|f| f.into_error("AssumeRoleWithOIDC", &self.role.role_arn, &self.base))
        })
    }
}

fn role_form(role: &Role) -> Vec<(String, String)> {
    let mut form = vec![
        ("RoleArn".to_string(), role.role_arn.clone()),
        ("RoleSessionName".to_string(), role.session_name.clone()),
        (
            "DurationSeconds".to_string(),
            role.duration_seconds.to_string(),
        ),
    ];
    if let Some(policy) = &role.policy {
        form.push(("Policy".into(), policy.clone()));
    }
    form
}

/// Why an STS call failed, before it is phrased for the user.
enum StsFailure {
    Transport(String),
    Refused { code: String, message: String },
    Malformed(String),
}

impl StsFailure {
    fn into_error(self, action: &'static str, role_arn: &str, endpoint: &str) -> CredentialsError {
        match self {
            StsFailure::Transport(reason) => CredentialsError::Unreachable {
                service: "STS",
                url: endpoint.to_string(),
                reason,
            },
            StsFailure::Refused { code, message } => CredentialsError::StsRefused {
                action,
                role_arn: role_arn.to_string(),
                code,
                message,
            },
            StsFailure::Malformed(reason) => CredentialsError::Malformed {
                service: "STS",
                url: endpoint.to_string(),
                reason,
            },
        }
    }
}

async fn post_sts(
    http: &reqwest::Client,
    base: &str,
    action: &str,
    query: &[(String, String)],
    form: &[(String, String)],
    secrets: &[String],
) -> Result<Issued, StsFailure> {
    let url = format!("{base}?{}", sign::canonical_query(query));
    let body = sign::canonical_query(form);
    let resp = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| StsFailure::Transport(crate::net::describe(&e.without_url())))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| StsFailure::Transport(crate::net::describe(&e.without_url())))?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|_| {
        StsFailure::Malformed(format!("the {action} answer (HTTP {status}) is not JSON"))
    })?;
    if !status.is_success() || doc.get("Code").is_some() {
        let code = text(&doc, "Code").unwrap_or_else(|| format!("HTTP{}", status.as_u16()));
        let message = scrub(&text(&doc, "Message").unwrap_or_default(), secrets);
        return Err(StsFailure::Refused { code, message });
    }
    let credentials = doc.get("Credentials").unwrap_or(&Value::Null);
    issued_from(credentials).map_err(|m| StsFailure::Malformed(m.0))
}

/// Removes the string-to-sign a server echoes and every secret, raw or percent-encoded.
fn scrub(message: &str, secrets: &[String]) -> String {
    let lower = message.to_ascii_lowercase();
    let mut out = match lower.find("string to sign") {
        Some(at) => message[..at].trim_end().to_string(),
        None => message.to_string(),
    };
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let once = sign::percent_encode(secret);
        let twice = sign::percent_encode(&once);
        for needle in [twice, once, secret.clone()] {
            out = out.replace(&needle, "(redacted)");
        }
    }
    out
}

fn text(doc: &Value, field: &str) -> Option<String> {
    doc.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `{AccessKeyId, AccessKeySecret, SecurityToken, Expiration}` → credentials.
fn issued_from(doc: &Value) -> Result<Issued, super::error::Malformed> {
    let field = |name: &str| text(doc, name).ok_or_else(|| format!("the answer has no {name}"));
    let expiration = match text(doc, "Expiration") {
        Some(at) => Some(crate::clock::parse(&at).ok_or_else(|| {
            format!("the answer's Expiration '{at}' is not a time like 2026-12-01T10:00:00Z")
        })?),
        None => None,
    };
    Ok(Issued {
        credentials: Credentials {
            access_key_id: field("AccessKeyId")?,
            access_key_secret: Secret::new(field("AccessKeySecret")?),
            security_token: text(doc, "SecurityToken").map(Secret::new),
        },
        expiration,
    })
}

/// The RAM role of an ECS instance, from its metadata service (token first, api-notes §7).
pub(crate) struct EcsMetadata {
    base: String,
    role_name: Option<String>,
    imdsv1_disabled: bool,
    http: reqwest::Client,
}

impl EcsMetadata {
    pub fn new(base: String, role_name: Option<String>, imdsv1_disabled: bool) -> Self {
        let http = http_client(Duration::from_secs(1), Duration::from_secs(1), &base);
        EcsMetadata {
            base,
            role_name,
            imdsv1_disabled,
            http,
        }
    }

    fn unreachable(&self, reason: String) -> CredentialsError {
        CredentialsError::Unreachable {
            service: "the ECS metadata service",
            url: self.base.clone(),
            reason,
        }
    }

    async fn token(&self) -> Result<Option<String>, CredentialsError> {
        let sent = self
            .http
            .put(format!("{}latest/api/token", self.base))
            .header(
                "X-aliyun-ecs-metadata-token-ttl-seconds",
                METADATA_TOKEN_TTL,
            )
            .send()
            .await;
        let failure = match sent {
            Ok(resp) if resp.status().is_success() => match resp.text().await {
                Ok(token) if !token.trim().is_empty() => return Ok(Some(token.trim().to_string())),
                Ok(_) => "the token answer is empty".to_string(),
                Err(e) => crate::net::describe(&e.without_url()),
            },
            Ok(resp) => format!("the token request was answered HTTP {}", resp.status()),
            Err(e) if e.is_connect() || e.is_timeout() => {
                return Err(self.unreachable(crate::net::describe(&e.without_url())));
            }
            Err(e) => crate::net::describe(&e.without_url()),
        };
        if self.imdsv1_disabled {
            return Err(CredentialsError::Metadata {
                url: self.base.clone(),
                reason: format!(
                    "no metadata token ({failure}) and ALIBABA_CLOUD_IMDSV1_DISABLED=true forbids plain requests"
                ),
            });
        }
        tracing::debug!(reason = %failure, "no ECS metadata token; falling back to plain requests");
        Ok(None)
    }

    async fn get(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> Result<(u16, String), CredentialsError> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("X-aliyun-ecs-metadata-token", token);
        }
        let resp = request
            .send()
            .await
            .map_err(|e| self.unreachable(crate::net::describe(&e.without_url())))?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| self.unreachable(crate::net::describe(&e.without_url())))?;
        Ok((status, body))
    }
}

impl Fetch for EcsMetadata {
    fn fetch(&self) -> BoxFuture<'_, Result<Issued, CredentialsError>> {
        Box::pin(async move {
            let token = self.token().await?;
            let role = match &self.role_name {
                Some(role) => role.clone(),
                None => {
                    let (status, body) = self.get(ROLE_PATH, token.as_deref()).await?;
                    let role = body.lines().next().unwrap_or_default().trim().to_string();
                    if status != 200 || role.is_empty() {
                        return Err(CredentialsError::Metadata {
                            url: self.base.clone(),
                            reason: format!(
                                "no RAM role is attached to this instance (HTTP {status}); attach one, or set ALIBABA_CLOUD_ECS_METADATA_DISABLED=true and configure other credentials"
                            ),
                        });
                    }
                    role
                }
            };
            let path = format!("{ROLE_PATH}{}", sign::percent_encode(&role));
            let (status, body) = self.get(&path, token.as_deref()).await?;
            let metadata = |reason: String| CredentialsError::Metadata {
                url: self.base.clone(),
                reason,
            };
            if status != 200 {
                return Err(metadata(format!(
                    "the role '{role}' is not attached to this instance (HTTP {status}); check the role name (ALIBABA_CLOUD_ECS_METADATA or ram_role_name)"
                )));
            }
            let doc: Value = serde_json::from_str(&body)
                .map_err(|_| metadata(format!("the answer for role '{role}' is not JSON")))?;
            if text(&doc, "Code").as_deref() != Some("Success") {
                let code = text(&doc, "Code").unwrap_or_else(|| "(none)".into());
                return Err(metadata(format!(
                    "the answer for role '{role}' has Code {code}, not Success"
                )));
            }
            issued_from(&doc).map_err(|m| metadata(m.0))
        })
    }
}

/// `ALIBABA_CLOUD_CREDENTIALS_URI` / a `CredentialsURI` profile: a GET answering credentials.
pub(crate) struct CredentialsUri {
    url: String,
    http: reqwest::Client,
}

impl CredentialsUri {
    pub fn new(url: String) -> Self {
        let http = http_client(Duration::from_secs(5), Duration::from_secs(10), &url);
        CredentialsUri { url, http }
    }
}

impl Fetch for CredentialsUri {
    fn fetch(&self) -> BoxFuture<'_, Result<Issued, CredentialsError>> {
        Box::pin(async move {
            let failed = |reason: String| CredentialsError::Malformed {
                service: "the credentials URI",
                url: self.url.clone(),
                reason,
            };
            let resp = self.http.get(&self.url).send().await.map_err(|e| {
                CredentialsError::Unreachable {
                    service: "the credentials URI",
                    url: self.url.clone(),
                    reason: crate::net::describe(&e.without_url()),
                }
            })?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .map_err(|e| failed(crate::net::describe(&e.without_url())))?;
            if !status.is_success() {
                return Err(failed(format!("it answered HTTP {status}")));
            }
            let doc: Value = serde_json::from_slice(&body)
                .map_err(|_| failed("the answer is not JSON".to_string()))?;
            if let Some(code) = text(&doc, "Code").filter(|c| c != "Success") {
                return Err(failed(format!("the answer has Code {code}, not Success")));
            }
            issued_from(&doc).map_err(|m| failed(m.0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_endpoints_follow_region_vpc_and_override() {
        assert_eq!(
            sts_endpoint(None, None, false).unwrap(),
            "https://sts.aliyuncs.com/"
        );
        assert_eq!(
            sts_endpoint(None, Some("cn-beijing"), false).unwrap(),
            "https://sts.cn-beijing.aliyuncs.com/"
        );
        assert_eq!(
            sts_endpoint(None, Some("cn-beijing"), true).unwrap(),
            "https://sts-vpc.cn-beijing.aliyuncs.com/"
        );
        assert_eq!(
            sts_endpoint(Some("http://127.0.0.1:9/x"), Some("cn-beijing"), true).unwrap(),
            "http://127.0.0.1:9/x/"
        );
    }

    #[test]
    fn overrides_allow_plain_http_only_to_loopback_hosts() {
        for bad in [
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "nope",
            "https://h/?a=1",
        ] {
            let err = endpoint_override("X", bad).unwrap_err().to_string();
            assert!(err.contains("X") && err.contains(bad), "{err}");
        }
        assert!(endpoint_override("X", "https://sts.example.com").is_ok());
        assert!(endpoint_override("X", "http://localhost:8/").is_ok());
    }

    #[test]
    fn scrubbing_drops_the_string_to_sign_and_every_form_of_a_secret() {
        let secrets = ["a/b+c".to_string()];
        let shown = scrub(
            "bad token a/b+c a%2Fb%2Bc. server string to sign is: POST&x",
            &secrets,
        );
        assert_eq!(shown, "bad token (redacted) (redacted). server");
    }

    #[test]
    fn answers_without_a_field_name_the_field_and_never_quote_the_secret() {
        let doc = serde_json::json!({"AccessKeyId": "id", "AccessKeySecret": "canary-s"});
        let issued = issued_from(&doc).unwrap();
        assert!(issued.expiration.is_none() && issued.credentials.security_token.is_none());
        let doc = serde_json::json!({"AccessKeySecret": "canary-s"});
        assert!(!issued_from(&doc).unwrap_err().0.contains("canary"));
    }
}
