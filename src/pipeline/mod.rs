//! The run: lock the ledger, replay it, plan the manifest against it, then one scheduler loop —
//! a bounded pool of workers over persons, a rate permit before every request, one stop signal —
//! with every outcome going through the recorder.

mod context;
mod converge;
mod ending;
pub(crate) mod journal;
mod preflight;
pub(crate) mod recorder;
pub(crate) mod removal;
pub mod schedule;
mod sync;
pub(crate) mod worker;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::{Algorithm, Client};
use crate::caller::{Caller, Halt, Pace, Tally};
use crate::exit::Exit;
use crate::ledger::{self, ImageRecord, LedgerError, Replay, RunRecord};
use crate::manifest::{self, ManifestError};
use crate::pipeline::journal::{Journal, Missing};
use crate::plan::{self, Plan, Rejected};
use crate::report::{Figures, ProgressMode, Summary};
use crate::stop::{Stop, StopReason, watch_signals};
use recorder::{Event, Events};

pub use crate::backend::TargetKind;
pub use ending::Ending;
use ending::{ending_of, throttling_hint};

/// Everything a run needs, validated: no flag parsing below this point.
#[derive(Clone)]
pub struct RunConfig {
    pub target: TargetKind,
    pub manifest: PathBuf,
    pub ledger: PathBuf,
    pub endpoint: String,
    pub pace: Pace,
    pub concurrency: usize,
    pub max_duration: Option<Duration>,
    pub retry_failed: bool,
    /// When to read the server before sending (`--reconcile`).
    pub reconcile: plan::Reconcile,
    /// `--sync`: remove what the manifest no longer holds.
    pub sync: Option<plan::SyncSettings>,
    pub progress: ProgressMode,
    /// `--strict`: any row not registered makes the exit 1, even one an earlier run recorded.
    pub strict: bool,
    /// Local photos named before the run (`--upload-to`), uploaded while it runs.
    pub uploads: Option<Arc<crate::upload::Prepared>>,
    /// `--preflight`: read and check each new image first; send none the service would refuse.
    pub preflight: Option<crate::preflight::Settings>,
    /// `-q`: nothing on stderr but warnings, errors and (on a non-zero exit) one line.
    pub quiet: bool,
    /// How the command reads its manifest (and what it learned: the photos it uploaded).
    pub read: crate::manifest::ReadOptions,
    /// With nothing to send, make one cheap authenticated read (`--no-probe` turns it off).
    pub probe: bool,
    /// Read once more the persons earlier runs created images for (another writer's copies);
    /// off against the built-in sandbox, new for every run: no other writer shares it, and
    /// what earlier runs made was never in it.
    pub converge_reads: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Other(String),
    /// A read made while planning stopped the run before anything was written: the service
    /// refused the credentials (exit 3), nothing answered (6), a signal (130), ….
    #[error("{message}")]
    Stopped { exit: Exit, message: String },
}

impl From<plan::run::PlanError> for RunError {
    fn from(error: plan::run::PlanError) -> RunError {
        match error {
            plan::run::PlanError::Manifest(e) => RunError::Manifest(e),
            plan::run::PlanError::Ledger(e) => RunError::Ledger(e),
            plan::run::PlanError::OtherTarget(why) => RunError::Other(why),
        }
    }
}

pub struct RunResult {
    pub ending: Ending,
    pub summary: Summary,
    pub rejected: Vec<Rejected>,
}

/// Runs the import. The client is built by the caller (credentials, endpoint, timeout).
pub async fn run(config: RunConfig, client: Client) -> Result<RunResult, RunError> {
    // Pre-flight reads images with the run's credentials, beside the backend that sends them.
    let reader = client.clone();
    crate::backend::dispatch!(config.target, backend => run_with(backend(client), config, reader).await)
}

/// What `--sync` came to before anything was sent.
#[derive(Clone, Copy, Debug, Default)]
struct SyncOutcome {
    /// Removals planned.
    planned: u64,
    /// None is made: why (more than `--max-delete`, or invalid rows in the manifest).
    refused: Option<plan::SyncRefusal>,
}

async fn run_with<T: crate::backend::Backend>(
    target: T,
    config: RunConfig,
    reader: Client,
) -> Result<RunResult, RunError> {
    let started = crate::clock::instant();
    let (replay, begun, stop, caller) = begin(&config).await?;
    let (planned, replay) = match read_and_plan(&config, replay, None).await {
        Ok(planned) => planned,
        Err(e) => {
            begun.abandon();
            return Err(e);
        }
    };
    let torn = replay.torn_tail;
    if torn > 0 {
        tracing::warn!(
            bytes = torn,
            "the ledger ended in a torn line (a write cut short); it is dropped, nothing complete is lost"
        );
    }
    let (planned, sync) = match plan_sync(&target, &caller, &config, planned, replay).await {
        Ok(planned) => planned,
        Err(e) => {
            // Nothing was written: a ledger this run created is not left behind empty.
            begun.abandon();
            return Err(e);
        }
    };
    let Planned { mut plan, dropped } = planned;
    let screened = match preflight::run_step(&config, &reader, &mut plan).await {
        Ok(screened) => screened,
        Err(e) => {
            // The credentials or the network, not the photos: nothing judged, nothing written.
            begun.abandon();
            return Err(e);
        }
    };
    let emptied = sync::emptied_entities(&plan, &dropped);
    plan.attach(dropped.persons);
    plan.read_libraries_from(config.target.library_read_threshold());
    // Persons waiting out a request a killed run may have left in flight go last, so that
    // with few workers they never hold every slot while the others could be sent.
    schedule::ready_first(&mut plan.jobs);
    let tally = caller.tally().clone();
    let run_id = uuid::Uuid::new_v4().to_string();
    let journal = begun.open(
        run_start(&config, &run_id),
        config.progress,
        plan.counts.to_send,
        tally.clone(),
        stop.clone(),
    )?;
    let uploads = config
        .uploads
        .clone()
        .map(|prepared| start_uploads(&reader, prepared, &plan, &journal.events, &run_id, &stop));
    // What pre-flight read now, so that the next run reads only what changes.
    for (source, prior) in screened.verdicts {
        let record = ledger::record::Record::Checked(prior.record(&run_id, &source));
        journal.events.send(Event::Record(record));
    }
    for rejected in plan.rejected.iter().filter(|r| !r.already_recorded) {
        let record = rejected_record(&run_id, rejected, config.target);
        journal.events.send(Event::Outcome(record));
    }
    let signals = tokio::spawn(watch_signals(stop.clone()));
    let deadline = config
        .max_duration
        .map(|limit| deadline(limit, stop.clone()));
    let Plan {
        counts,
        mut jobs,
        mut rejected,
        ..
    } = plan;
    // The read owed to persons an earlier run created images for (another writer's copies)
    // is the one read of a run with nothing else to send, in place of the probe; `--no-probe`
    // leaves it for a run that reads anyway.
    if !config.converge_reads {
        plan::PersonJob::drop_converge_reads(&mut jobs);
    } else if !config.probe && jobs.iter().all(plan::PersonJob::only_converges) {
        jobs.clear();
    }
    if config.probe && jobs.is_empty() && Tally::get(&tally.requests) == 0 {
        probe(&target, &caller).await;
    }
    // The context (and with it the last `Events` of the workers) is gone once `drive` returns.
    let mut context = worker::Context::new(target, caller, journal.events.clone(), run_id.clone());
    context.uploads = uploads.as_ref().map(|stage| stage.gate.clone());
    let other_writer = drive(context, jobs, config.concurrency, emptied).await;
    let uploads = match uploads {
        Some(stage) => Some(stage.finish().await),
        None => None,
    };
    signals.abort();
    if let Some(deadline) = deadline {
        deadline.abort();
    }
    let fatal = stop.take_fatal();
    let reason = stop.reason();
    let unreached = stop.unreached();
    let mut summary = summary_at_start(&run_id, &counts, &rejected, &config, sync);
    summary.preflight_refused = screened.refused;
    summary.preflight = screened.figures;
    summary.uploads = uploads;
    // The end record carries the summary, so it is written once the figures are final.
    let ending = journal.finish_with(|figures| {
        fill(&mut summary, &figures, &tally, &counts, started);
        if other_writer > 0 {
            summary.hints.push(format!(
                "another writer registered {other_writer} of these images too (the same job on \
                 another host, or another tool): the lowest id of each is kept, the others were \
                 removed, and the ledger records the ids kept"
            ));
        }
        rejected.extend(figures.failed_rows);
        let ending = ending_of(&summary, fatal, reason);
        summary.exit_code = ending.exit().code();
        summary.outcome = match (&ending, &unreached) {
            // What failed and where: the last connection failure names both.
            (Ending::Unreachable, Some(error)) => format!("{} (last: {error})", ending.describe()),
            _ => ending.describe().to_string(),
        };
        summary.stopped_because = ending.stopped_because().map(str::to_string);
        let end = (
            summary.outcome.clone(),
            summary.exit_code,
            serde_json::to_value(&summary).unwrap_or_default(),
        );
        (ending, end)
    })?;
    Ok(RunResult {
        ending,
        summary,
        rejected,
    })
}

/// Starts uploading the run's local photos, those of the plan first and in its order; each
/// file whose object is there is journaled (an `upload` record) as the stage goes.
fn start_uploads(
    client: &Client,
    prepared: Arc<crate::upload::Prepared>,
    plan: &Plan,
    events: &Events,
    run_id: &str,
    stop: &Arc<Stop>,
) -> crate::upload::Stage {
    // A person's images, then those it may send again (a photo whose id has left the server).
    let needed: Vec<&str> = plan
        .jobs
        .iter()
        .flat_map(|job| {
            let restore = job.recheck.iter().flat_map(|r| &r.restore);
            job.images.iter().chain(restore)
        })
        .map(|image| image.image.source.as_str())
        .collect();
    // Photos pre-flight refused: no row sends them, so they are not put in the bucket.
    let kept_back: Vec<&str> = plan
        .rejected
        .iter()
        .filter(|r| r.reason.starts_with(preflight::REASON_PREFIX))
        .map(|r| r.image.source.as_str())
        .collect();
    let (events, run_id) = (events.clone(), run_id.to_string());
    let journal = move |record: ledger::record::UploadRecord| {
        let record = ledger::record::UploadRecord {
            run: run_id.clone(),
            ..record
        };
        events.send(Event::Record(ledger::record::Record::Upload(record)));
    };
    crate::upload::Stage::start(
        client.clone(),
        prepared,
        &needed,
        &kept_back,
        journal,
        stop.clone(),
    )
}

/// A run that would send nothing proves the service still answers it: a refused key or
/// permission stops it as run-fatal (exit 3), a dead endpoint as unreachable (exit 6), through
/// the caller like any request. Retries that ran out on answered errors (5xx) only warn.
async fn probe<T: crate::backend::Backend>(target: &T, caller: &Caller) {
    tracing::info!("nothing to send: one read to check the endpoint and the credentials");
    if let Err(Halt::Exhausted(error)) = target.probe(caller).await {
        tracing::warn!(%error, "the check read got no good answer; the next run tries again");
    }
}

/// The run's start: the manifest opens, the ledger is locked and replayed (refused if it
/// records another target), and the budgets count a run killed a moment ago as still sending.
async fn begin(
    config: &RunConfig,
) -> Result<(Replay, journal::Begun, Arc<Stop>, Caller), RunError> {
    // A manifest that cannot be opened (a mistyped path, a directory) is refused before the
    // ledger is created beside it; one that cannot be read as a manifest removes the empty
    // ledger this run created (below).
    manifest::check_source(&config.manifest)?;
    let (path, target_kind) = (config.ledger.clone(), config.target);
    let (replay, begun) = tokio::task::spawn_blocking(move || {
        Journal::begin(&path, Missing::Create, |path| {
            replay_ledger(path, target_kind)
        })
    })
    .await
    .map_err(join_err)??;
    let stop = Arc::new(Stop::default());
    let caller = Caller::new(config.pace, stop.clone());
    if replay.may_have_sent_lately(begun.modified()) {
        tracing::info!(
            "the last run on this ledger may have sent requests a moment ago (killed, or just \
             ended): they still count against the budgets, so the first request of each \
             operation waits one second"
        );
        caller.assume_busy_window();
    }
    Ok((replay, begun, stop, caller))
}

/// With `--sync`: in library scope, reads the libraries and plans again knowing what they hold
/// (and what other tools put there); says what will not be removed and why; refuses every
/// removal past `--max-delete` or with invalid rows (planning again without them).
async fn plan_sync<T: crate::backend::Backend>(
    target: &T,
    caller: &Caller,
    config: &RunConfig,
    mut planned: Planned,
    mut replay: Replay,
) -> Result<(Planned, SyncOutcome), RunError> {
    let mut sync = SyncOutcome::default();
    if let Some(settings) = config.sync {
        if settings.scope == plan::SyncScope::Library {
            let listing = sync::read_libraries(target, caller, &planned.plan.libraries).await?;
            // A manifest image already on the server is the person's before the image limit
            // is applied, whatever the ledger holds: plan again knowing them.
            let held = sync::on_server(&listing);
            if !held.is_empty() {
                let (again, back) = read_and_plan(config, replay, Some(held)).await?;
                planned = again;
                replay = back;
            }
            sync::add_foreign(target, &mut planned, listing);
        }
        sync.planned = planned.dropped.removals() as u64;
        if planned.plan.counts.rows > 0 && planned.plan.libraries.is_empty() {
            crate::say!(
                "face-enroll: --sync: the manifest has no valid row, so nothing is removed"
            );
        }
        for bad in &planned.dropped.unsafe_ids {
            crate::say!(
                "face-enroll: --sync: not removing {bad}: not an id that can be sent (empty, \
                 padded, a list or ALL)"
            );
        }
        let invalid = planned.plan.counts.invalid;
        if let Some((reason, why)) = plan::sync_refusal(sync.planned, settings.max_delete, invalid)
        {
            sync.refused = Some(reason);
            crate::say!("face-enroll: {why}");
            // The image limit was planned as if the removals happened: plan again without
            // (planning forgets what the last plan saw).
            let mut again = read_and_plan(
                &RunConfig {
                    sync: None,
                    ..config.clone()
                },
                replay,
                None,
            )
            .await?
            .0;
            again
                .dropped
                .persons
                .retain(|p| p.drops.iter().all(|d| !d.remove));
            planned = again;
        }
    }
    Ok((planned, sync))
}

/// The summary's figures known before anything is sent: the plan's counts and the sync's.
fn summary_at_start(
    run_id: &str,
    counts: &plan::Counts,
    rejected: &[Rejected],
    config: &RunConfig,
    sync: SyncOutcome,
) -> Summary {
    Summary {
        run_id: run_id.to_string(),
        rows: counts.rows,
        already_done: counts.already_registered,
        invalid: counts.invalid,
        skipped: counts.over_limit,
        duplicates: counts.duplicates,
        ledger: config.ledger.display().to_string(),
        new_rejections: rejected.iter().filter(|r| !r.reported).count() as u64,
        known_rejections: rejected.iter().filter(|r| r.reported).count() as u64,
        invalid_by_column: crate::report::invalid_by_column(rejected),
        strict: config.strict,
        sync: config.sync.is_some(),
        removals_planned: sync.planned,
        removals_refused: sync.refused.is_some(),
        removals_refused_because: sync.refused,
        max_delete: config.sync.map(|s| s.max_delete),
        ..Summary::default()
    }
}

/// Stops the run once `limit` has passed (`--max-duration`): nothing new starts after it.
fn deadline(limit: Duration, stop: Arc<Stop>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        crate::clock::sleep(limit).await;
        tracing::info!("--max-duration reached: finishing what is in flight, starting nothing new");
        stop.stop(StopReason::Deadline);
    })
}

pub(crate) use plan::run::Planned;

/// Replays the ledger (on this thread: it spreads the scan over its own) and refuses one that
/// records an import to another target.
fn replay_ledger(path: &std::path::Path, target: TargetKind) -> Result<Replay, RunError> {
    let replay = ledger::replay(path)?;
    plan::run::check_target(
        &replay,
        target.ledger_name(),
        target.algorithm().map(Algorithm::as_str),
    )?;
    Ok(replay)
}

/// Plans the manifest against the replayed ledger (and what the server was read to hold, when
/// it was), then reads from the ledger what the manifest no longer names (to settle, and with
/// `--sync` to remove).
async fn read_and_plan(
    config: &RunConfig,
    replay: Replay,
    on_server: Option<plan::OnServer>,
) -> Result<(Planned, Replay), RunError> {
    let options = plan::Options {
        retry_failed: config.retry_failed,
        keep_work: true,
        reconcile: config.reconcile,
        sync: config.sync.is_some(),
    };
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let run = plan::run::RunPlan {
            manifest: &config.manifest,
            ledger: &config.ledger,
            target: config.target.ledger_name(),
            algorithm: config.target.algorithm().map(Algorithm::as_str),
            options,
            rules: config.target.rules(),
            sync: config.sync.map(|s| s.scope),
        };
        let planned =
            plan::run::plan_run(&run, &config.read, &replay, &on_server.unwrap_or_default())?;
        Ok((planned, replay))
    })
    .await
    .map_err(join_err)?
}

fn fill(
    summary: &mut Summary,
    figures: &Figures,
    tally: &Tally,
    counts: &plan::Counts,
    started: Instant,
) {
    summary.registered_now = figures.registered_now;
    summary.removed = figures.removed_now;
    summary.removal_failed = figures.removal_failed;
    summary.copies_removed = figures.copies_removed;
    summary.settled = figures.settled;
    summary.already_gone = figures.already_gone;
    summary.entities_deleted = figures.entities_deleted;
    summary.recovered = figures.recovered;
    summary.adopted = figures.adopted;
    summary.failed = figures.failed_now + counts.previously_failed;
    summary.left = figures.left;
    summary.removals_left = figures.removals_left;
    summary.retries = Tally::get(&tally.retries);
    summary.throttled = Tally::get(&tally.throttled);
    summary.lookups = Tally::get(&tally.lookups);
    summary.links_renewed = Tally::get(&tally.relinked);
    summary.requests = Tally::get(&tally.requests);
    summary.requests_create = Tally::get(&tally.creates);
    summary.requests_read = Tally::get(&tally.reads);
    summary.requests_remove = Tally::get(&tally.removes);
    // Refused now is new; failed in an earlier run and not sent again is known, unless that
    // run never ended with its summary (killed, stopped early): then this run reports it.
    summary.new_rejections += figures.failed_now + counts.failed_unreported;
    summary.known_rejections += counts.previously_failed - counts.failed_unreported;
    summary.relinked = counts.relinked;
    summary.refused_by_code = figures.refused_codes.clone();
    for row in &figures.failed_rows {
        *summary
            .refused_by_reason
            .entry(row.reason.clone())
            .or_insert(0) += 1;
    }
    summary.retries_ran_out = figures.exhausted_codes.clone();
    if let Some(hint) = throttling_hint(summary.throttled, summary.requests) {
        summary.hints.push(hint);
    }
    if figures.signed_links_refused > 0 {
        summary.hints.push(format!(
            "the service could not download {} image{} through links you signed: they may have \
             expired before their request was sent (this run took {}). Sign links for longer \
             than an import takes, or write the objects as oss://BUCKET/KEY rows, which are \
             signed for each attempt; a row whose link you sign anew is sent again by the next run",
            figures.signed_links_refused,
            if figures.signed_links_refused == 1 {
                ""
            } else {
                "s"
            },
            humantime::format_duration(std::time::Duration::from_secs(
                started.elapsed().as_secs().max(1)
            )),
        ));
    }
    summary.elapsed_s = started.elapsed().as_secs_f64();
    let done = (figures.registered_now + figures.recovered) as f64;
    summary.rate_per_s = if summary.elapsed_s > 0.0 {
        done / summary.elapsed_s
    } else {
        0.0
    };
}

/// Every person's work through the one scheduler, with the one worker, for target `T`; then
/// the persons a request may still land for, read once more after a pause (late copies).
async fn drive<T: crate::backend::Backend>(
    context: worker::Context<T>,
    jobs: Vec<plan::PersonJob>,
    concurrency: usize,
    emptied: Vec<crate::backend::Made>,
) -> u64 {
    let stop = context.caller.stop().clone();
    let context = Arc::new(context);
    let pass = |jobs: Vec<plan::PersonJob>| {
        let context = context.clone();
        let stop = stop.clone();
        let skipped = context.events.clone();
        async move {
            schedule::schedule(
                jobs,
                concurrency,
                stop,
                move |job| {
                    let context = context.clone();
                    async move { worker::process(&context, job).await }
                },
                move |job| {
                    skipped.send(Event::Left(job.images.len() as u64));
                    if !job.drops.is_empty() {
                        skipped.send(Event::RemovalsLeft(job.drops.len() as u64));
                    }
                },
            )
            .await
        }
    };
    pass(jobs).await;
    if !emptied.is_empty() && !stop.is_stopping() {
        sync::delete_emptied(&context, &emptied).await;
    }
    late_copies(&context, &stop, pass).await;
    converge::converge(&context, &stop, concurrency).await;
    context
        .other_writer
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// The persons a request may still land for, read once more after a pause (late copies).
async fn late_copies<T: crate::backend::Backend, F, Fut>(
    context: &Arc<worker::Context<T>>,
    stop: &Arc<Stop>,
    pass: F,
) where
    F: Fn(Vec<plan::PersonJob>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let owed = std::mem::take(&mut *context.owed.lock().unwrap_or_else(|p| p.into_inner()));
    if owed.is_empty() {
        return;
    }
    tracing::info!(
        persons = owed.len(),
        "reading again the persons a request may still land for (late copies)"
    );
    // Read again once the last of their requests can no longer be in flight on our side.
    let last = owed.iter().map(|(at, _)| *at).max();
    let owed: Vec<plan::PersonJob> = owed.into_iter().map(|(_, job)| job).collect();
    let waited = match last {
        Some(last) if !stop.is_stopping() => context.caller.settle_after_sent(last).await.is_ok(),
        _ => false,
    };
    if !waited {
        // Their `pending` records stay; the next run reads the persons and settles them.
        let waiting: usize = owed.iter().map(|job| job.images.len()).sum();
        context.events.send(Event::Left(waiting as u64));
        return;
    }
    pass(owed).await;
}

fn run_start(config: &RunConfig, run_id: &str) -> RunRecord {
    RunRecord {
        manifest: Some(config.manifest.display().to_string()),
        endpoint: Some(config.endpoint.clone()),
        target: Some(config.target.ledger_name()),
        algorithm: config.target.algorithm().map(|a| a.to_string()),
        ..RunRecord::start(run_id, "run")
    }
}

fn rejected_record(run_id: &str, rejected: &Rejected, target: TargetKind) -> ImageRecord {
    let mut record = ImageRecord::new(
        run_id,
        rejected.status,
        &rejected.category_id,
        &rejected.person_id,
        &rejected.image.source,
    );
    // A row without an `image_key` is recorded by its source alone, as it was written.
    if rejected.image.key.is_some() {
        record = record.with_identity(&rejected.image.id());
    }
    record.line = Some(rejected.line);
    record.reason = Some(rejected.reason.clone());
    if let Some(algorithm) = target.algorithm() {
        record.target = Some(crate::ledger::TargetName::Ice);
        record.algorithm = Some(algorithm.to_string());
    }
    record
}

fn join_err(e: tokio::task::JoinError) -> RunError {
    RunError::Other(format!("internal error while reading input: {e}"))
}
