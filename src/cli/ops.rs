//! Flags of the operator commands (`status`, `export`, `verify`, `rollback`, `completions`) and
//! their conversion into the validated configurations of `crate::ops`.
//!
//! Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{ArgGroup, ValueEnum};

use super::ConnectArgs;
use crate::connect::SETTLE_MARGIN;
use crate::exit::UsageError;
use crate::ops::export::{ExportConfig, Format};
use crate::ops::rollback::{RollbackConfig, Scope};
use crate::ops::status::StatusConfig;
use crate::ops::verify::VerifyConfig;
use crate::target::TargetKind;

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
    pub fn config(&self) -> Result<StatusConfig, UsageError> {
        let ledger = match (&self.ledger, &self.manifest) {
            (Some(ledger), _) => ledger.clone(),
            (None, Some(manifest)) => {
                crate::target::TargetKind::Mts.default_ledger(manifest, false)
            }
            (None, None) => {
                return Err(UsageError::new("status needs --ledger PATH or a MANIFEST"));
            }
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
    /// Which import the ledger records (sets the default ledger path as `run` does; a ledger
    /// whose last run was an ICE import is recognised whatever this says).
    #[command(flatten)]
    pub target: super::TargetArgs,
    /// Write the figures to this Prometheus text file (node_exporter textfile collector).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl VerifyArgs {
    /// The ledger: `--ledger`, else the default beside the manifest for `--target`.
    pub fn ledger_path(&self) -> PathBuf {
        self.ledger
            .clone()
            .unwrap_or_else(|| self.target.kind().default_ledger(&self.manifest, false))
    }

    /// The validated configuration for the import's target `kind`.
    pub fn config(&self, kind: TargetKind) -> Result<VerifyConfig, UsageError> {
        let connect = self.connect.settings()?;
        Ok(VerifyConfig {
            manifest: self.manifest.clone(),
            ledger: self.ledger_path(),
            pace: connect.pace(kind, SETTLE_MARGIN),
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
    /// Also print the outcome as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl RollbackArgs {
    /// The validated configuration for the import's target `kind` (the ledger's).
    pub fn config(&self, kind: TargetKind) -> Result<RollbackConfig, UsageError> {
        let connect = self.connect.settings()?;
        let scope = match &self.run {
            Some(run) if run.trim().is_empty() => {
                return Err(UsageError::new("--run needs a run id"));
            }
            Some(run) => Scope::Run(run.trim().to_string()),
            None => Scope::All,
        };
        Ok(RollbackConfig {
            ledger: self.ledger.clone(),
            scope,
            yes: self.yes,
            json: self.json,
            pace: connect.pace(kind, SETTLE_MARGIN),
            concurrency: connect.concurrency(kind),
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
    use crate::target::TargetKind;

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
            args.config(TargetKind::Mts).unwrap().scope,
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
        assert!(args.config(TargetKind::Mts).unwrap().repair);
        let Command::Verify(args) = parse(&["verify", "m.csv", "--max-attempts", "0"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(
            args.config(TargetKind::Mts)
                .unwrap_err()
                .0
                .contains("--max-attempts")
        );
    }
}
