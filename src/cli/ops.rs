//! Flags of the operator commands (`status`, `export`, `verify`, `rollback`, `completions`) and
//! their conversion into the validated configurations of `crate::ops`.
//!
//! Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{ArgGroup, ValueEnum};

use super::Limits;
use crate::ops::export::{ExportConfig, Format};
use crate::ops::rollback::{RollbackConfig, Scope};
use crate::ops::status::StatusConfig;
use crate::ops::verify::VerifyConfig;

/// How `verify` and `rollback` reach the service: the same flags and credentials as `run`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Service endpoint URL overriding the regional one (e.g. a standalone sandbox at
    /// http://127.0.0.1:8686/).
    #[arg(long, conflicts_with = "region")]
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
    /// Requests per second, retries and look-ups included; 0 = unlimited.
    #[arg(long, default_value_t = 100)]
    pub qps: u32,
    /// Attempts per request, the first included.
    #[arg(long, default_value_t = 8)]
    pub max_attempts: u32,
    /// Seconds to wait for one answer before giving the attempt up.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Seed for the backoff jitter (reproducible runs in tests).
    #[arg(long, hide = true, env = "FACE_ENROLL_SEED")]
    pub seed: Option<u64>,
}

impl ConnectArgs {
    /// Checks the numeric flags against the same limits as `run`.
    pub fn validate(&self) -> Result<(), String> {
        Limits::check(self.qps, self.max_attempts, self.timeout)
    }

    /// Requests in flight: enough to use the budget at a few hundred ms of latency, as `run`.
    pub fn concurrency(&self) -> usize {
        match self.qps {
            0 => 64,
            qps => (qps as usize / 2).clamp(8, 256),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Manifest: also show how much is left to do for it (its ledger is the default one beside it).
    pub manifest: Option<PathBuf>,
    /// Ledger to read [default: the manifest's path with extension .ledger.jsonl].
    #[arg(long, required_unless_present = "manifest")]
    pub ledger: Option<PathBuf>,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
}

impl StatusArgs {
    pub fn config(&self) -> Result<StatusConfig, String> {
        let ledger = match (&self.ledger, &self.manifest) {
            (Some(ledger), _) => ledger.clone(),
            (None, Some(manifest)) => crate::ledger::default_path(manifest, false),
            (None, None) => return Err("status needs --ledger PATH or a MANIFEST".into()),
        };
        Ok(StatusConfig {
            ledger,
            manifest: self.manifest.clone(),
            json: self.json,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated, cells that a spreadsheet would evaluate prefixed with `'`.
    Csv,
    /// One JSON object per line, values exactly as recorded.
    Jsonl,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Ledger to read.
    #[arg(long)]
    pub ledger: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Write to this file (atomically: a temporary file, then a rename) instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

impl ExportArgs {
    pub fn config(&self) -> ExportConfig {
        ExportConfig {
            ledger: self.ledger.clone(),
            format: match self.format {
                ExportFormat::Csv => Format::Csv,
                ExportFormat::Jsonl => Format::Jsonl,
            },
            output: self.output.clone(),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// CSV manifest the server should hold.
    pub manifest: PathBuf,
    /// Ledger to compare [default: the manifest's path with extension .ledger.jsonl].
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Make the ledger agree with the server: adopt orphans that match manifest rows, mark
    /// vanished FaceIds removed (the next run registers them again). Needs --yes.
    #[arg(long)]
    pub repair: bool,
    /// Also unregister the extra copies of images registered more than once, by FaceId (the
    /// copy the ledger knows, else the first, stays). Implies --repair. Needs --yes.
    #[arg(long)]
    pub prune_duplicates: bool,
    /// Apply --repair / --prune-duplicates; without it they only print what they would do.
    #[arg(long)]
    pub yes: bool,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Which import the ledger records: MTS custom faces, or ICE recognition libraries (sets the
    /// default ledger path as `run` does; an ICE ledger is recognised whatever this says).
    #[arg(long, value_enum, default_value_t = crate::cli::TargetArg::Mts)]
    pub target: crate::cli::TargetArg,
    /// Write the figures to this Prometheus text file (node_exporter textfile collector).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl VerifyArgs {
    pub fn config(&self) -> Result<VerifyConfig, String> {
        self.connect.validate()?;
        Ok(VerifyConfig {
            manifest: self.manifest.clone(),
            ledger: self.ledger.clone().unwrap_or_else(|| match self.target {
                crate::cli::TargetArg::Mts => crate::ledger::default_path(&self.manifest, false),
                crate::cli::TargetArg::Ice => {
                    crate::ledger::default_ice_path(&self.manifest, false)
                }
            }),
            qps: self.connect.qps,
            max_attempts: self.connect.max_attempts,
            seed: self.connect.seed,
            repair: self.repair || self.prune_duplicates,
            prune_duplicates: self.prune_duplicates,
            yes: self.yes,
            json: self.json,
            metrics: self.metrics.clone(),
        })
    }
}

#[derive(clap::Args, Debug)]
#[command(group(ArgGroup::new("scope").required(true).args(["run", "all"])))]
pub struct RollbackArgs {
    /// Ledger whose registered faces are unregistered.
    #[arg(long)]
    pub ledger: PathBuf,
    /// Only the faces registered by this run (its id is in `status` and in every record).
    #[arg(long)]
    pub run: Option<String>,
    /// Every face the ledger records as registered.
    #[arg(long)]
    pub all: bool,
    /// Unregister; without it the plan is printed and nothing changes.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl RollbackArgs {
    pub fn config(&self) -> Result<RollbackConfig, String> {
        self.connect.validate()?;
        let scope = match &self.run {
            Some(run) if run.trim().is_empty() => return Err("--run needs a run id".into()),
            Some(run) => Scope::Run(run.trim().to_string()),
            None => Scope::All,
        };
        Ok(RollbackConfig {
            ledger: self.ledger.clone(),
            scope,
            yes: self.yes,
            qps: self.connect.qps,
            max_attempts: self.connect.max_attempts,
            concurrency: self.connect.concurrency(),
            seed: self.connect.seed,
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// Shell to print completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("face-enroll").chain(args.iter().copied()))
    }

    #[test]
    fn rollback_needs_exactly_one_of_run_and_all() {
        assert!(parse(&["rollback", "--ledger", "l"]).is_err());
        assert!(parse(&["rollback", "--ledger", "l", "--run", "r", "--all"]).is_err());
        let Command::Rollback(args) = parse(&["rollback", "--ledger", "l", "--all"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(!args.yes);
        assert_eq!(
            args.config().unwrap().scope,
            crate::ops::rollback::Scope::All
        );
    }

    #[test]
    fn status_takes_a_ledger_or_a_manifest_and_defaults_the_ledger_beside_the_manifest() {
        assert!(parse(&["status"]).is_err());
        let Command::Status(args) = parse(&["status", "data/m.csv"]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            args.config().unwrap().ledger,
            std::path::PathBuf::from("data/m.ledger.jsonl")
        );
    }

    #[test]
    fn prune_duplicates_implies_repair_and_limits_are_checked() {
        let Command::Verify(args) = parse(&["verify", "m.csv", "--prune-duplicates"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(args.config().unwrap().repair);
        let Command::Verify(args) = parse(&["verify", "m.csv", "--max-attempts", "0"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(args.config().unwrap_err().contains("--max-attempts"));
    }
}
