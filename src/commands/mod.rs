//! The operator commands that come after an import: `status` (what the ledger says), `export`
//! (FaceIds for other systems), `report` (one HTML page of the import), `verify` (does the server agree, and repair), `rollback` (undo
//! an import by FaceId), and the metrics file the cron kit reads.
//!
//! They read the ledger by streaming it (`scan`), call the service through the same pacer and
//! retry policy as `run` (`crate::caller`), and write to the ledger only under its lock
//! (`Journal`).

pub mod check;
pub mod completions;
pub mod drift;
pub mod export;
pub mod failed;
pub mod library;
pub mod man;
pub mod metrics;
pub mod report;
pub mod rollback;
pub mod run;
pub mod runs;
pub mod sandbox;
pub mod scan;
pub mod status;
pub mod verify;
mod verify_inputs;
pub mod verify_render;
pub mod verify_repair;

use crate::exit::Exit;
use crate::ledger::LedgerError;

/// Why an operator command could not do its work (nothing was sent, or nothing more).
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error("cannot write {what}: {source}")]
    Write {
        what: String,
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
    #[error(
        "the ledger {} was replaced while it was read (a ledger is only ever appended to); \
         try again",
        path.display()
    )]
    Changed { path: std::path::PathBuf },
}

impl OpsError {
    /// A ledger failure's own code (`From<&LedgerError>`); anything else is a usage error.
    pub fn exit(&self) -> Exit {
        match self {
            OpsError::Ledger(e) => e.into(),
            _ => Exit::Usage,
        }
    }
}

/// Prints a ledger error and picks its exit code (`From<&LedgerError>`).
pub(crate) fn ledger_failure(error: &LedgerError) -> Exit {
    crate::say!("face-enroll: {error}");
    error.into()
}

/// Runs blocking file work off the async threads; a panic there is an internal error.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, OpsError> + Send + 'static,
) -> Result<T, OpsError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(OpsError::Internal(e.to_string())),
    }
}

/// Writes a command's output to stdout, through one lock. A reader that went away
/// (`face-enroll verify … | head -1`) ends the output quietly: `print!` would panic.
pub(crate) fn print_out(text: impl AsRef<[u8]>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_ref()).and_then(|()| out.flush());
}

/// When a command stopped because nothing got through: says what failed and where (the
/// last connection failure names the kind — DNS, refused, TLS, timed out — and the host).
pub(crate) fn say_unreachable(stop: &crate::stop::Stop) {
    if let Some(error) = stop.unreached() {
        crate::say!("face-enroll: the endpoint is unreachable, nothing answered (exit 6): {error}");
        crate::say!(
            "  what to do: check --endpoint / --region, DNS, the network and any proxy or \
             firewall on the way; the next run resumes"
        );
    }
}

pub(crate) fn fail(message: impl std::fmt::Display) -> Exit {
    crate::say!("face-enroll: {message}");
    Exit::Usage
}

/// The signed client for `verify` and `rollback`, found exactly as `run` finds it.
pub(crate) async fn connect_for(
    flags: &crate::cli::ConnectArgs,
    target: crate::backend::TargetKind,
) -> Result<crate::connect::Connected, Exit> {
    let settings = flags.settings().map_err(fail)?;
    crate::connect::connect(&settings, target)
        .await
        .map_err(|e| {
            crate::say!("face-enroll: {e}");
            e.exit()
        })
}

/// The target of the import a ledger records (its last run's), if it says.
pub(crate) fn ledger_target(path: &std::path::Path) -> Option<crate::backend::TargetKind> {
    use crate::ledger::read::{self, Entry, LineKind};
    // The last run start's target and algorithm, read as `replay` reads the ledger (the same
    // view, the same errors) without keeping every image it holds.
    let mut last = None;
    read::scan_as::<read::Narrow>(path, true, |entry| {
        if let Entry::Run(view) = entry
            && view.kind == Some(LineKind::RunStart)
        {
            last = Some((view.target, view.algorithm.as_deref().map(str::to_string)));
        }
    })
    .ok()?;
    let (target, algorithm) = last?;
    match target? {
        crate::ledger::TargetName::Mts => Some(crate::backend::TargetKind::Mts),
        crate::ledger::TargetName::Ice => {
            let algorithm = algorithm.and_then(|a| a.parse::<crate::api::Algorithm>().ok());
            Some(crate::backend::TargetKind::Ice(
                algorithm.unwrap_or(crate::api::Algorithm::Face),
            ))
        }
    }
}

/// The reading options the manifest flags ask for (`--encoding`, `--columns`, `--sheet`,
/// `--layout`); the command owns them and passes them to every reading of its manifest.
pub(crate) fn read_options(
    encoding: crate::cli::EncodingArg,
    columns: &Option<crate::manifest::ColumnMap>,
    sheet: &Option<String>,
    layout: &Option<crate::manifest::Layout>,
) -> crate::manifest::ReadOptions {
    let mut read = crate::manifest::ReadOptions::default();
    read.encoding = encoding.into();
    read.columns = columns.clone();
    read.sheet = sheet.clone();
    read.layout = layout.clone().unwrap_or_default();
    read
}
