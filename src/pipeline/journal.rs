//! The ledger opened for appending by a command other than `run` (verify's repair, rollback):
//! locked, torn tail cut off, bracketed by `run_start` / `run_end` like a run, with every line
//! going through the one writer — the recorder — so `status` shows who changed what.

use std::path::Path;
use std::sync::Arc;

use crate::backend::TargetKind;
use crate::caller::Tally;
use crate::exit::Exit;
use crate::ledger::{Appender, LedgerError, Lock, Record, RunRecord, encode};
use crate::pipeline::recorder::{self, Event, Events, Recorder};
use crate::report::{Figures, ProgressMode};
use crate::stop::{Stop, StopReason};

pub(crate) struct Journal {
    _lock: Lock,
    pub events: Events,
    recorder: Recorder,
    pub run_id: String,
}

impl Journal {
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

    /// Opens for appending under `lock` (taken before the ledger was read, with the torn tail
    /// that read measured) and writes the `run_start` record. A write failure stops `stop`.
    pub fn open(
        lock: Lock,
        path: &Path,
        torn_tail: u64,
        start: RunRecord,
        tally: Arc<Tally>,
        stop: Arc<Stop>,
    ) -> Result<Journal, LedgerError> {
        let appender = Appender::open(path, torn_tail)?;
        let on_failure = move || stop.stop(StopReason::LedgerFailed);
        let (events, recorder) = recorder::start(appender, ProgressMode::Off, 0, tally, on_failure);
        let run_id = start.run.clone();
        events.send(Event::Record(Record::RunStart(start)));
        Ok(Journal {
            _lock: lock,
            events,
            recorder,
            run_id,
        })
    }

    /// Waits for every line to be written, then writes the `run_end` record with the outcome.
    pub fn finish(
        self,
        outcome: &str,
        exit: Exit,
        summary: serde_json::Value,
    ) -> Result<Figures, LedgerError> {
        let (figures, mut appender, failure) = self.recorder.finish(self.events);
        if let Some(failure) = failure {
            return Err(failure);
        }
        let mut buf = Vec::new();
        let end = RunRecord::end(&self.run_id, outcome, exit.code(), summary);
        encode(&Record::RunEnd(end), &mut buf);
        appender.append(&buf)?;
        appender.sync()?;
        Ok(figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Algorithm;

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
