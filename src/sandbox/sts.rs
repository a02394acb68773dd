//! The emulated credential services, on the same listener as MTS and ICE: STS `AssumeRole`
//! (v1-signed by any accepted key) and `AssumeRoleWithOIDC` (unsigned, token checked), the ECS
//! metadata service (`PUT /latest/api/token`, then the role and its credentials), and
//! `GET /__sandbox/credentials` (a credentials URI; `?format=external` prints what an `External`
//! profile command prints). Every credential handed out lives `sts_lifetime`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::Method;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::auth::{Credentials, IssuedKey, Keyring};
use super::config::SandboxConfig;
use super::params::Params;
use super::response::{ApiError, BodyFormat, Reply};

pub(crate) const STS_VERSION: &str = "2015-04-01";
const HOST_ID: &str = "sts.aliyuncs.com";
const ROLE_PATH: &str = "/latest/meta-data/ram/security-credentials/";
const MAX_METADATA_TTL: u64 = 21_600;

/// Whether `params` ask for an STS action (routed here instead of MTS / ICE).
pub(crate) fn is_sts(params: &Params) -> bool {
    matches!(
        params.get("Action"),
        Some("AssumeRole" | "AssumeRoleWithOIDC")
    )
}

/// The keys the sandbox accepts, the temporary ones it hands out, and the metadata sessions.
pub(crate) struct Issuer {
    keys: Mutex<Keyring>,
    tokens: MetadataTokens,
    issued: AtomicU64,
    lifetime: Duration,
}

impl Issuer {
    pub fn new(fixed: Credentials, lifetime: Duration) -> Issuer {
        Issuer {
            keys: Mutex::new(Keyring::new(fixed)),
            tokens: MetadataTokens::default(),
            issued: AtomicU64::new(0),
            lifetime,
        }
    }

    /// Every accepted key, for authentication.
    pub fn keys(&self) -> MutexGuard<'_, Keyring> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands out a new temporary credential, accepted until its lifetime has passed.
    pub fn issue(&self) -> IssuedKey {
        let serial = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        let now = OffsetDateTime::now_utc();
        let key = new_key(serial, self.lifetime, now);
        self.keys().add(key.clone(), now);
        key
    }

    pub fn issued_count(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// (key id, secret, token) of every credential handed out and still remembered.
    pub fn issued_credentials(&self) -> Vec<(String, String, String)> {
        self.keys()
            .issued()
            .map(|k| {
                let k = k.clone();
                (k.access_key_id, k.access_key_secret, k.security_token)
            })
            .collect()
    }
}

/// Metadata-service session tokens and when they expire.
#[derive(Default)]
struct MetadataTokens(Mutex<HashMap<String, OffsetDateTime>>);

impl MetadataTokens {
    fn issue(&self, ttl: Duration, now: OffsetDateTime) -> String {
        let token = random_text(24);
        let mut tokens = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.retain(|_, at| *at > now);
        tokens.insert(token.clone(), now + ttl);
        token
    }

    fn valid(&self, token: &str, now: OffsetDateTime) -> bool {
        let tokens = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.get(token).is_some_and(|at| *at > now)
    }
}

fn random_text(bytes: usize) -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A new temporary credential living `lifetime` from `now`.
fn new_key(serial: u64, lifetime: Duration, now: OffsetDateTime) -> IssuedKey {
    IssuedKey {
        access_key_id: format!("STS.sandbox{serial:06}{}", random_text(4)),
        access_key_secret: random_text(16),
        // Real tokens are long base64 text; `+`, `/` and `=` keep the encoders honest.
        security_token: format!("CAIS{}+/=", random_text(32)),
        expires: now + lifetime,
    }
}

/// `YYYY-MM-DDThh:mm:ssZ`, rounded down so a client never thinks a credential lives longer.
fn stamp(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn credentials_fields(key: &IssuedKey) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("AccessKeyId".into(), key.access_key_id.clone().into());
    fields.insert(
        "AccessKeySecret".into(),
        key.access_key_secret.clone().into(),
    );
    fields.insert("SecurityToken".into(), key.security_token.clone().into());
    fields.insert("Expiration".into(), stamp(key.expires).into());
    fields
}

fn error(request_id: String, error: &ApiError) -> Reply {
    Reply::error(BodyFormat::Json, HOST_ID, request_id, error)
}

/// Answers `AssumeRole` / `AssumeRoleWithOIDC`; `authenticate` checks a v1-signed call (its
/// signature, key, token, timestamp and nonce) as for any other action.
pub(crate) fn handle(
    issuer: &Issuer,
    config: &SandboxConfig,
    params: &Params,
    request_id: String,
    authenticate: impl FnOnce() -> Result<(), ApiError>,
) -> Reply {
    match assume(issuer, config, params, authenticate) {
        Ok((action, key)) => {
            let mut fields = Map::new();
            fields.insert(
                "Credentials".into(),
                Value::Object(credentials_fields(&key)),
            );
            let session = params.get("RoleSessionName").unwrap_or_default();
            fields.insert(
                "AssumedRoleUser".into(),
                json!({
                    "Arn": format!("{}/{session}", config.role_arn.replace(":role/", ":assumed-role/")),
                    "AssumedRoleId": format!("300000000000000000:{session}"),
                }),
            );
            Reply::success(BodyFormat::Json, action, request_id, fields)
        }
        Err(e) => error(request_id, &e),
    }
}

fn assume(
    issuer: &Issuer,
    config: &SandboxConfig,
    params: &Params,
    authenticate: impl FnOnce() -> Result<(), ApiError>,
) -> Result<(&'static str, IssuedKey), ApiError> {
    let action = match params.get("Action") {
        Some("AssumeRole") => {
            authenticate()?;
            "AssumeRole"
        }
        _ => "AssumeRoleWithOIDC",
    };
    if params.non_empty("Version") != Some(STS_VERSION) {
        return Err(ApiError::invalid(
            "InvalidVersion",
            format!("Specified parameter Version is not valid for {action}; use {STS_VERSION}."),
        ));
    }
    let role = params
        .non_empty("RoleArn")
        .ok_or_else(|| ApiError::missing("RoleArn"))?;
    if params.non_empty("RoleSessionName").is_none() {
        return Err(ApiError::missing("RoleSessionName"));
    }
    if let Some(duration) = params.get("DurationSeconds") {
        let seconds: u64 = duration.parse().unwrap_or(0);
        if !(900..=43_200).contains(&seconds) {
            return Err(ApiError::invalid(
                "InvalidParameter.DurationSeconds",
                "The parameter DurationSeconds must be between 900 and 43200.",
            ));
        }
    }
    if action == "AssumeRoleWithOIDC" {
        let provider = params
            .non_empty("OIDCProviderArn")
            .ok_or_else(|| ApiError::missing("OIDCProviderArn"))?;
        if provider != config.oidc_provider_arn {
            return Err(ApiError::new(
                404,
                "EntityNotExist.OIDCProvider",
                format!("The OIDC provider does not exist: {provider}."),
            ));
        }
        let token = params
            .non_empty("OIDCToken")
            .ok_or_else(|| ApiError::missing("OIDCToken"))?;
        if config.oidc_token.as_deref().is_some_and(|t| t != token) {
            return Err(ApiError::invalid(
                "AuthenticationFail.OIDCToken.Invalid",
                "The OIDC token is invalid.",
            ));
        }
    }
    if role != config.role_arn {
        return Err(ApiError::new(
            404,
            "EntityNotExist.Role",
            format!("The role not exists: {role}."),
        ));
    }
    Ok((action, issuer.issue()))
}

/// Answers the metadata paths (`/latest/…`).
pub(crate) fn metadata(
    issuer: &Issuer,
    config: &SandboxConfig,
    method: &Method,
    path: &str,
    header: impl Fn(&str) -> Option<String>,
) -> Reply {
    let now = OffsetDateTime::now_utc();
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return text(405, "Use PUT for a metadata token.");
        }
        let ttl = header("x-aliyun-ecs-metadata-token-ttl-seconds")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ttl| (1..=MAX_METADATA_TTL).contains(ttl));
        return match ttl {
            Some(ttl) => text(200, &issuer.tokens.issue(Duration::from_secs(ttl), now)),
            None => text(
                400,
                "X-aliyun-ecs-metadata-token-ttl-seconds must be 1 to 21600.",
            ),
        };
    }
    if method != Method::GET {
        return text(405, "Use GET.");
    }
    // IMDSv1 (no token) is served; a token that is sent must be valid.
    if let Some(token) = header("x-aliyun-ecs-metadata-token")
        && !issuer.tokens.valid(&token, now)
    {
        return text(401, "The metadata token is invalid or expired.");
    }
    match path.strip_prefix(ROLE_PATH) {
        Some("") => text(200, &config.ecs_role_name),
        Some(role) if role == config.ecs_role_name => {
            let key = issuer.issue();
            let mut fields = credentials_fields(&key);
            fields.insert("Code".into(), "Success".into());
            fields.insert("LastUpdated".into(), stamp(now).into());
            Reply::json(200, &Value::Object(fields))
        }
        _ => text(404, "Not Found"),
    }
}

/// `GET /__sandbox/credentials`: a credentials URI; `?format=external` gives the `External`
/// command's shape.
pub(crate) fn credentials_uri(issuer: &Issuer, query: Option<&str>) -> Reply {
    let key = issuer.issue();
    if query.is_some_and(|q| q.split('&').any(|p| p == "format=external")) {
        let body = json!({
            "mode": "StsToken",
            "access_key_id": key.access_key_id,
            "access_key_secret": key.access_key_secret,
            "sts_token": key.security_token,
            "expiration": stamp(key.expires),
        });
        return Reply::json(200, &body);
    }
    let mut fields = credentials_fields(&key);
    fields.insert("Code".into(), "Success".into());
    Reply::json(200, &Value::Object(fields))
}

fn text(status: u16, body: &str) -> Reply {
    Reply::text(status, body.to_string())
}
