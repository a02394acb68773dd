//! Flags of `face-enroll sandbox`: run the local emulator of the MTS and ICE APIs (and of OSS,
//! on the same address) in the foreground until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::sandbox::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, DEFAULT_ECS_ROLE_NAME,
    DEFAULT_OIDC_PROVIDER_ARN, DEFAULT_ROLE_ARN, FaultRates, OssConfig, OssFaultRates,
    SandboxConfig,
};

/// Run a local emulator of the MTS custom-face and ICE recognition-library APIs.
#[derive(clap::Args, Debug)]
pub struct SandboxArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8686")]
    pub listen: SocketAddr,
    /// The access key id the sandbox accepts.
    #[arg(long, value_name = "ID", default_value = DEFAULT_ACCESS_KEY_ID)]
    pub access_key_id: String,
    /// The secret that goes with the access key id.
    #[arg(long, value_name = "SECRET", default_value = DEFAULT_ACCESS_KEY_SECRET, hide_default_value = true)]
    pub access_key_secret: String,
    /// Require this STS security token on every request.
    #[arg(long, value_name = "TOKEN")]
    pub security_token: Option<String>,
    /// How long the temporary credentials of the emulated STS, ECS metadata service and
    /// credentials URI live (e.g. 5s, 15m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = super::parse_duration)]
    pub sts_lifetime: std::time::Duration,
    /// The RAM role the emulated STS lets callers assume.
    #[arg(long, value_name = "ARN", default_value = DEFAULT_ROLE_ARN)]
    pub role_arn: String,
    /// The OIDC provider the emulated AssumeRoleWithOIDC trusts.
    #[arg(long, value_name = "ARN", default_value = DEFAULT_OIDC_PROVIDER_ARN)]
    pub oidc_provider_arn: String,
    /// The OIDC token AssumeRoleWithOIDC accepts [default: any non-empty token].
    #[arg(long, value_name = "TOKEN")]
    pub oidc_token: Option<String>,
    /// The RAM role name of the emulated ECS instance.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ECS_ROLE_NAME)]
    pub ecs_role_name: String,
    /// Requests per second per MTS action (0 = unlimited).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub mts_qps: u32,
    /// Requests per second per ICE action (0 = unlimited).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub ice_qps: u32,
    /// Send `x-acs-retry-after` on throttling: this many ms, or 0 for the time until a slot frees.
    #[arg(long, value_name = "MS")]
    pub retry_after_ms: Option<u64>,
    /// Delay before handling every request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Uniform jitter around the latency (latency ± jitter), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_jitter_ms: u64,
    /// How long the answer to a stalled call is held (the call itself is applied at once).
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub stall_ms: u64,
    /// Rate (0..=1) of 500 InternalError with nothing applied.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub error_before: f64,
    /// Rate (0..=1) of calls applied and then answered 500 InternalError.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub error_after: f64,
    /// Rate (0..=1) of connections reset with nothing applied.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub reset_before: f64,
    /// Rate (0..=1) of calls applied and then reset without an answer.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub reset_after: f64,
    /// Rate (0..=1) of calls applied at once but answered only after --stall-ms.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub stall: f64,
    /// Rate (0..=1) of calls held --stall-ms and only then applied (a late landing).
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub late: f64,
    /// Rate (0..=1) of calls applied and then answered 200 with a body that is not JSON.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub malformed_after: f64,
    /// Rate (0..=1) of 502 HTML gateway pages with nothing applied.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub html_before: f64,
    /// Seed of the fault draws, latency jitter and generated ids.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// How many faces one person may have.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_faces_per_person: usize,
    /// Keep OSS objects as files DIR/BUCKET/KEY (read at each request, so files put there by
    /// hand are served) [default: in memory, gone at exit].
    #[arg(long, value_name = "DIR")]
    pub oss_root: Option<PathBuf>,
    /// A bucket that exists in the sandbox's OSS (repeat for more); other buckets are 404
    /// NoSuchBucket [default: every name valid by OSS's rules exists].
    #[arg(long = "oss-bucket", value_name = "NAME")]
    pub oss_buckets: Vec<String>,
    /// Accept OSS signatures scoped to this region only, like a real endpoint [default: any
    /// region: one address stands for every region's endpoint].
    #[arg(long, value_name = "REGION")]
    pub oss_region: Option<String>,
    /// Rate (0..=1) of OSS object requests answered 500 InternalError, nothing stored or read.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub oss_error: f64,
    /// Rate (0..=1) of OSS object requests whose connection is reset without an answer.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub oss_reset: f64,
    /// Rate (0..=1) of OSS answers whose body trickles out over --oss-slow-body-ms (an answer
    /// without a body, a PUT's, is held that long).
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub oss_slow_body: f64,
    /// How long a slow OSS body takes (an answer without a body is held that long).
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    pub oss_slow_body_ms: u64,
    /// Write the final state (JSON) to this file at exit.
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Listen on an address other machines can reach (needs a --access-key-secret of your own).
    #[arg(long)]
    pub allow_remote: bool,
}

fn parse_rate(text: &str) -> Result<f64, crate::exit::UsageError> {
    let rate: f64 = text
        .parse()
        .map_err(|_| crate::exit::UsageError(format!("\"{text}\" is not a number")))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(crate::exit::UsageError(format!(
            "{rate} is not a rate between 0 and 1"
        )))
    }
}

impl SandboxArgs {
    /// The validated configuration and where to write the state at exit.
    pub fn into_config(self) -> anyhow::Result<(SandboxConfig, Option<PathBuf>)> {
        self.faults().validate().map_err(anyhow::Error::msg)?;
        self.check_credentials()?;
        self.check_listen()?;
        anyhow::ensure!(
            self.max_faces_per_person >= 1,
            "--max-faces-per-person must be at least 1"
        );
        self.check_oss()?;
        Ok(self.build())
    }

    /// The API's fault rates, as the flags give them.
    fn faults(&self) -> FaultRates {
        FaultRates {
            error_before: self.error_before,
            error_after: self.error_after,
            reset_before: self.reset_before,
            reset_after: self.reset_after,
            stall: self.stall,
            late: self.late,
            malformed_after: self.malformed_after,
            html_before: self.html_before,
        }
    }

    /// OSS's fault rates, as the flags give them.
    fn oss_faults(&self) -> OssFaultRates {
        OssFaultRates {
            error: self.oss_error,
            reset: self.oss_reset,
            slow_body: self.oss_slow_body,
        }
    }

    /// The access key and the STS lifetime are usable.
    fn check_credentials(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.access_key_id.is_empty(),
            "--access-key-id must not be empty"
        );
        anyhow::ensure!(
            !self.access_key_secret.is_empty(),
            "--access-key-secret must not be empty"
        );
        anyhow::ensure!(
            self.sts_lifetime >= std::time::Duration::from_secs(1),
            "--sts-lifetime must be at least 1s"
        );
        Ok(())
    }

    /// An address other machines can reach is listened on only when asked for, and never with
    /// the public default secret.
    fn check_listen(&self) -> anyhow::Result<()> {
        let remote = !self.listen.ip().is_loopback();
        anyhow::ensure!(
            !remote || self.allow_remote,
            "--listen {}: not a loopback address, so other machines could call this sandbox; \
             add --allow-remote and a --access-key-secret of your own, or listen on 127.0.0.1",
            self.listen
        );
        anyhow::ensure!(
            !remote || self.access_key_secret != DEFAULT_ACCESS_KEY_SECRET,
            "--listen {} with --allow-remote: give a --access-key-secret of your own (the default \
             one is public)",
            self.listen
        );
        Ok(())
    }

    /// The OSS buckets and region are names OSS takes, and its fault rates are rates.
    fn check_oss(&self) -> anyhow::Result<()> {
        for bucket in &self.oss_buckets {
            crate::sign::oss::object::check_bucket(bucket)
                .map_err(|e| anyhow::anyhow!("--oss-bucket: {e}"))?;
        }
        if let Some(region) = &self.oss_region {
            anyhow::ensure!(
                crate::sign::oss::is_region(region),
                "--oss-region '{region}' is not a region id like cn-hangzhou"
            );
        }
        self.oss_faults().validate().map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// The configuration the checked flags make, and the state file.
    fn build(self) -> (SandboxConfig, Option<PathBuf>) {
        let (faults, oss_faults) = (self.faults(), self.oss_faults());
        let oss = OssConfig {
            root: self.oss_root,
            buckets: self.oss_buckets,
            region: self.oss_region,
            faults: oss_faults,
            slow_body_ms: self.oss_slow_body_ms,
        };
        let config = SandboxConfig {
            listen: self.listen,
            access_key_id: self.access_key_id,
            access_key_secret: self.access_key_secret,
            security_token: self.security_token.filter(|t| !t.is_empty()),
            sts_lifetime: self.sts_lifetime,
            role_arn: self.role_arn,
            oidc_provider_arn: self.oidc_provider_arn,
            oidc_token: self.oidc_token.filter(|t| !t.is_empty()),
            ecs_role_name: self.ecs_role_name,
            mts_qps: self.mts_qps,
            ice_qps: self.ice_qps,
            retry_after_ms: self.retry_after_ms,
            latency_ms: self.latency_ms,
            latency_jitter_ms: self.latency_jitter_ms,
            stall_ms: self.stall_ms,
            faults,
            seed: self.seed,
            max_faces_per_person: self.max_faces_per_person,
            peak_window: std::time::Duration::from_secs(1),
            oss,
        };
        (config, self.state_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: SandboxArgs,
    }

    fn parse(flags: &[&str]) -> Result<SandboxArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("sandbox").chain(flags.iter().copied()))
            .map(|cli| cli.args)
    }

    #[test]
    fn defaults_match_the_documented_sandbox() {
        let (config, state_file) = parse(&[]).unwrap().into_config().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8686");
        assert_eq!(
            (
                config.access_key_id.as_str(),
                config.access_key_secret.as_str()
            ),
            (DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)
        );
        assert_eq!(
            (
                config.mts_qps,
                config.ice_qps,
                config.stall_ms,
                config.max_faces_per_person
            ),
            (100, 50, 30_000, 10)
        );
        assert_eq!(config.faults, FaultRates::default());
        assert_eq!(config.sts_lifetime, crate::sandbox::DEFAULT_STS_LIFETIME);
        assert_eq!(config.role_arn, DEFAULT_ROLE_ARN);
        assert!(state_file.is_none());
    }

    #[test]
    fn fault_rates_outside_zero_to_one_are_refused_by_the_parser() {
        assert!(parse(&["--error-after", "1.5"]).is_err());
        assert!(parse(&["--stall", "-0.1"]).is_err());
        assert!(parse(&["--html-before", "many"]).is_err());
        let args = parse(&[
            "--reset-after",
            "0.25",
            "--seed",
            "7",
            "--state-file",
            "/tmp/s.json",
        ])
        .unwrap();
        let (config, state_file) = args.into_config().unwrap();
        assert_eq!((config.faults.reset_after, config.seed), (0.25, 7));
        assert_eq!(state_file, Some(PathBuf::from("/tmp/s.json")));
    }

    #[test]
    fn a_non_loopback_listen_needs_allow_remote_and_a_secret_of_ones_own() {
        let open = parse(&["--listen", "0.0.0.0:8686"]).unwrap().into_config();
        assert!(open.unwrap_err().to_string().contains("--allow-remote"));
        let default_secret = parse(&["--listen", "0.0.0.0:8686", "--allow-remote"])
            .unwrap()
            .into_config();
        assert!(
            default_secret
                .unwrap_err()
                .to_string()
                .contains("of your own")
        );
        let own = parse(&[
            "--listen",
            "0.0.0.0:8686",
            "--allow-remote",
            "--access-key-secret",
            "s3cret-of-mine",
        ])
        .unwrap()
        .into_config();
        assert!(own.is_ok());
    }

    #[test]
    fn oss_flags_reach_the_config_and_bad_buckets_or_regions_are_refused() {
        let (config, _) = parse(&[
            "--oss-root",
            "/tmp/oss",
            "--oss-bucket",
            "photos",
            "--oss-bucket",
            "more-photos",
            "--oss-region",
            "cn-hangzhou",
            "--oss-reset",
            "0.5",
            "--oss-slow-body-ms",
            "300",
        ])
        .unwrap()
        .into_config()
        .unwrap();
        assert_eq!(config.oss.root, Some(PathBuf::from("/tmp/oss")));
        assert_eq!(config.oss.buckets, ["photos", "more-photos"]);
        assert_eq!(config.oss.region.as_deref(), Some("cn-hangzhou"));
        assert_eq!(
            (config.oss.faults.reset, config.oss.slow_body_ms),
            (0.5, 300)
        );
        let (default, _) = parse(&[]).unwrap().into_config().unwrap();
        assert_eq!(default.oss, OssConfig::default());
        let bad_bucket = parse(&["--oss-bucket", "Photos"]).unwrap().into_config();
        assert!(bad_bucket.unwrap_err().to_string().contains("--oss-bucket"));
        let bad_region = parse(&["--oss-region", "CN"]).unwrap().into_config();
        assert!(bad_region.unwrap_err().to_string().contains("--oss-region"));
        assert!(parse(&["--oss-error", "2"]).is_err());
    }

    #[test]
    fn each_fault_flag_reaches_its_own_rate() {
        let args = parse(&[
            "--error-before",
            "0.01",
            "--error-after",
            "0.02",
            "--reset-before",
            "0.03",
            "--reset-after",
            "0.04",
            "--stall",
            "0.05",
            "--late",
            "0.06",
            "--malformed-after",
            "0.07",
            "--html-before",
            "0.08",
            "--oss-error",
            "0.09",
            "--oss-reset",
            "0.1",
            "--oss-slow-body",
            "0.11",
        ])
        .unwrap();
        let f = args.faults();
        assert_eq!(
            [
                f.error_before,
                f.error_after,
                f.reset_before,
                f.reset_after,
                f.stall,
                f.late,
                f.malformed_after,
                f.html_before
            ],
            [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]
        );
        let o = args.oss_faults();
        assert_eq!([o.error, o.reset, o.slow_body], [0.09, 0.1, 0.11]);
    }

    #[test]
    fn empty_keys_and_a_lifetime_under_a_second_are_refused_by_name() {
        let refused = |flags: &[&str]| {
            parse(flags)
                .unwrap()
                .check_credentials()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(&["--access-key-id", ""]),
            "--access-key-id must not be empty"
        );
        assert_eq!(
            refused(&["--access-key-secret", ""]),
            "--access-key-secret must not be empty"
        );
        assert_eq!(
            refused(&["--sts-lifetime", "999ms"]),
            "--sts-lifetime must be at least 1s"
        );
        assert!(
            parse(&["--sts-lifetime", "1s"])
                .unwrap()
                .check_credentials()
                .is_ok()
        );
    }

    #[test]
    fn sts_lifetime_takes_a_duration_with_units() {
        let (config, _) = parse(&["--sts-lifetime", "5s"])
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(config.sts_lifetime, std::time::Duration::from_secs(5));
        assert!(parse(&["--sts-lifetime", "soon"]).is_err());
        assert!(
            parse(&["--sts-lifetime", "0s"])
                .unwrap()
                .into_config()
                .is_err()
        );
    }
}
