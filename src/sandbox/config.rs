//! Sandbox settings: the configured credential, the emulated STS and ECS metadata service, the
//! rate limits, latency, the fault mix, and the emulated OSS.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The access key id every sandbox accepts unless configured otherwise.
pub const DEFAULT_ACCESS_KEY_ID: &str = "sandbox-key-id";
/// The secret that goes with [`DEFAULT_ACCESS_KEY_ID`].
pub const DEFAULT_ACCESS_KEY_SECRET: &str = "sandbox-key-secret";
/// The one RAM role the emulated STS lets callers assume.
pub const DEFAULT_ROLE_ARN: &str = "acs:ram::1234567890123456:role/face-enroll-sandbox";
/// The OIDC provider the emulated `AssumeRoleWithOIDC` trusts.
pub const DEFAULT_OIDC_PROVIDER_ARN: &str =
    "acs:ram::1234567890123456:oidc-provider/ack-rrsa-sandbox";
/// The RAM role the emulated ECS instance has.
pub const DEFAULT_ECS_ROLE_NAME: &str = "face-enroll-sandbox";
/// How long issued temporary credentials live unless configured otherwise (STS's default).
pub const DEFAULT_STS_LIFETIME: Duration = Duration::from_secs(3600);

/// Everything a sandbox needs to start. `Debug` hides the secret and the token.
#[derive(Clone)]
pub struct SandboxConfig {
    pub listen: SocketAddr,
    pub access_key_id: String,
    pub access_key_secret: String,
    /// When set, every request must carry this `SecurityToken` (STS credentials).
    pub security_token: Option<String>,
    /// How long the temporary credentials issued by the emulated STS, ECS metadata service and
    /// credentials URI live (whatever `DurationSeconds` asked for).
    pub sts_lifetime: Duration,
    /// The role `AssumeRole` and `AssumeRoleWithOIDC` accept; others are `EntityNotExist.Role`.
    pub role_arn: String,
    /// The OIDC provider `AssumeRoleWithOIDC` trusts.
    pub oidc_provider_arn: String,
    /// The OIDC token `AssumeRoleWithOIDC` accepts; `None` accepts any non-empty token.
    pub oidc_token: Option<String>,
    /// The RAM role of the emulated ECS instance.
    pub ecs_role_name: String,
    /// Per access key and per MTS action, requests per second; 0 = unlimited.
    pub mts_qps: u32,
    /// Per access key and per ICE action, requests per second; 0 = unlimited.
    pub ice_qps: u32,
    /// When set, throttled answers carry `x-acs-retry-after: <ms>`: this value, or with 0 the
    /// time until the oldest accepted request leaves the one-second window.
    pub retry_after_ms: Option<u64>,
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
    /// How long a `Stall` fault holds a request before applying and answering it.
    pub stall_ms: u64,
    pub faults: FaultRates,
    pub seed: u64,
    pub max_faces_per_person: usize,
    /// The sliding window `stats.peak_per_second` counts in: one second, or a little less in
    /// tests that allow for a loaded machine's scheduling jitter.
    pub peak_window: Duration,
    /// The emulated OSS on the same address (path-style `/BUCKET/KEY`).
    pub oss: OssConfig,
}

/// The sandbox's OSS: where objects live, which buckets exist, which region signs, its faults.
#[derive(Clone, Debug, PartialEq)]
pub struct OssConfig {
    /// Objects are files `ROOT/BUCKET/KEY` when set, else held in memory.
    pub root: Option<PathBuf>,
    /// The buckets that exist; empty: every name valid by OSS's rules exists.
    pub buckets: Vec<String>,
    /// The one region signatures must be scoped to; `None`: any region (one address emulates
    /// every region's endpoint).
    pub region: Option<String>,
    pub faults: OssFaultRates,
    /// How long a `slow_body` fault takes to send an answer's body.
    pub slow_body_ms: u64,
}

impl Default for OssConfig {
    /// In memory, every valid bucket, any region, no faults, 2 s slow bodies.
    fn default() -> Self {
        OssConfig {
            root: None,
            buckets: Vec::new(),
            region: None,
            faults: OssFaultRates::default(),
            slow_body_ms: 2_000,
        }
    }
}

impl SandboxConfig {
    /// Loopback on a free port, the default key, default limits, no latency, no faults, seed 1.
    pub fn for_tests() -> Self {
        SandboxConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            access_key_id: DEFAULT_ACCESS_KEY_ID.to_string(),
            access_key_secret: DEFAULT_ACCESS_KEY_SECRET.to_string(),
            security_token: None,
            sts_lifetime: DEFAULT_STS_LIFETIME,
            role_arn: DEFAULT_ROLE_ARN.to_string(),
            oidc_provider_arn: DEFAULT_OIDC_PROVIDER_ARN.to_string(),
            oidc_token: None,
            ecs_role_name: DEFAULT_ECS_ROLE_NAME.to_string(),
            mts_qps: 100,
            ice_qps: 50,
            retry_after_ms: None,
            latency_ms: 0,
            latency_jitter_ms: 0,
            stall_ms: 30_000,
            faults: FaultRates::default(),
            seed: 1,
            max_faces_per_person: 10,
            peak_window: Duration::from_secs(1),
            oss: OssConfig::default(),
        }
    }

    /// What `run --sandbox` rehearses against: 40±20 ms latency and 0.5% errors on each side.
    pub fn realistic() -> Self {
        SandboxConfig {
            latency_ms: 40,
            latency_jitter_ms: 20,
            faults: FaultRates {
                error_before: 0.005,
                error_after: 0.005,
                ..FaultRates::default()
            },
            ..SandboxConfig::for_tests()
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("listen", &self.listen)
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"(redacted)")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "(redacted)"),
            )
            .field("sts_lifetime", &self.sts_lifetime)
            .field("role_arn", &self.role_arn)
            .field("oidc_provider_arn", &self.oidc_provider_arn)
            .field(
                "oidc_token",
                &self.oidc_token.as_ref().map(|_| "(redacted)"),
            )
            .field("ecs_role_name", &self.ecs_role_name)
            .field("mts_qps", &self.mts_qps)
            .field("ice_qps", &self.ice_qps)
            .field("retry_after_ms", &self.retry_after_ms)
            .field("latency_ms", &self.latency_ms)
            .field("latency_jitter_ms", &self.latency_jitter_ms)
            .field("peak_window", &self.peak_window)
            .field("stall_ms", &self.stall_ms)
            .field("faults", &self.faults)
            .field("seed", &self.seed)
            .field("max_faces_per_person", &self.max_faces_per_person)
            .field("oss", &self.oss)
            .finish()
    }
}

/// Independent per-request probabilities (0..=1) of each injected fault.
/// A fault rate outside 0..=1 (or not a number).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRates(pub String);

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultRates {
    /// 500 `InternalError`, nothing applied.
    pub error_before: f64,
    /// The call is applied, then 500 `InternalError`.
    pub error_after: f64,
    /// The connection is reset without an answer, nothing applied.
    pub reset_before: f64,
    /// The call is applied, then the connection is reset.
    pub reset_after: f64,
    /// The request is held `stall_ms`, then applied and answered.
    pub stall: f64,
    /// The call is applied, then 200 with a body that is not JSON (cycling: cut JSON, empty, HTML).
    pub malformed_after: f64,
    /// 502 with an HTML gateway page, nothing applied.
    pub html_before: f64,
    /// The request is held `stall_ms` and only then applied (and answered): a client with a
    /// shorter timeout has given up and may have looked and found nothing — a late landing.
    pub late: f64,
}

impl FaultRates {
    /// Names and values, in the order faults are drawn.
    pub(crate) fn named(&self) -> [(Fault, f64); 8] {
        [
            (Fault::HtmlBefore, self.html_before),
            (Fault::ResetBefore, self.reset_before),
            (Fault::ErrorBefore, self.error_before),
            (Fault::Stall, self.stall),
            (Fault::ResetAfter, self.reset_after),
            (Fault::ErrorAfter, self.error_after),
            (Fault::MalformedAfter, self.malformed_after),
            // Last, so adding it shifted no other fault's draws.
            (Fault::Late, self.late),
        ]
    }

    /// Every rate must be a number in 0..=1.
    pub fn validate(&self) -> Result<(), InvalidRates> {
        for (fault, rate) in self.named() {
            if !(0.0..=1.0).contains(&rate) {
                return Err(InvalidRates(format!(
                    "the {} rate must be between 0 and 1, not {rate}",
                    fault.name()
                )));
            }
        }
        Ok(())
    }
}

/// Independent per-request probabilities (0..=1) of the faults of OSS object requests, drawn
/// from a stream of their own (API faults do not shift them, nor they the API's).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OssFaultRates {
    /// 500 `InternalError` (OSS's XML error), nothing stored or read.
    pub error: f64,
    /// The connection is reset without an answer, nothing stored or read.
    pub reset: f64,
    /// The answer's body trickles out over `slow_body_ms` (an answer without a body, a PUT's
    /// or a HEAD's, is held that long before it is sent).
    pub slow_body: f64,
}

impl OssFaultRates {
    /// Names and values, in the order faults are drawn.
    pub(crate) fn named(&self) -> [(OssFault, f64); 3] {
        [
            (OssFault::Reset, self.reset),
            (OssFault::Error, self.error),
            (OssFault::SlowBody, self.slow_body),
        ]
    }

    /// Every rate must be a number in 0..=1.
    pub fn validate(&self) -> Result<(), InvalidRates> {
        for (fault, rate) in self.named() {
            if !(0.0..=1.0).contains(&rate) {
                return Err(InvalidRates(format!(
                    "the {} rate must be between 0 and 1, not {rate}",
                    fault.name()
                )));
            }
        }
        Ok(())
    }
}

/// One injected fault of an OSS object request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OssFault {
    Error,
    Reset,
    SlowBody,
}

impl OssFault {
    /// The snake_case name used in stats (`stats.faults`) and flags.
    pub fn name(self) -> &'static str {
        match self {
            OssFault::Error => "oss_error",
            OssFault::Reset => "oss_reset",
            OssFault::SlowBody => "oss_slow_body",
        }
    }
}

/// One injected fault; `Throttle` exists only in scripts and answers like the rate limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    ErrorBefore,
    ErrorAfter,
    ResetBefore,
    ResetAfter,
    Stall,
    MalformedAfter,
    HtmlBefore,
    Late,
    Throttle,
}

impl Fault {
    /// The snake_case name used in stats and flags.
    pub fn name(self) -> &'static str {
        match self {
            Fault::ErrorBefore => "error_before",
            Fault::ErrorAfter => "error_after",
            Fault::ResetBefore => "reset_before",
            Fault::ResetAfter => "reset_after",
            Fault::Stall => "stall",
            Fault::MalformedAfter => "malformed_after",
            Fault::HtmlBefore => "html_before",
            Fault::Late => "late",
            Fault::Throttle => "throttle",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_secret_or_token() {
        let mut config = SandboxConfig::for_tests();
        config.security_token = Some("tok-123".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains(DEFAULT_ACCESS_KEY_SECRET));
        assert!(!shown.contains("tok-123"));
        assert!(shown.contains(DEFAULT_ACCESS_KEY_ID));
    }

    #[test]
    fn fault_rates_outside_zero_to_one_are_refused() {
        assert!(SandboxConfig::realistic().faults.validate().is_ok());
        let bad = FaultRates {
            stall: 1.5,
            ..FaultRates::default()
        };
        assert!(bad.validate().unwrap_err().0.contains("stall"));
        let nan = FaultRates {
            error_after: f64::NAN,
            ..FaultRates::default()
        };
        assert!(nan.validate().is_err());
    }
}
