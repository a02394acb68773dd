//! The operator commands that come after an import: `status` (what the ledger says), `export`
//! (FaceIds for other systems), `verify` (does the server agree, and repair), `rollback` (undo
//! an import by FaceId), and the metrics file the cron kit reads.
//!
//! They read the ledger by streaming it (`scan`), call the service through the same pacer and
//! retry policy as `run` (`calls`), and write to the ledger only under its lock (`Journal`).

pub(crate) mod calls;
pub mod drift;
pub mod export;
pub mod ice;
pub mod metrics;
pub mod rollback;
pub mod status;
pub mod verify;
mod verify_render;
pub mod verify_repair;

use std::path::Path;

use crate::exit::Exit;
use crate::ledger::{self, Appender, ImageRecord, LedgerError, Lock, Record, RunRecord};

/// The ledger opened for writing by an operator command: locked, torn tail cut off, bracketed
/// by a `run_start` and a `run_end` record like a run, so `status` shows who changed what.
pub(crate) struct Journal {
    _lock: Lock,
    appender: Appender,
    pub run_id: String,
}

impl Journal {
    /// Opens for appending (under `lock`, taken before the ledger was read, with the torn tail
    /// that read measured) and writes the `run_start` record.
    pub fn open(
        lock: Lock,
        path: &Path,
        torn_tail: u64,
        command: &str,
        endpoint: &str,
    ) -> Result<Journal, LedgerError> {
        let appender = Appender::open(path, torn_tail)?;
        let mut journal = Journal {
            _lock: lock,
            appender,
            run_id: uuid::Uuid::new_v4().to_string(),
        };
        let start = RunRecord {
            endpoint: Some(endpoint.into()),
            ..RunRecord::start(&journal.run_id, command)
        };
        journal.write(&[], Some(Record::RunStart(start)))?;
        Ok(journal)
    }

    /// A record of `status` for one image in this journal's run.
    pub fn record(
        &self,
        status: ledger::Status,
        category_id: &str,
        person_id: &str,
        image_url: &str,
    ) -> ImageRecord {
        ImageRecord::new(&self.run_id, status, category_id, person_id, image_url)
    }

    /// Appends the records (and a run record after them), then syncs once.
    pub fn write(
        &mut self,
        records: &[ImageRecord],
        run: Option<Record>,
    ) -> Result<(), LedgerError> {
        let mut buf = Vec::with_capacity(256 * (records.len() + 1));
        for record in records {
            ledger::encode(&Record::Image(record.clone()), &mut buf);
        }
        if let Some(run) = run {
            ledger::encode(&run, &mut buf);
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.appender.append(&buf)?;
        self.appender.sync()
    }

    /// Writes the `run_end` record with the command's outcome.
    pub fn finish(
        mut self,
        outcome: &str,
        exit: Exit,
        summary: serde_json::Value,
    ) -> Result<(), LedgerError> {
        let end = RunRecord::end(&self.run_id, outcome, exit.code(), summary);
        self.write(&[], Some(Record::RunEnd(end)))
    }
}

/// Prints a ledger error and picks its exit code: 4 when another process holds the lock.
pub(crate) fn ledger_failure(error: &LedgerError) -> Exit {
    eprintln!("face-enroll: {error}");
    match error {
        LedgerError::Locked { .. } => Exit::Locked,
        _ => Exit::Usage,
    }
}

/// Runs blocking file work off the async threads; a panic there is reported as a usage error.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(format!("internal error: {e}")),
    }
}
