//! Credentials and region, found the way the official Alibaba Cloud libraries find them
//! (api-notes §5 and §7), and renewed while a run lasts.
//!
//! Order: an explicit `--profile`; else the `ALIBABA_CLOUD_ACCESS_KEY_*` environment variables;
//! OIDC (RRSA) from the environment; the CLI profile file; the INI credentials file; the ECS
//! instance metadata service; `ALIBABA_CLOUD_CREDENTIALS_URI`. The first source that is
//! configured is used (its errors are reported, not skipped), and its first credentials are
//! fetched before anything else is sent. The environment is injected (`env`) so tests never
//! touch the process's own.

mod process;
mod profile;
mod provider;
mod remote;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;

use serde_json::Value;
use time::OffsetDateTime;

pub use provider::Provider;
use remote::Role;

/// Region used when neither a flag, the environment nor the profile names one.
pub const DEFAULT_REGION: &str = "cn-shanghai";

const ENV_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
const ENV_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
const ENV_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
const ENV_PROFILE: &str = "ALIBABA_CLOUD_PROFILE";
const ENV_CONFIG_FILE: &str = "ALIBABA_CLOUD_CONFIG_FILE";
const ENV_REGION: &str = "ALIBABA_CLOUD_REGION_ID";
const ENV_CLI_PROFILE_DISABLED: &str = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED";
const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
const ENV_CREDENTIALS_FILE: &str = "ALIBABA_CLOUD_CREDENTIALS_FILE";
const ENV_ECS_METADATA: &str = "ALIBABA_CLOUD_ECS_METADATA";
const ENV_ECS_METADATA_DISABLED: &str = "ALIBABA_CLOUD_ECS_METADATA_DISABLED";
const ENV_IMDSV1_DISABLED: &str = "ALIBABA_CLOUD_IMDSV1_DISABLED";
const ENV_CREDENTIALS_URI: &str = "ALIBABA_CLOUD_CREDENTIALS_URI";
const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
const ENV_VPC_ENDPOINT_ENABLED: &str = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED";
/// Where STS is reached instead of `sts.aliyuncs.com` (tests, proxies, isolated VPCs).
pub const ENV_STS_ENDPOINT: &str = "FACE_ENROLL_STS_ENDPOINT";
/// Where the ECS metadata service is reached instead of `100.100.100.200`.
pub const ENV_ECS_METADATA_ENDPOINT: &str = "FACE_ENROLL_ECS_METADATA_ENDPOINT";

/// Every variable `resolve` reads, captured once so nothing later depends on `env`.
const ENV_NAMES: [&str; 22] = [
    ENV_KEY_ID,
    ENV_KEY_SECRET,
    ENV_TOKEN,
    ENV_PROFILE,
    ENV_CONFIG_FILE,
    ENV_REGION,
    ENV_CLI_PROFILE_DISABLED,
    ENV_ROLE_ARN,
    ENV_OIDC_PROVIDER_ARN,
    ENV_OIDC_TOKEN_FILE,
    ENV_ROLE_SESSION_NAME,
    ENV_CREDENTIALS_FILE,
    ENV_ECS_METADATA,
    ENV_ECS_METADATA_DISABLED,
    ENV_IMDSV1_DISABLED,
    ENV_CREDENTIALS_URI,
    ENV_STS_REGION,
    ENV_VPC_ENDPOINT_ENABLED,
    ENV_STS_ENDPOINT,
    ENV_ECS_METADATA_ENDPOINT,
    "HOME",
    "USERPROFILE",
];

/// The code family of an STS token the service no longer accepts (the request was not applied).
pub const EXPIRED_TOKEN: &str = "InvalidSecurityToken.Expired";

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for signing. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// An access key, with an STS token when the key is temporary.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Option<Secret>,
}

/// Credentials, the region to use, and where both came from (for the user, never secret).
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Ask it for the current credentials before every request.
    pub credentials: Provider,
    pub region: String,
    /// e.g. `environment` or `profile 'prod' in /root/.aliyun/config.json`.
    pub source: String,
}

/// Why no usable credentials were found. Messages name the file, the profile or the service and
/// what to do; they never contain a secret (nor an OIDC token, nor a command's output).
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "{set} is set but {missing} is not; set both (or neither, to use a profile from the CLI config file)"
    )]
    PartialEnvironment {
        set: &'static str,
        missing: &'static str,
    },
    #[error(
        "no credentials found: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, \
         or create a profile in {path} with `aliyun configure`, or run where a RAM role is provided \
         (ECS instance role, ACK RRSA){tried}"
    )]
    NotFound { path: String, tried: String },
    #[error(
        "cannot locate the CLI config file: HOME is not set; set ALIBABA_CLOUD_CONFIG_FILE or the \
         ALIBABA_CLOUD_ACCESS_KEY_* environment variables"
    )]
    NoHome,
    #[error(
        "profile '{profile}' was asked for, but the CLI config file {path} does not exist; create it with `aliyun configure --profile {profile}`"
    )]
    MissingFile { profile: String, path: String },
    #[error("cannot read the credentials file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "the credentials file {path} is not valid: {reason}; fix it or recreate it with `aliyun configure`"
    )]
    Invalid { path: String, reason: String },
    #[error(
        "no profile is selected in {path}: it has no \"current\"; pass --profile or set ALIBABA_CLOUD_PROFILE"
    )]
    NoProfileSelected { path: String },
    #[error(
        "profile '{profile}' is not in {path} (profiles there: {available}); pass another --profile or run `aliyun configure --profile {profile}`"
    )]
    ProfileNotFound {
        profile: String,
        path: String,
        available: String,
    },
    #[error(
        "profile '{profile}' in {path} uses mode {mode}, which face-enroll does not support; use one \
         of {supported}, or the ALIBABA_CLOUD_ACCESS_KEY_* environment variables"
    )]
    UnsupportedMode {
        profile: String,
        path: String,
        mode: String,
        supported: &'static str,
    },
    #[error(
        "profile '{profile}' in {path} has no {field}; run `aliyun configure --profile {profile}` or fix the file"
    )]
    IncompleteProfile {
        profile: String,
        path: String,
        field: &'static str,
    },
    #[error("region '{region}' (from {from}) is not a region id like cn-shanghai")]
    InvalidRegion { region: String, from: &'static str },
    #[error(
        "the OIDC token file {path} {reason}; check ALIBABA_CLOUD_OIDC_TOKEN_FILE (or oidc_token_file) \
         and that the pod's RRSA token is mounted"
    )]
    OidcTokenFile { path: String, reason: String },
    #[error(
        "STS refused {action} for role {role_arn}: {code}: {message}; check the role ARN, that the role \
         exists and that it trusts the caller"
    )]
    StsRefused {
        action: &'static str,
        role_arn: String,
        code: String,
        message: String,
    },
    #[error("cannot reach {service} at {url}: {reason}")]
    Unreachable {
        service: &'static str,
        url: String,
        reason: String,
    },
    #[error("{service} at {url} gave no usable credentials: {reason}")]
    Malformed {
        service: &'static str,
        url: String,
        reason: String,
    },
    #[error("the ECS metadata service at {url} gave no credentials: {reason}")]
    Metadata { url: String, reason: String },
    #[error(
        "the External credentials command '{command}' {reason}; fix process_command in the profile"
    )]
    External { command: String, reason: String },
    #[error("{var}='{url}' cannot be used: {reason}")]
    InvalidOverride {
        var: &'static str,
        url: String,
        reason: String,
    },
}

impl CredentialsError {
    /// A flag or value the user typed (exit 2), rather than credentials that do not work (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(self, CredentialsError::InvalidRegion { .. })
    }
}

/// Reads the real process environment (for `resolve` outside tests).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `YYYY-MM-DDThh:mm:ssZ`, the form of every `Expiration` and `Timestamp`.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
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

/// Parses an RFC 3339 time such as `2026-12-01T10:00:00Z`.
pub(crate) fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// How to obtain credentials, as read from the environment and the files (nothing fetched yet).
#[derive(Debug)]
pub(crate) enum Spec {
    Static(Credentials),
    AssumeRole {
        source: Box<Spec>,
        role: Role,
        external_id: Option<String>,
        sts_region: Option<String>,
        vpc: Option<bool>,
    },
    Oidc {
        role: Role,
        provider_arn: String,
        token_file: String,
        sts_region: Option<String>,
        vpc: Option<bool>,
    },
    Metadata {
        role_name: Option<String>,
    },
    Uri(String),
    External {
        command: String,
        profile: String,
    },
}

/// The captured environment, empty values counting as unset.
struct Env(HashMap<&'static str, String>);

impl Env {
    fn capture(env: &dyn Fn(&str) -> Option<String>) -> Env {
        Env(ENV_NAMES
            .iter()
            .filter_map(|&name| env(name).filter(|v| !v.is_empty()).map(|v| (name, v)))
            .collect())
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn is_true(&self, name: &str) -> bool {
        self.0
            .get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn home(&self) -> Option<PathBuf> {
        self.get("HOME")
            .or_else(|| self.get("USERPROFILE"))
            .map(PathBuf::from)
    }
}

/// Finds credentials and region (see the module doc for the order) and fetches the first
/// credentials, so a source that does not work fails here, before any request is sent.
/// The returned future owns everything it needs (it does not borrow `env`).
pub fn resolve(
    profile_flag: Option<&str>,
    region_flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> impl Future<Output = Result<Resolved, CredentialsError>> + Send + 'static {
    let env = Env::capture(env);
    let profile_flag = profile_flag.map(str::to_string);
    let region_flag = region_flag.map(str::to_string);
    async move { resolve_captured(profile_flag.as_deref(), region_flag.as_deref(), &env).await }
}

async fn resolve_captured(
    profile_flag: Option<&str>,
    region_flag: Option<&str>,
    env: &Env,
) -> Result<Resolved, CredentialsError> {
    let (provider, profile_region, source) = find(profile_flag, env).await?;
    let region = pick_region(region_flag, env.get(ENV_REGION), profile_region)?;
    match provider.expiration() {
        Some(at) => {
            tracing::info!(provider = %source, expires = %format_time(at), "temporary credentials in use; they are renewed before they expire")
        }
        None => tracing::info!(provider = %source, "credentials in use"),
    }
    Ok(Resolved {
        credentials: provider,
        region,
        source,
    })
}

type Found = (Provider, Option<String>, String);

async fn find(profile_flag: Option<&str>, env: &Env) -> Result<Found, CredentialsError> {
    if let Some(name) = profile_flag {
        let (spec, region, source) = from_profile_file(Some(name), env)?
            .expect("an explicit profile is found or is an error");
        return start(spec, region, source, env).await;
    }
    if let Some(credentials) = from_environment(env)? {
        return Ok((Provider::fixed(credentials), None, "environment".into()));
    }
    if let Some((spec, source)) = oidc_from_environment(env) {
        return start(spec, None, source, env).await;
    }
    if !env.is_true(ENV_CLI_PROFILE_DISABLED)
        && let Some((spec, region, source)) = from_profile_file(None, env)?
    {
        return start(spec, region, source, env).await;
    }
    if let Some((spec, source)) = from_ini_file(env)? {
        return start(spec, None, source, env).await;
    }
    let mut tried = String::new();
    if !env.is_true(ENV_ECS_METADATA_DISABLED) {
        let explicit =
            env.get(ENV_ECS_METADATA).is_some() || env.get(ENV_ECS_METADATA_ENDPOINT).is_some();
        let spec = Spec::Metadata {
            role_name: env.get(ENV_ECS_METADATA),
        };
        match start(spec, None, String::new(), env).await {
            Ok(found) => return Ok(found),
            Err(error) if explicit => return Err(error),
            Err(error) => {
                tracing::debug!(%error, "no credentials from the ECS metadata service");
                tried = format!(
                    "; the ECS metadata service was tried too ({error}); set {ENV_ECS_METADATA_DISABLED}=true off ECS"
                );
            }
        }
    }
    if let Some(url) = env.get(ENV_CREDENTIALS_URI) {
        return start(Spec::Uri(url), None, String::new(), env).await;
    }
    if env.home().is_none() && env.get(ENV_CONFIG_FILE).is_none() {
        return Err(CredentialsError::NoHome);
    }
    let path = config_path(env)?.display().to_string();
    Err(CredentialsError::NotFound { path, tried })
}

/// Builds the provider of `spec`, fetches its first credentials, and names the source.
async fn start(
    spec: Spec,
    region: Option<String>,
    source: String,
    env: &Env,
) -> Result<Found, CredentialsError> {
    let (provider, what) = build(spec, env)?;
    provider.prime().await?;
    let source = match (source.is_empty(), what.is_empty()) {
        (true, _) => what,
        (false, true) => source,
        (false, false) => format!("{source}: {what}"),
    };
    Ok((provider, region, source))
}

/// A provider for `spec` and a description of it (empty for fixed keys).
fn build(spec: Spec, env: &Env) -> Result<(Provider, String), CredentialsError> {
    let sts = |region: Option<String>, vpc: Option<bool>| {
        let region = region.or_else(|| env.get(ENV_STS_REGION));
        let vpc = vpc.unwrap_or_else(|| env.is_true(ENV_VPC_ENDPOINT_ENABLED));
        remote::sts_endpoint(env.get(ENV_STS_ENDPOINT).as_deref(), region.as_deref(), vpc)
    };
    Ok(match spec {
        Spec::Static(credentials) => (Provider::fixed(credentials), String::new()),
        Spec::AssumeRole {
            source,
            role,
            external_id,
            sts_region,
            vpc,
        } => {
            let (source, inner) = build(*source, env)?;
            let base = sts(sts_region, vpc)?;
            let what = format!("RAM role {} assumed through STS at {base}", role.role_arn);
            let what = if inner.is_empty() {
                what
            } else {
                format!("{what} (as {inner})")
            };
            let fetch = remote::AssumeRole::new(source, role, external_id, base);
            (Provider::renewing(fetch), what)
        }
        Spec::Oidc {
            role,
            provider_arn,
            token_file,
            sts_region,
            vpc,
        } => {
            let base = sts(sts_region, vpc)?;
            let what = format!(
                "RAM role {} assumed with the OIDC token in {token_file} through STS at {base}",
                role.role_arn
            );
            let fetch = remote::AssumeRoleWithOidc::new(role, provider_arn, token_file, base);
            (Provider::renewing(fetch), what)
        }
        Spec::Metadata { role_name } => {
            let base = match env.get(ENV_ECS_METADATA_ENDPOINT) {
                Some(url) => remote::endpoint_override(ENV_ECS_METADATA_ENDPOINT, &url)?,
                None => remote::ECS_METADATA.to_string(),
            };
            let role = role_name.clone().or_else(|| env.get(ENV_ECS_METADATA));
            let what = match &role {
                Some(role) => {
                    format!("ECS instance RAM role '{role}' from the metadata service at {base}")
                }
                None => format!("ECS instance RAM role from the metadata service at {base}"),
            };
            let fetch = remote::EcsMetadata::new(base, role, env.is_true(ENV_IMDSV1_DISABLED));
            (Provider::renewing(fetch), what)
        }
        Spec::Uri(url) => {
            let checked = remote::endpoint_override(ENV_CREDENTIALS_URI, &url)?;
            // The query may carry a token of the URI's own: leave it out of the description.
            let shown = checked.split('?').next().unwrap_or_default().to_string();
            let fetch = remote::CredentialsUri::new(url);
            (
                Provider::renewing(fetch),
                format!("credentials URI {shown}"),
            )
        }
        Spec::External { command, profile } => {
            let fetch = process::External::new(&command, &profile)?;
            let program = command
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            (
                Provider::renewing(fetch),
                format!("External command '{program}'"),
            )
        }
    })
}

fn from_environment(env: &Env) -> Result<Option<Credentials>, CredentialsError> {
    match (env.get(ENV_KEY_ID), env.get(ENV_KEY_SECRET)) {
        (Some(id), Some(secret)) => Ok(Some(Credentials {
            access_key_id: id,
            access_key_secret: Secret(secret),
            security_token: env.get(ENV_TOKEN).map(Secret),
        })),
        (Some(_), None) => Err(CredentialsError::PartialEnvironment {
            set: ENV_KEY_ID,
            missing: ENV_KEY_SECRET,
        }),
        (None, Some(_)) => Err(CredentialsError::PartialEnvironment {
            set: ENV_KEY_SECRET,
            missing: ENV_KEY_ID,
        }),
        (None, None) => Ok(None),
    }
}

/// RRSA: only when the role, the OIDC provider and the token file are all named.
fn oidc_from_environment(env: &Env) -> Option<(Spec, String)> {
    let role_arn = env.get(ENV_ROLE_ARN)?;
    let provider_arn = env.get(ENV_OIDC_PROVIDER_ARN)?;
    let token_file = env.get(ENV_OIDC_TOKEN_FILE)?;
    let role = Role {
        role_arn,
        session_name: env
            .get(ENV_ROLE_SESSION_NAME)
            .unwrap_or_else(|| format!("face-enroll-{}", crate::clock::now_utc().unix_timestamp())),
        duration_seconds: profile::DEFAULT_DURATION,
        policy: None,
    };
    let spec = Spec::Oidc {
        role,
        provider_arn,
        token_file,
        sts_region: None,
        vpc: None,
    };
    Some((spec, "environment (OIDC)".to_string()))
}

fn pick_region(
    flag: Option<&str>,
    env: Option<String>,
    profile: Option<String>,
) -> Result<String, CredentialsError> {
    let (region, from) = if let Some(r) = flag.filter(|r| !r.is_empty()) {
        (r.to_string(), "--region")
    } else if let Some(r) = env {
        (r, ENV_REGION)
    } else if let Some(r) = profile {
        (r, "the profile's region_id")
    } else {
        (DEFAULT_REGION.to_string(), "the default")
    };
    // The region becomes part of a host name: refuse anything that could change the URL.
    let valid = region
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(region)
    } else {
        Err(CredentialsError::InvalidRegion { region, from })
    }
}

fn config_path(env: &Env) -> Result<PathBuf, CredentialsError> {
    if let Some(path) = env.get(ENV_CONFIG_FILE) {
        return Ok(PathBuf::from(path));
    }
    let home = env.home().ok_or(CredentialsError::NoHome)?;
    Ok(home.join(".aliyun").join("config.json"))
}

type FromProfile = (Spec, Option<String>, String);

/// The CLI profile file: `None` when it does not exist and no profile was asked for by flag.
fn from_profile_file(
    flag: Option<&str>,
    env: &Env,
) -> Result<Option<FromProfile>, CredentialsError> {
    let path = match config_path(env) {
        Ok(path) => path,
        Err(_) if flag.is_none() => return Ok(None),
        Err(error) => return Err(error),
    };
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match flag {
                Some(profile) => Err(CredentialsError::MissingFile {
                    profile: profile.into(),
                    path: shown,
                }),
                None => Ok(None),
            };
        }
        Err(e) => {
            return Err(CredentialsError::Unreadable {
                path: shown,
                reason: e.to_string(),
            });
        }
    };
    // Parse to a Value first: serde's typed errors quote the offending value, which may be a secret.
    let doc: Value = serde_json::from_str(&text).map_err(|e| CredentialsError::Invalid {
        path: shown.clone(),
        reason: format!("not JSON ({e})"),
    })?;
    let wanted = match flag.map(str::to_string).or_else(|| env.get(ENV_PROFILE)) {
        Some(name) => name,
        None => match doc
            .get("current")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(name) => name.to_string(),
            None => return Err(CredentialsError::NoProfileSelected { path: shown }),
        },
    };
    let (spec, region) = profile::read_profile(&doc, &wanted, &shown)?;
    let source = format!("profile '{wanted}' in {shown}");
    Ok(Some((spec, region, source)))
}

/// The INI credentials file: `None` when it does not exist or lacks the section.
fn from_ini_file(env: &Env) -> Result<Option<(Spec, String)>, CredentialsError> {
    let path = match env.get(ENV_CREDENTIALS_FILE) {
        Some(path) => PathBuf::from(path),
        None => match env.home() {
            Some(home) => home.join(".alibabacloud").join("credentials"),
            None => return Ok(None),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CredentialsError::Unreadable {
                path: path.display().to_string(),
                reason: e.to_string(),
            });
        }
    };
    let section = env
        .get(ENV_PROFILE)
        .unwrap_or_else(|| "default".to_string());
    let Some(pairs) = profile::ini_section(&text, &section) else {
        return Ok(None);
    };
    let spec = profile::ini_spec(&pairs, &section, &path)?;
    Ok(Some((spec, format!("[{section}] in {}", path.display()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    const CANARY: &str = "S3cr3t-Canary-credentials-9f2c";

    /// The given variables, and the metadata service switched off so no test reaches for the
    /// network (the tests that want it point it at a sandbox).
    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry(ENV_ECS_METADATA_DISABLED.to_string())
            .or_insert_with(|| "true".to_string());
        move |name: &str| map.get(name).cloned()
    }

    fn resolve_now(
        profile: Option<&str>,
        region: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Resolved, CredentialsError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(resolve(profile, region, env))
    }

    /// The credentials a resolved provider hands out first.
    fn first(r: &Resolved) -> Credentials {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(r.credentials.credentials())
            .unwrap()
    }

    fn config_file(body: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(body.as_bytes()).unwrap();
        file
    }

    fn sample_config() -> String {
        format!(
            r#"{{"current": "default", "profiles": [
              {{"name": "default", "mode": "AK", "access_key_id": "id-default",
                "access_key_secret": "{CANARY}", "region_id": "cn-beijing"}},
              {{"name": "prod", "mode": "StsToken", "access_key_id": "id-prod",
                "access_key_secret": "{CANARY}", "sts_token": "tok-{CANARY}", "region_id": ""}},
              {{"name": "role", "mode": "CloudSSO", "access_key_id": "id-role",
                "access_key_secret": "{CANARY}", "ram_role_arn": "acs:ram::1:role/x"}},
              {{"name": "half", "mode": "AK", "access_key_id": "id-half"}}
            ]}}"#
        )
    }

    fn path_of(file: &tempfile::NamedTempFile) -> String {
        file.path().display().to_string()
    }

    #[test]
    fn environment_keys_win_when_no_profile_flag_is_given() {
        let file = config_file(&sample_config());
        let env = env_of(&[
            (ENV_KEY_ID, "env-id"),
            (ENV_KEY_SECRET, CANARY),
            (ENV_CONFIG_FILE, &path_of(&file)),
        ]);
        let r = resolve_now(None, None, &env).unwrap();
        let c = first(&r);
        assert_eq!(c.access_key_id, "env-id");
        assert_eq!(c.access_key_secret.expose(), CANARY);
        assert!(c.security_token.is_none());
        assert_eq!(r.source, "environment");
        assert_eq!(r.region, DEFAULT_REGION);
    }

    #[test]
    fn environment_security_token_makes_sts_credentials() {
        let env = env_of(&[
            (ENV_KEY_ID, "env-id"),
            (ENV_KEY_SECRET, CANARY),
            (ENV_TOKEN, "tok"),
        ]);
        let r = resolve_now(None, None, &env).unwrap();
        assert_eq!(first(&r).security_token.unwrap().expose(), "tok");
    }

    #[test]
    fn only_the_key_id_in_the_environment_is_an_error_naming_the_missing_secret() {
        let env = env_of(&[(ENV_KEY_ID, "env-id")]);
        let err = resolve_now(None, None, &env).unwrap_err().to_string();
        assert!(
            err.contains(ENV_KEY_SECRET) && err.contains("is not"),
            "{err}"
        );
    }

    #[test]
    fn only_the_secret_in_the_environment_is_an_error_naming_the_missing_id() {
        let env = env_of(&[(ENV_KEY_SECRET, CANARY)]);
        let err = resolve_now(None, None, &env).unwrap_err().to_string();
        assert!(err.contains(&format!("{ENV_KEY_ID} is not")), "{err}");
        assert!(!err.contains(CANARY));
    }

    #[test]
    fn profile_flag_beats_environment_keys() {
        let file = config_file(&sample_config());
        let env = env_of(&[
            (ENV_KEY_ID, "env-id"),
            (ENV_KEY_SECRET, "env-secret"),
            (ENV_CONFIG_FILE, &path_of(&file)),
        ]);
        let r = resolve_now(Some("default"), None, &env).unwrap();
        assert_eq!(first(&r).access_key_id, "id-default");
        assert_eq!(r.source, format!("profile 'default' in {}", path_of(&file)));
    }

    #[test]
    fn current_profile_is_used_when_nothing_else_selects_one() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let r = resolve_now(None, None, &env).unwrap();
        assert_eq!(first(&r).access_key_id, "id-default");
        assert_eq!(r.region, "cn-beijing");
    }

    #[test]
    fn profile_environment_variable_beats_current() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file)), (ENV_PROFILE, "prod")]);
        let r = resolve_now(None, None, &env).unwrap();
        assert_eq!(first(&r).access_key_id, "id-prod");
        assert_eq!(
            first(&r).security_token.unwrap().expose(),
            format!("tok-{CANARY}")
        );
        assert_eq!(
            r.region, DEFAULT_REGION,
            "an empty region_id falls through to the default"
        );
    }

    #[test]
    fn profile_file_is_found_under_home_by_default() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aliyun")).unwrap();
        std::fs::write(home.path().join(".aliyun/config.json"), sample_config()).unwrap();
        let env = env_of(&[("HOME", home.path().to_str().unwrap())]);
        let r = resolve_now(None, None, &env).unwrap();
        assert!(r.source.ends_with(".aliyun/config.json"), "{}", r.source);
    }

    #[test]
    fn region_flag_beats_environment_which_beats_profile() {
        let file = config_file(&sample_config());
        let path = path_of(&file);
        let env = env_of(&[(ENV_CONFIG_FILE, &path), (ENV_REGION, "cn-hangzhou")]);
        assert_eq!(
            resolve_now(None, Some("cn-shenzhen"), &env).unwrap().region,
            "cn-shenzhen"
        );
        assert_eq!(resolve_now(None, None, &env).unwrap().region, "cn-hangzhou");
    }

    #[test]
    fn region_that_could_change_the_url_is_refused() {
        let env = env_of(&[(ENV_KEY_ID, "id"), (ENV_KEY_SECRET, CANARY)]);
        let err = resolve_now(None, Some("evil.com/x"), &env).unwrap_err();
        assert!(
            matches!(err, CredentialsError::InvalidRegion { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_profile_mode_face_enroll_does_not_know_is_refused_naming_the_supported_ones() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let err = resolve_now(Some("role"), None, &env).unwrap_err();
        assert!(!err.is_usage(), "a credentials failure, not a usage error");
        assert_eq!(
            err.to_string(),
            format!(
                "profile 'role' in {} uses mode CloudSSO, which face-enroll does not support; use one \
                 of AK, StsToken, RamRoleArn, EcsRamRole, OIDC, ChainableRamRoleArn, CredentialsURI, \
                 External, or the ALIBABA_CLOUD_ACCESS_KEY_* environment variables",
                path_of(&file)
            )
        );
    }

    #[test]
    fn profile_without_a_secret_names_the_missing_field_and_the_file() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let err = resolve_now(Some("half"), None, &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("access_key_secret") && err.contains(&path_of(&file)),
            "{err}"
        );
    }

    #[test]
    fn unknown_profile_lists_the_profiles_that_exist() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let err = resolve_now(Some("staging"), None, &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'staging'") && err.contains("default, prod, role, half"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_without_environment_keys_says_how_to_provide_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.json").display().to_string();
        let env = env_of(&[(ENV_CONFIG_FILE, &path)]);
        let err = resolve_now(None, None, &env).unwrap_err().to_string();
        assert!(err.contains(&path) && err.contains(ENV_KEY_ID), "{err}");
    }

    #[test]
    fn missing_file_with_a_profile_flag_names_the_profile_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.json").display().to_string();
        let env = env_of(&[(ENV_CONFIG_FILE, &path)]);
        let err = resolve_now(Some("prod"), None, &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path) && err.contains("'prod'"), "{err}");
    }

    #[test]
    fn invalid_json_names_the_file_and_never_quotes_its_content() {
        let file = config_file(&format!(
            "{{\"profiles\": [{{\"access_key_secret\": \"{CANARY}\""
        ));
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let err = resolve_now(None, None, &env).unwrap_err().to_string();
        assert!(
            err.contains(&path_of(&file)) && err.contains("not JSON"),
            "{err}"
        );
        assert!(!err.contains(CANARY), "{err}");
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display().to_string(); // a directory cannot be read as a file
        let env = env_of(&[(ENV_CONFIG_FILE, &path)]);
        let err = resolve_now(None, None, &env).unwrap_err();
        assert!(matches!(err, CredentialsError::Unreadable { .. }), "{err}");
        assert!(err.to_string().contains(&path));
    }

    #[test]
    fn config_without_current_asks_for_a_profile() {
        let file = config_file(r#"{"profiles": []}"#);
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let err = resolve_now(None, None, &env).unwrap_err();
        assert!(
            matches!(err, CredentialsError::NoProfileSelected { .. }),
            "{err}"
        );
    }

    #[test]
    fn no_home_and_no_config_override_is_an_error() {
        let err = resolve_now(None, None, &env_of(&[])).unwrap_err();
        assert!(matches!(err, CredentialsError::NoHome), "{err}");
    }

    #[test]
    fn empty_environment_values_count_as_unset() {
        let file = config_file(&sample_config());
        let env = env_of(&[
            (ENV_KEY_ID, ""),
            (ENV_KEY_SECRET, ""),
            (ENV_CONFIG_FILE, &path_of(&file)),
        ]);
        assert_eq!(
            first(&resolve_now(None, None, &env).unwrap()).access_key_id,
            "id-default"
        );
    }

    #[test]
    fn debug_output_of_credentials_never_shows_secrets() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let r = resolve_now(Some("prod"), None, &env).unwrap();
        let c = first(&r);
        let shown = format!("{r:?} {:?} {c:?} {}", r.credentials, c.access_key_secret);
        assert!(!shown.contains(CANARY), "{shown}");
        assert!(shown.contains("(redacted)") && shown.contains("id-prod"));
    }
}
