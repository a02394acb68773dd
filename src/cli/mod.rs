//! Command-line flags (clap) and their conversion into validated configuration.
//!
//! Doc comments here are the `--help` text. Nothing outside this module sees clap types.

pub mod lib;
pub mod ops;
pub mod sandbox;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::report::ProgressMode;

/// Register reference face images with Alibaba Cloud MTS, exactly once, paced, resumable.
#[derive(Parser, Debug)]
#[command(name = "face-enroll", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Register every image of a manifest; re-run to resume where the last run stopped.
    Run(RunArgs),
    /// Validate a manifest and print the plan; sends nothing.
    Check(CheckArgs),
    /// Run the local emulator of the MTS and ICE APIs.
    Sandbox(sandbox::SandboxArgs),
    /// ICE custom recognition libraries: create, list, delete; list entities and samples.
    Lib(lib::LibArgs),
    /// What the ledger says: images per status and library, the last run, what is left to do.
    Status(ops::StatusArgs),
    /// One row per registered image with its FaceId, as CSV or JSON Lines.
    Export(ops::ExportArgs),
    /// Compare the server with the manifest and the ledger; optionally repair the ledger.
    Verify(ops::VerifyArgs),
    /// Unregister, by FaceId, the faces one run (or every run) registered.
    Rollback(ops::RollbackArgs),
    /// Print shell completions.
    Completions(ops::CompletionsArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// CSV manifest with columns category_id, person_id, image_url [, person_name].
    pub manifest: PathBuf,
    /// Ledger file [default: the manifest's path with extension .ledger.jsonl, or
    /// .sandbox.ledger.jsonl with --sandbox; .ice.ledger.jsonl / .ice.sandbox.ledger.jsonl for
    /// --target ice].
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Where to register: MTS custom faces, or ICE custom recognition libraries.
    #[arg(long, value_enum, default_value_t = TargetArg::Mts)]
    pub target: TargetArg,
    /// ICE only: the recognition algorithm of the libraries (landmark, object, logo, face, label).
    #[arg(long, value_parser = lib::parse_algorithm, default_value = "face")]
    pub algorithm: crate::api::Algorithm,
    /// Service endpoint URL overriding the regional one (e.g. a sandbox at http://127.0.0.1:8686/).
    #[arg(long, conflicts_with_all = ["region", "sandbox"])]
    pub endpoint: Option<String>,
    /// Region [default: ALIBABA_CLOUD_REGION_ID, the profile's region_id, else cn-shanghai].
    #[arg(long)]
    pub region: Option<String>,
    /// Profile of ~/.aliyun/config.json to use (any mode the credentials chain knows).
    #[arg(long)]
    pub profile: Option<String>,
    /// Request signature: v3 (ACS3-HMAC-SHA256, the official SDKs' default) or v1 (HMAC-SHA1).
    #[arg(long, value_name = "v1|v3", default_value_t = crate::sign::SignatureVersion::V3)]
    pub signature: crate::sign::SignatureVersion,
    /// Requests per second for this run, retries and look-ups included; 0 = unlimited
    /// [default: 100 for MTS, 50 for ICE].
    #[arg(
        long,
        default_value_t = 100,
        default_value_if("target", "ice", "50"),
        hide_default_value = true
    )]
    pub qps: u32,
    /// Requests in flight at most [default: half the --qps, at least 8; 64 when unlimited].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Attempts per request, the first included.
    #[arg(long, default_value_t = 8)]
    pub max_attempts: u32,
    /// Seconds to wait for one answer before giving the attempt up.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Start no new work after this long (e.g. 50m, 1h30m), finish what is in flight, exit 5.
    #[arg(long, value_parser = parse_duration)]
    pub max_duration: Option<std::time::Duration>,
    /// Send rows again whose last record is `failed`.
    #[arg(long)]
    pub retry_failed: bool,
    /// Run against the built-in sandbox (in-process, realistic latency, a few 500s); no credentials.
    #[arg(long)]
    pub sandbox: bool,
    /// Progress display: a bar on a terminal, a log line every 10 s otherwise.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Print only warnings and errors (no progress, no summary on stderr).
    #[arg(short, long)]
    pub quiet: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Write rows that were not registered (invalid, over the limit, refused by the service) to
    /// this CSV file.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Write the run's figures to this Prometheus text file (node_exporter textfile collector),
    /// atomically.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Seed for the backoff jitter (reproducible runs in tests).
    #[arg(long, hide = true, env = "FACE_ENROLL_SEED")]
    pub seed: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// CSV manifest to validate.
    pub manifest: PathBuf,
    /// Ledger to plan against [default: the manifest's path with extension .ledger.jsonl, or
    /// .ice.ledger.jsonl with --target ice].
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Requests per second used for the time estimate [default: 100 for MTS, 50 for ICE].
    #[arg(long)]
    pub qps: Option<u32>,
    /// Plan for MTS custom faces (10 images per person) or ICE recognition libraries (names of
    /// at most 64 bytes, no per-person limit).
    #[arg(long, value_enum, default_value_t = TargetArg::Mts)]
    pub target: TargetArg,
}

impl CheckArgs {
    pub fn ledger_path(&self) -> PathBuf {
        self.ledger.clone().unwrap_or_else(|| match self.target {
            TargetArg::Mts => crate::ledger::default_path(&self.manifest, false),
            TargetArg::Ice => crate::ledger::default_ice_path(&self.manifest, false),
        })
    }

    pub fn qps(&self) -> u32 {
        self.qps.unwrap_or(match self.target {
            TargetArg::Mts => 100,
            TargetArg::Ice => 50,
        })
    }

    pub fn rules(&self) -> crate::plan::Rules {
        match self.target {
            TargetArg::Mts => crate::plan::Rules::MTS,
            TargetArg::Ice => crate::ice::plan_rules(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// MTS custom faces (RegisterCustomFace).
    Mts,
    /// ICE custom recognition libraries (libraries, entities, samples).
    Ice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Bar,
    Log,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl From<ProgressArg> for ProgressMode {
    fn from(value: ProgressArg) -> ProgressMode {
        match value {
            ProgressArg::Auto => ProgressMode::Auto,
            ProgressArg::Bar => ProgressMode::Bar,
            ProgressArg::Log => ProgressMode::Log,
            ProgressArg::Off => ProgressMode::Off,
        }
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::clock::parse_duration(text)
}

/// The limits on numeric flags, checked once.
pub struct Limits;

impl Limits {
    pub const MAX_QPS: u32 = 10_000;
    pub const MAX_CONCURRENCY: usize = 1024;
    pub const MAX_ATTEMPTS: u32 = 100;
    pub const MAX_TIMEOUT_S: u64 = 600;

    /// Checks `--qps`, `--max-attempts` and `--timeout`, which every command that talks to the
    /// service takes; the message names the flag and what is allowed.
    pub fn check(qps: u32, max_attempts: u32, timeout_s: u64) -> Result<(), String> {
        if qps > Limits::MAX_QPS {
            return Err(format!(
                "--qps {qps}: at most {} (0 = unlimited)",
                Limits::MAX_QPS
            ));
        }
        if !(1..=Limits::MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(format!(
                "--max-attempts {max_attempts}: between 1 and {}",
                Limits::MAX_ATTEMPTS
            ));
        }
        if !(1..=Limits::MAX_TIMEOUT_S).contains(&timeout_s) {
            return Err(format!(
                "--timeout {timeout_s}: between 1 and {} seconds",
                Limits::MAX_TIMEOUT_S
            ));
        }
        Ok(())
    }
}

impl RunArgs {
    /// Checks the numeric flags; the message says which flag and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        Limits::check(self.qps, self.max_attempts, self.timeout)?;
        if let Some(c) = self.concurrency
            && !(1..=Limits::MAX_CONCURRENCY).contains(&c)
        {
            return Err(format!(
                "--concurrency {c}: between 1 and {}",
                Limits::MAX_CONCURRENCY
            ));
        }
        if self.max_duration.is_some_and(|d| d.is_zero()) {
            return Err("--max-duration must be longer than zero".into());
        }
        Ok(())
    }

    /// Enough requests in flight to reach the budget at a few hundred ms of latency.
    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(match self.qps {
            0 => 64,
            qps => (qps as usize / 2).clamp(8, 256),
        })
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.ledger.clone().unwrap_or_else(|| match self.target {
            TargetArg::Mts => crate::ledger::default_path(&self.manifest, self.sandbox),
            TargetArg::Ice => crate::ledger::default_ice_path(&self.manifest, self.sandbox),
        })
    }

    /// The validated target.
    pub fn target(&self) -> crate::pipeline::Target {
        match self.target {
            TargetArg::Mts => crate::pipeline::Target::Mts,
            TargetArg::Ice => crate::pipeline::Target::Ice(self.algorithm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("face-enroll").chain(args.iter().copied()))
    }

    #[test]
    fn run_defaults_match_the_documented_ones() {
        let Command::Run(run) = parse(&["run", "m.csv"]).unwrap().command else {
            panic!()
        };
        assert_eq!((run.qps, run.max_attempts, run.timeout), (100, 8, 10));
        assert_eq!(run.concurrency(), 50);
        assert_eq!(run.ledger_path(), PathBuf::from("m.ledger.jsonl"));
        assert!(run.validate().is_ok());
    }

    #[test]
    fn endpoint_and_sandbox_cannot_be_combined() {
        assert!(
            parse(&[
                "run",
                "m.csv",
                "--sandbox",
                "--endpoint",
                "http://127.0.0.1:1/"
            ])
            .is_err()
        );
    }

    #[test]
    fn out_of_range_numbers_name_the_flag() {
        let Command::Run(run) = parse(&["run", "m.csv", "--max-attempts", "0"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(run.validate().unwrap_err().contains("--max-attempts"));
        let Command::Run(run) = parse(&["run", "m.csv", "--qps", "0"]).unwrap().command else {
            panic!()
        };
        assert_eq!(run.concurrency(), 64);
    }

    #[test]
    fn the_ice_target_defaults_to_50_qps_face_and_its_own_ledger() {
        let Command::Run(run) = parse(&["run", "m.csv", "--target", "ice"]).unwrap().command else {
            panic!()
        };
        assert_eq!(run.qps, 50);
        assert_eq!(
            run.target(),
            crate::pipeline::Target::Ice(crate::api::Algorithm::Face)
        );
        assert_eq!(run.ledger_path(), PathBuf::from("m.ice.ledger.jsonl"));
        let Command::Run(run) = parse(&["run", "m.csv", "--target", "ice", "--qps", "20"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(run.qps, 20, "a given --qps wins");
        let Command::Run(run) = parse(&["run", "m.csv"]).unwrap().command else {
            panic!()
        };
        assert_eq!(run.target(), crate::pipeline::Target::Mts);
    }

    #[test]
    fn max_duration_takes_units() {
        let Command::Run(run) = parse(&["run", "m.csv", "--max-duration", "50m"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(run.max_duration, Some(std::time::Duration::from_secs(3000)));
        assert!(parse(&["run", "m.csv", "--max-duration", "50 parsecs"]).is_err());
    }
}
