//! `face-enroll runs`: the ledger's history, one line per run (any command): its id, start, end,
//! command, target, what its records count, and its exit. Also resolves a run id prefix, for
//! every `--run` flag.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::exit::{Exit, UsageError};
use crate::ledger::{self, Entry, Status};

/// Validated flags of `runs`.
#[derive(Clone, Debug)]
pub struct RunsConfig {
    pub ledger: PathBuf,
    pub json: bool,
}

/// One run as the ledger records it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunEntry {
    pub run: String,
    pub started: Option<String>,
    pub ended: Option<String>,
    pub command: Option<String>,
    /// `mts` or `ice` (`null` for an old ledger that does not say).
    pub target: Option<String>,
    /// The image records this run wrote, by their status.
    pub registered: u64,
    pub failed: u64,
    pub invalid: u64,
    pub skipped: u64,
    pub removed: u64,
    pub outcome: Option<String>,
    /// `null`: no end record (still running, or killed).
    pub exit_code: Option<i32>,
}

/// Every run, in the order the ledger first mentions it.
pub fn collect(path: &Path) -> Result<Vec<RunEntry>, ledger::LedgerError> {
    let mut runs: Vec<RunEntry> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    ledger::scan(path, false, |entry| {
        let (view, status) = match &entry {
            Entry::Run(view) => (*view, None),
            Entry::Image(image) => (image.view, Some(image.status)),
            Entry::Object(view)
            | Entry::Person(view)
            | Entry::Upload(view)
            | Entry::Checked(view) => (*view, None),
        };
        let id = view.run();
        let at = match index.get(id) {
            Some(at) => *at,
            None => {
                index.insert(id.to_string(), runs.len());
                runs.push(RunEntry {
                    run: id.to_string(),
                    ..RunEntry::default()
                });
                runs.len() - 1
            }
        };
        let run = &mut runs[at];
        match (&entry, status) {
            (Entry::Run(v), _) if v.kind == Some(ledger::record::LineKind::RunStart) => {
                run.started = v.ts.as_deref().map(str::to_string);
                run.command = v.command.as_deref().map(str::to_string);
                run.target = Some(if v.is_mts() { "mts" } else { "ice" }.to_string());
            }
            (Entry::Run(v), _) => {
                run.ended = v.ts.as_deref().map(str::to_string);
                run.outcome = v.outcome.as_deref().map(str::to_string);
                run.exit_code = v.exit_code;
            }
            (_, Some(Status::Registered)) => run.registered += 1,
            (_, Some(Status::Failed)) => run.failed += 1,
            (_, Some(Status::Invalid)) => run.invalid += 1,
            (_, Some(Status::Skipped)) => run.skipped += 1,
            (_, Some(Status::Removed)) => run.removed += 1,
            _ => {}
        }
    })?;
    Ok(runs)
}

/// The full id of the one run whose id starts with `prefix` (6 characters at least).
pub fn resolve(path: &Path, prefix: &str) -> Result<String, UsageError> {
    const SHORTEST: usize = 6;
    let prefix = prefix.trim();
    let runs = collect(path).map_err(|e| UsageError::new(e.to_string()))?;
    if let Some(exact) = runs.iter().find(|r| r.run == prefix) {
        return Ok(exact.run.clone());
    }
    if prefix.chars().count() < SHORTEST {
        return Err(UsageError::new(format!(
            "--run {prefix}: give at least {SHORTEST} characters of the run id \
             (`face-enroll runs --ledger {}` lists them)",
            path.display()
        )));
    }
    let matching: Vec<&RunEntry> = runs
        .iter()
        .filter(|r| {
            r.run
                .to_ascii_lowercase()
                .starts_with(&prefix.to_ascii_lowercase())
        })
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.run.clone()),
        [] => Err(UsageError::new(format!(
            "--run {prefix}: no run in {} has an id starting so \
             (`face-enroll runs --ledger {}` lists them)",
            path.display(),
            path.display()
        ))),
        many => Err(UsageError::new(format!(
            "--run {prefix}: {} runs start so ({}); give more characters",
            many.len(),
            many.iter()
                .map(|r| r.run.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

pub async fn execute(config: RunsConfig) -> Exit {
    let path = config.ledger.clone();
    let runs = match super::blocking(move || Ok(collect(&path)?)).await {
        Ok(runs) => runs,
        Err(e) => {
            crate::say!("face-enroll: {e}");
            return e.exit();
        }
    };
    let text = if config.json {
        serde_json::to_string_pretty(&runs).unwrap_or_default() + "\n"
    } else {
        render(&runs)
    };
    super::print_out(&text);
    Exit::Success
}

/// The history as text: a header, then one tab-separated line per run.
pub fn render(runs: &[RunEntry]) -> String {
    let mut out = String::from(
        "RUN\tSTARTED\tENDED\tCOMMAND\tTARGET\tREGISTERED\tFAILED\tINVALID\tSKIPPED\tREMOVED\tEXIT\n",
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.run.get(..8).unwrap_or(&r.run),
            r.started.as_deref().unwrap_or("-"),
            r.ended.as_deref().unwrap_or("(no end record)"),
            r.command.as_deref().unwrap_or("-"),
            r.target.as_deref().unwrap_or("-"),
            r.registered,
            r.failed,
            r.invalid,
            r.skipped,
            r.removed,
            r.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
        );
    }
    out
}

/// The command's flags, lowered once into its validated config.
impl crate::cli::ops::RunsArgs {
    pub fn config(&self) -> crate::commands::runs::RunsConfig {
        crate::commands::runs::RunsConfig {
            ledger: self.ledger.clone(),
            json: self.json,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{ImageRecord, Record, RunRecord, encode};

    fn ledger_of(runs: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut bytes = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let start = RunRecord {
                ts: format!("t{i}"),
                ..RunRecord::start(run, "run")
            };
            encode(&Record::RunStart(start), &mut bytes);
            let image = ImageRecord::new(run, Status::Registered, "lib", "p", &format!("u{i}"));
            encode(&Record::Image(image), &mut bytes);
            let end = RunRecord::end(run, "complete", 0, serde_json::json!({}));
            encode(&Record::RunEnd(end), &mut bytes);
        }
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn every_run_is_listed_with_its_counts_and_exit() {
        let (_dir, path) = ledger_of(&["aaaaaaaa-1", "bbbbbbbb-2"]);
        let runs = collect(&path).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[1].registered, runs[1].exit_code), (1, Some(0)));
        assert_eq!(runs[0].command.as_deref(), Some("run"));
        assert!(render(&runs).contains("bbbbbbbb\tt1\t"));
    }

    #[test]
    fn a_unique_prefix_of_six_finds_the_run_and_others_say_what_to_do() {
        let (_dir, path) = ledger_of(&["abcdef12-1", "abcdef34-2"]);
        assert_eq!(resolve(&path, "abcdef1").unwrap(), "abcdef12-1");
        assert!(
            resolve(&path, "abcdef")
                .unwrap_err()
                .0
                .contains("2 runs start so")
        );
        assert!(resolve(&path, "abc").unwrap_err().0.contains("at least 6"));
        assert!(
            resolve(&path, "ffffff")
                .unwrap_err()
                .0
                .contains("runs --ledger")
        );
        assert_eq!(resolve(&path, "abcdef34-2").unwrap(), "abcdef34-2");
    }
}
