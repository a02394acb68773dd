//! From connection settings to a signed client: credentials and region found once (the way the
//! Alibaba Cloud tooling finds them), the endpoint chosen for the target, the client built.
//! Every command that talks to the service comes through here.

use std::time::Duration;

use crate::api::{ApiError, Client, ClientConfig, Endpoints};
use crate::backend::TargetKind;
use crate::credentials::{self, Credentials, CredentialsError, Provider, Secret};
use crate::exit::{Exit, UsageError};

/// How long past its timeout an unanswered attempt is taken to be possibly in flight still.
pub const SETTLE_MARGIN: Duration = Duration::from_secs(1);

/// Validated connection flags, shared by every command that sends requests.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Requests per second of the create operation; `None`: the target's default.
    pub qps: Option<u32>,
    /// Requests per second of reads (listings) and of removals; `None`: the target's default.
    pub read_qps: Option<u32>,
    pub remove_qps: Option<u32>,
    /// Whether the budgets are per operation (the services' rule) or one for the account.
    pub qps_scope: crate::pacer::Scope,
    pub max_attempts: u32,
    pub timeout: Duration,
    /// Requests in flight at most; `None`: enough for the budget.
    pub concurrency: Option<usize>,
    /// Seed for the backoff jitter (reproducible runs in tests).
    pub seed: Option<u64>,
    /// How requests are signed.
    pub signature: crate::sign::SignatureVersion,
}

impl Settings {
    /// The budget: the given `--qps`, else the target's (100 MTS, 50 ICE); 0 = unlimited.
    pub fn qps(&self, target: TargetKind) -> u32 {
        self.qps.unwrap_or_else(|| target.default_qps())
    }

    /// How the caller paces and retries for `target`; a look-up after an unanswered attempt
    /// waits for the timeout and `margin`.
    pub fn pace(&self, target: TargetKind, margin: Duration) -> crate::caller::Pace {
        crate::caller::Pace {
            qps: self.qps(target),
            read_qps: self.read_qps.unwrap_or_else(|| target.default_qps()),
            remove_qps: self.remove_qps.unwrap_or_else(|| target.default_qps()),
            scope: self.qps_scope,
            max_attempts: self.max_attempts,
            seed: self.seed,
            settle_after: self.timeout + margin,
        }
    }

    /// Enough requests in flight to reach the budget at a few hundred ms of latency.
    pub fn concurrency(&self, target: TargetKind) -> usize {
        self.concurrency.unwrap_or(match self.qps(target) {
            0 => 64,
            qps => (qps as usize / 2).clamp(8, 256),
        })
    }
}

/// Why no client could be made; nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error("{0}")]
    Client(#[from] ApiError),
}

impl ConnectError {
    /// 3 when no credentials could be had (nothing was sent; fix them and run again), else 2.
    pub fn exit(&self) -> Exit {
        match self {
            ConnectError::Credentials(e) if !e.is_usage() => Exit::ServiceFatal,
            _ => Exit::Usage,
        }
    }
}

/// A client and the endpoint it talks to (for logs and the ledger's run records).
pub struct Connected {
    pub client: Client,
    pub endpoint: String,
    /// The region in use (`--region`, the profile's or the environment's; the sandbox's own).
    pub region: String,
}

/// Finds credentials and region, checks the region for the target, and builds the client.
pub async fn connect(settings: &Settings, target: TargetKind) -> Result<Connected, ConnectError> {
    let resolved = credentials::resolve(
        settings.profile.as_deref(),
        settings.region.as_deref(),
        &credentials::process_env,
    )
    .await?;
    let (endpoints, region) = match settings.endpoint.as_deref() {
        Some(url) => (Endpoints::single(url)?, None),
        None => {
            target.check_region(&resolved.region)?;
            let region = resolved.region.clone();
            (Endpoints::for_region(&resolved.region), Some(region))
        }
    };
    let connected = build(
        settings,
        target,
        endpoints,
        resolved.credentials,
        resolved.region,
    )?;
    // Where requests go and whose key signs them, in the first lines of every command's log:
    // what on-call needs when a run fails at 3 a.m.
    match region {
        Some(region) => tracing::info!(
            endpoint = %connected.endpoint,
            credentials = %resolved.source,
            %region,
            "connecting"
        ),
        // The endpoint was given: the region picked nothing, so it is not named.
        None => tracing::info!(
            endpoint = %connected.endpoint,
            credentials = %resolved.source,
            "connecting"
        ),
    }
    Ok(connected)
}

/// The region the sandbox says it is in when none is given.
pub const SANDBOX_REGION: &str = "cn-shanghai";

/// A client for a sandbox at `url` with the sandbox's own credentials.
pub fn sandbox(
    settings: &Settings,
    target: TargetKind,
    url: &str,
) -> Result<Connected, ConnectError> {
    let credentials = Credentials {
        access_key_id: crate::sandbox::DEFAULT_ACCESS_KEY_ID.to_string(),
        access_key_secret: Secret::new(crate::sandbox::DEFAULT_ACCESS_KEY_SECRET),
        security_token: None,
    };
    build(
        settings,
        target,
        Endpoints::single(url)?,
        credentials.into(),
        settings
            .region
            .clone()
            .unwrap_or_else(|| SANDBOX_REGION.to_string()),
    )
}

fn build(
    settings: &Settings,
    target: TargetKind,
    endpoints: Endpoints,
    credentials: Provider,
    region: String,
) -> Result<Connected, ConnectError> {
    let endpoint = match target {
        TargetKind::Mts => endpoints.mts.clone(),
        TargetKind::Ice(_) => endpoints.ice.clone(),
    };
    let client = Client::new(ClientConfig {
        endpoints,
        credentials,
        timeout: settings.timeout,
        max_idle_per_host: settings.concurrency(target),
        signature: settings.signature,
    })?;
    Ok(Connected {
        client,
        endpoint,
        region,
    })
}
