//! Flags of the operator commands (`status`, `export`, `report`, `verify`, `rollback`,
//! `completions`) and their conversion into the validated configurations of `crate::ops`.
//!
//! Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{ArgGroup, ValueEnum};

use super::ConnectArgs;
use crate::exit::UsageError;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Manifest: also show how much is left to do for it (its ledger is the default one beside it).
    pub manifest: Option<PathBuf>,
    /// Ledger to read [default: the manifest's path with extension .ledger.jsonl, as `run`
    /// names it for --target and --sandbox].
    #[arg(long, required_unless_present = "manifest")]
    pub ledger: Option<PathBuf>,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// List every row not registered now, across runs (failed, invalid, skipped, pending): line,
    /// ids, URL, status, last code and message, attempts, run.
    #[arg(long)]
    pub failed: bool,
    /// The sandbox's ledger (the one `run --sandbox` writes beside the manifest).
    #[arg(long)]
    pub sandbox: bool,
    #[command(flatten)]
    pub target: super::TargetArgs,
}

/// The ledger a manifest-based operator command reads: `--ledger`, else `run`'s default for
/// the target and `--sandbox`.
pub(crate) fn ledger_for(
    ledger: &Option<PathBuf>,
    manifest: &Option<PathBuf>,
    target: &super::TargetArgs,
    sandbox: bool,
    command: &str,
) -> Result<PathBuf, UsageError> {
    target.check()?;
    match (ledger, manifest) {
        (Some(ledger), _) => Ok(ledger.clone()),
        (None, Some(manifest)) => Ok(target.kind().default_ledger(manifest, sandbox)),
        (None, None) => Err(UsageError::new(format!(
            "{command} needs --ledger PATH or a MANIFEST"
        ))),
    }
}

#[derive(clap::Args, Debug)]
pub struct RunsArgs {
    /// Ledger to read.
    #[arg(long)]
    pub ledger: PathBuf,
    /// Print the runs as one JSON array.
    #[arg(long)]
    pub json: bool,
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
    /// Manifest whose default ledger to read (as `run` names it for --target and --sandbox).
    pub manifest: Option<PathBuf>,
    /// Ledger to read.
    #[arg(long, required_unless_present = "manifest")]
    pub ledger: Option<PathBuf>,
    /// The sandbox's ledger (the one `run --sandbox` writes beside the manifest).
    #[arg(long)]
    pub sandbox: bool,
    #[command(flatten)]
    pub target: super::TargetArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Write to this file (atomically: a temporary file, then a rename; mode 0600) instead of
    /// stdout (`-` is stdout too).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ThumbnailsArg {
    /// Fetch each photo once, shrink it and put it in the page: no link that can expire.
    Embed,
    /// Show each photo from the manifest's URL (only while that link works); an `oss://`
    /// object through a link signed for the page, valid for --link-ttl.
    Link,
    /// No pictures: names, statuses and reasons only.
    None,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// CSV manifest whose rows the report shows (each with the state its image is in now).
    pub manifest: PathBuf,
    /// Ledger to read [default: the manifest's path with extension .ledger.jsonl, as `run`
    /// names it for --target and --sandbox].
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// The sandbox's ledger (the one `run --sandbox` writes beside the manifest).
    #[arg(long)]
    pub sandbox: bool,
    #[command(flatten)]
    pub target: super::TargetArgs,
    /// HTML file to write (mode 0600, replaced atomically; never through a symbolic link)
    /// [default: the manifest's path with extension .report.html].
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// How photos appear in the page.
    #[arg(long, value_enum, default_value_t = ThumbnailsArg::Embed)]
    pub thumbnails: ThumbnailsArg,
    /// With --thumbnails embed: fetch at most this many photos (problem cards first); the rest
    /// are counted.
    #[arg(long, default_value_t = 2000)]
    pub max_thumbnails: usize,
    /// Draw the cards of at most this many persons without a problem (every person with one
    /// is drawn); the rest are counted. 0: every card.
    #[arg(long, default_value_t = 5000)]
    pub max_cards: usize,
    /// For `oss://` photos: the credentials (and --endpoint, --region, --profile) a run uses;
    /// asked for only when the page shows such a photo.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// `oss://` photos are read (embed) or linked (link) through links signed for the report;
    /// with --thumbnails link, --link-ttl is how long the page's pictures load.
    #[command(flatten)]
    pub oss: super::OssArgs,
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
    /// Faces other tools put in the manifest's libraries (on the server, unknown to the
    /// ledger, matching no manifest row) are reported apart, as foreign, and do not make the
    /// exit 1.
    #[arg(long)]
    pub accept_foreign: bool,
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
    /// The sandbox's ledger (the one `run --sandbox` writes); point --endpoint at a standalone
    /// sandbox holding that state.
    #[arg(long)]
    pub sandbox: bool,
    /// Character encoding of the manifest.
    #[arg(long, value_enum, default_value_t = super::EncodingArg::Auto)]
    pub encoding: super::EncodingArg,
    /// Which headers hold which field (as for `run`).
    #[arg(long, value_name = "FIELD=HEADER,…")]
    pub columns: Option<crate::manifest::ColumnMap>,
    /// The sheet of an .xlsx workbook to read [default: the first].
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
    /// How a folder given as the manifest holds its photos, one pattern per path level:
    /// `{category_id}`, `{person_id}`, `{person_name}`, `*` and text, e.g.
    /// `{category_id}/{person_id}_{person_name}/*` [default: {category_id}/{person_id}/*].
    #[arg(long, value_name = "PATTERN")]
    pub layout: Option<crate::manifest::Layout>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
#[command(group(ArgGroup::new("scope").required(true).args(["run", "all"])))]
pub struct RollbackArgs {
    /// Ledger whose registered faces are unregistered.
    #[arg(long)]
    pub ledger: PathBuf,
    /// Only the faces registered by this run: its id, or a unique prefix of 6 characters or more
    /// (`face-enroll runs` lists them).
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

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// Shell to print completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Directory to write the manual pages into (created if missing), e.g. doc/man.
    pub dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::backend::TargetKind;
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
            args.config(TargetKind::Mts).unwrap().scope,
            crate::commands::rollback::Scope::All
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
        let Command::Status(args) =
            parse(&["status", "data/m.csv", "--sandbox", "--target", "ice"])
                .unwrap()
                .command
        else {
            panic!()
        };
        assert_eq!(
            args.config().unwrap().ledger,
            TargetKind::Ice(crate::api::Algorithm::Face)
                .default_ledger(std::path::Path::new("data/m.csv"), true)
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
