//! The operator commands that come after an import: `status` (what the ledger says), `export`
//! (FaceIds for other systems), `verify` (does the server agree, and repair), `rollback` (undo
//! an import by FaceId), and the metrics file the cron kit reads.
//!
//! They read the ledger by streaming it (`scan`), call the service through the same pacer and
//! retry policy as `run` (`calls`), and write to the ledger only under its lock (`Journal`).

pub mod drift;
pub mod export;
pub mod failed;
pub mod metrics;
pub mod rollback;
pub mod runs;
pub mod status;
pub mod verify;
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
    /// 4 when another process holds the ledger's lock, else 2.
    pub fn exit(&self) -> Exit {
        match self {
            OpsError::Ledger(LedgerError::Locked { .. }) => Exit::Locked,
            _ => Exit::Usage,
        }
    }
}

/// Prints a ledger error and picks its exit code: 4 when another process holds the lock.
pub(crate) fn ledger_failure(error: &LedgerError) -> Exit {
    crate::say!("face-enroll: {error}");
    match error {
        LedgerError::Locked { .. } => Exit::Locked,
        _ => Exit::Usage,
    }
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
