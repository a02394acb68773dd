//! The ledger opened by a command that writes it (run, verify's repair, rollback): locked, read
//! once under the lock, torn tail cut off, bracketed by `run_start` / `run_end`, with every line
//! going through the one writer — the recorder — so `status` shows who changed what.
//!
//! [`Journal::begin`] locks and reads; [`Begun::open`] writes `run_start` once the command knows
//! it will write; [`Journal::finish`] writes `run_end` once every line is written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::TargetKind;
use crate::caller::Tally;
use crate::exit::Exit;
use crate::ledger::{self, LedgerError, Lock, Record, Replay, RunRecord, encode};
use crate::pipeline::recorder::{self, Event, Events, Recorder};
use crate::report::{Figures, ProgressMode};
use crate::stop::{Stop, StopReason};

/// Whether the command may start a ledger where there is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Missing {
    /// `run`, and a repair that rebuilds a lost ledger: a missing ledger is created empty.
    Create,
    /// `rollback`: only a ledger that records something is changed; a missing one is an error.
    Refuse,
}

/// What a command read of the ledger under its lock; the journal cuts off the torn tail it
/// measured before appending.
pub(crate) trait Read {
    fn torn_tail(&self) -> u64;
}

impl Read for Replay {
    fn torn_tail(&self) -> u64 {
        self.torn_tail
    }
}

/// The ledger locked and read, nothing written yet.
pub(crate) struct Begun {
    lock: Lock,
    path: PathBuf,
    torn_tail: u64,
}

pub(crate) struct Journal {
    _lock: Lock,
    pub events: Events,
    recorder: Recorder,
    pub run_id: String,
}

impl Journal {
    /// Locks the ledger at `path` and reads it once with `read`, under the lock, so that what
    /// was read is what the journal appends to. A read that fails removes the empty ledger this
    /// call created; a ledger that existed is kept.
    pub fn begin<R: Read, E: From<LedgerError>>(
        path: &Path,
        missing: Missing,
        read: impl FnOnce(&Path) -> Result<R, E>,
    ) -> Result<(R, Begun), E> {
        let lock = match missing {
            Missing::Create => Lock::acquire(path)?,
            Missing::Refuse => Lock::acquire_existing(path)?,
        };
        let mut begun = Begun {
            lock,
            path: path.into(),
            torn_tail: 0,
        };
        match read(path) {
            Ok(read) => {
                begun.torn_tail = read.torn_tail();
                Ok((read, begun))
            }
            Err(e) => {
                begun.abandon();
                Err(e)
            }
        }
    }

    /// A `run_start` record for `command` of a new run id, against `endpoint`.
    /// The algorithm is recorded too: the next command on this ledger finds the import's
    /// target (and ICE algorithm) in its last `run_start`.
    pub fn start_record(command: &str, endpoint: &str, target: TargetKind) -> RunRecord {
        let run_id = uuid::Uuid::new_v4().to_string();
        RunRecord {
            endpoint: Some(endpoint.into()),
            target: Some(target.ledger_name()),
            algorithm: target.algorithm().map(|a| a.to_string()),
            ..RunRecord::start(&run_id, command)
        }
    }

    /// Waits for every line to be written, then writes the `run_end` record with the outcome.
    pub fn finish(
        self,
        outcome: &str,
        exit: Exit,
        summary: serde_json::Value,
    ) -> Result<Figures, LedgerError> {
        self.finish_with(|figures| (figures, (outcome.to_string(), exit.code(), summary)))
    }

    /// Waits for every line to be written, then writes the `run_end` record that `end` makes
    /// of the final figures (outcome, exit code, summary), and hands back what else it made.
    pub fn finish_with<T>(
        self,
        end: impl FnOnce(Figures) -> (T, (String, i32, serde_json::Value)),
    ) -> Result<T, LedgerError> {
        let (figures, mut appender, failure) = self.recorder.finish(self.events);
        if let Some(failure) = failure {
            return Err(failure);
        }
        let (made, (outcome, exit_code, summary)) = end(figures);
        let mut buf = Vec::new();
        let end = RunRecord::end(&self.run_id, &outcome, exit_code, summary);
        encode(&Record::RunEnd(end), &mut buf);
        appender.append(&buf)?;
        appender.sync()?;
        Ok(made)
    }
}

impl Begun {
    /// Opens the ledger for appending (the torn tail cut off), starts the recorder and writes
    /// the `run_start` record. A write failure later stops `stop`.
    pub fn open(
        self,
        start: RunRecord,
        progress: ProgressMode,
        total: u64,
        tally: Arc<Tally>,
        stop: Arc<Stop>,
    ) -> Result<Journal, LedgerError> {
        let appender = self.lock.appender(&self.path, self.torn_tail)?;
        let on_failure = move || stop.stop(StopReason::LedgerFailed);
        let (events, recorder) = recorder::start(appender, progress, total, tally, on_failure);
        let run_id = start.run.clone();
        events.send(Event::Record(Record::RunStart(start)));
        Ok(Journal {
            _lock: self.lock,
            events,
            recorder,
            run_id,
        })
    }

    /// Gives up before writing anything: an empty ledger this command created is removed
    /// (still under the lock, so no other command can have opened it for writing).
    pub fn abandon(self) {
        if self.lock.created() {
            ledger::remove_if_empty(&self.path);
        }
    }

    /// When the ledger was last written before this command (it has written nothing yet).
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        self.lock.modified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Algorithm;

    fn read(path: &Path) -> Result<Replay, LedgerError> {
        ledger::replay(path)
    }

    fn refused(_: &Path) -> Result<Replay, LedgerError> {
        Err(LedgerError::NotAFile {
            path: "manifest".into(),
        })
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_begun_journal_holds_the_lock_until_it_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let (replay, begun) = Journal::begin(&path, Missing::Create, read).unwrap();
        assert_eq!(replay.lines, 0);
        let again = Journal::begin(&path, Missing::Create, read);
        assert!(matches!(again, Err(LedgerError::Locked { .. })));
        let stop = Arc::new(Stop::default());
        let start = Journal::start_record("verify", "e", TargetKind::Mts);
        let journal = begun
            .open(start, ProgressMode::Off, 0, Arc::default(), stop)
            .unwrap();
        assert!(Journal::begin(&path, Missing::Create, read).is_err());
        journal
            .finish("done", Exit::Success, serde_json::json!({}))
            .unwrap();
        let kinds: Vec<_> = lines(&path).iter().map(|l| l["kind"].clone()).collect();
        assert_eq!(kinds, ["run_start", "run_end"]);
        let (replay, _) = Journal::begin(&path, Missing::Refuse, read).unwrap();
        assert_eq!((replay.lines, replay.last_run_end.is_some()), (2, true));
    }

    #[test]
    fn a_refused_read_removes_the_empty_ledger_begin_created_and_keeps_one_that_existed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.jsonl");
        assert!(Journal::begin(&path, Missing::Create, refused).is_err());
        assert!(!path.exists() && !ledger::lock_path(&path).exists());
        let kept = dir.path().join("kept.jsonl");
        std::fs::write(&kept, "").unwrap();
        assert!(Journal::begin(&kept, Missing::Create, refused).is_err());
        assert!(kept.exists());
    }

    #[test]
    fn a_journal_that_must_find_a_ledger_creates_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo.jsonl");
        let begun = Journal::begin(&path, Missing::Refuse, read);
        assert!(matches!(begun, Err(LedgerError::Open { .. })));
        assert!(!path.exists());
    }

    #[test]
    fn a_journal_records_the_imports_target_and_algorithm_for_the_next_command() {
        let start = Journal::start_record(
            "rollback",
            "http://127.0.0.1:1/",
            TargetKind::Ice(Algorithm::Landmark),
        );
        assert_eq!(start.target, Some(crate::ledger::TargetName::Ice));
        assert_eq!(start.algorithm.as_deref(), Some("landmark"));
        assert_eq!(start.command.as_deref(), Some("rollback"));
    }
}
