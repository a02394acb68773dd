//! Credentials and region, found the way the official Alibaba Cloud libraries find them
//! (api-notes §5 and §7), and renewed while a run lasts.
//!
//! Order: an explicit `--profile`; else the `ALIBABA_CLOUD_ACCESS_KEY_*` environment variables;
//! OIDC (RRSA) from the environment; the CLI profile file; the INI credentials file; the ECS
//! instance metadata service; `ALIBABA_CLOUD_CREDENTIALS_URI`. The first source that is
//! configured is used (its errors are reported, not skipped), and its first credentials are
//! fetched before anything else is sent. The environment is injected (`env`) so tests never
//! touch the process's own.

mod error;
mod process;
mod profile;
mod provider;
mod remote;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;

pub use error::CredentialsError;
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

/// Reads the real process environment (for `resolve` outside tests).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
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
            tracing::info!(provider = %source, expires = %crate::clock::seconds_text(at), "temporary credentials in use; they are renewed before they expire")
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
        let (spec, region, source) = profile::from_profile_file(Some(name), env)?
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
        && let Some((spec, region, source)) = profile::from_profile_file(None, env)?
    {
        return start(spec, region, source, env).await;
    }
    if let Some((spec, source)) = profile::from_ini_file(env)? {
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
    let path = profile::config_path(env)?.display().to_string();
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

#[cfg(test)]
mod tests;
