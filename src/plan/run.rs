//! Planning one run, the same for `run` and `check`: the ledger must record an import to the
//! run's target, then the manifest is planned against the replay (and what the server was read
//! to hold, when it was), then the ledger is read for what the manifest no longer names.

use std::path::{Path, PathBuf};

use crate::ledger::{LedgerError, Replay, TargetName};
use crate::manifest::{self, ManifestError, ReadOptions};

use super::{Dropped, OnServer, Options, Plan, Rules, SyncScope};

/// The plan, and what the manifest no longer names.
pub struct Planned {
    pub plan: Plan,
    pub dropped: Dropped,
}

/// Why a run cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The ledger records an import to another target.
    #[error("{0}")]
    OtherTarget(String),
}

/// What a run plans with.
pub struct RunPlan<'a> {
    pub manifest: &'a Path,
    pub ledger: &'a Path,
    /// The run's target as the ledger writes it, and its ICE algorithm.
    pub target: TargetName,
    pub algorithm: Option<&'a str>,
    pub options: Options,
    pub rules: Rules,
    /// `--sync` and its scope.
    pub sync: Option<SyncScope>,
}

/// Refuses a ledger whose last run imported to another target (or ICE algorithm): its records
/// say nothing about this one's server.
pub fn check_target(
    replay: &Replay,
    target: TargetName,
    algorithm: Option<&str>,
) -> Result<(), PlanError> {
    let Some(last) = &replay.last_run_start else {
        return Ok(());
    };
    let name = |t: TargetName| match t {
        TargetName::Mts => "mts",
        TargetName::Ice => "ice",
    };
    let kind = last.target.map_or("mts", name);
    let recorded = last.algorithm.as_deref();
    if kind == name(target) && (recorded == algorithm || recorded.is_none()) {
        return Ok(());
    }
    let was = match recorded {
        Some(a) => format!("{kind} (algorithm {a})"),
        None => kind.to_string(),
    };
    Err(PlanError::OtherTarget(format!(
        "this ledger records an import to target {was}; it cannot be resumed as target {}{}. \
         Use the matching --target/--algorithm, or another --ledger",
        name(target),
        algorithm
            .map(|a| format!(" (algorithm {a})"))
            .unwrap_or_default()
    )))
}

/// Plans the run (blocking: it reads the manifest and the ledger), reading as `read` says.
pub fn plan_run(
    run: &RunPlan<'_>,
    read: &ReadOptions,
    replay: &Replay,
    on_server: &OnServer,
) -> Result<Planned, PlanError> {
    check_target(replay, run.target, run.algorithm)?;
    let plan = plan_file(
        run.manifest,
        read,
        replay,
        run.options,
        run.rules,
        on_server,
    )?;
    let dropped = super::drops::collect(run.ledger, replay, run.sync, &plan.libraries)?;
    Ok(Planned { plan, dropped })
}

/// Plans a manifest file against the replay; a manifest changed while it was read is refused
/// (a partial import of a file that was not read whole is never made).
pub fn plan_file(
    path: &Path,
    read: &ReadOptions,
    replay: &Replay,
    options: Options,
    rules: Rules,
    on_server: &OnServer,
) -> Result<Plan, ManifestError> {
    let stamp = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let before = stamp(path);
    let reader = manifest::Reader::open(path, read)?;
    let read_as = reader.describe();
    let mut plan = super::plan_read_ahead(reader.read_ahead(), replay, options, rules, on_server)?;
    plan.read_as = Some(read_as);
    if stamp(path) != before {
        return Err(ManifestError::Changed {
            path: PathBuf::from(path),
        });
    }
    Ok(plan)
}
