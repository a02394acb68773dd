//! `face-enroll rollback`, for either target: removes, by the server's id, the images the
//! ledger records as registered — by one run or all — through the one scheduler, the one
//! caller and the one writer, each removal recorded (`removed`, with its id) so a re-run after
//! a crash resumes where it stopped. Never sends a wildcard. On ICE it then deletes the
//! entities and libraries a run in scope created, once they are empty.
//!
//! Without `--yes` it prints the plan from the ledger alone and changes nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::{connect_for, fail, ledger_target};
use crate::backend::{Backend, Made, is_safe_id};
use crate::caller::{Caller, Halt, Pace, Removal};
use crate::exit::Exit;
use crate::image::{Image, fold_id, person_key};
use crate::ledger::{
    self, Entry, ImageRecord, KeyMap, LedgerError, ObjectKind, Record, Status, TargetName,
};
use crate::pipeline::journal::{self, Journal, Missing};
use crate::pipeline::recorder::{Event, Events};
use crate::pipeline::schedule::schedule;
use crate::report::ProgressMode;
use crate::stop::{Stop, watch_signals};

/// Which images to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Those whose `registered` record was written by this run.
    Run(String),
    All,
}

/// Validated flags of `rollback`.
#[derive(Clone, Debug)]
pub struct RollbackConfig {
    pub ledger: PathBuf,
    pub scope: Scope,
    pub yes: bool,
    pub json: bool,
    pub pace: Pace,
    pub concurrency: usize,
}

/// One image to remove.
#[derive(Clone, Debug)]
struct Item<P> {
    category_id: String,
    person_id: String,
    /// The image as recorded.
    image: Image,
    id: String,
    place: P,
}

/// The images of one person: removed one after another, so a look-up serves them all.
struct Job<P> {
    items: Vec<Item<P>>,
}

/// What the ledger says is to be removed.
struct Collected<P> {
    jobs: Vec<Job<P>>,
    images: usize,
    /// (library as first written, images), in order of first appearance.
    libraries: Vec<(String, usize)>,
    /// ICE libraries and entities a run in scope created and no rollback deleted yet.
    made: Vec<Made>,
    /// Registered images whose id may not be sent (empty, padded, a wildcard).
    unsafe_ids: Vec<String>,
    torn_tail: u64,
    /// The ledger's last run has a start and no end (killed, or still running elsewhere).
    unfinished: bool,
}

impl<P> journal::Read for Collected<P> {
    fn torn_tail(&self) -> u64 {
        self.torn_tail
    }
}

#[derive(Default)]
struct Counts {
    removed: AtomicU64,
    already_gone: AtomicU64,
    failed: AtomicU64,
    left: AtomicU64,
}

/// The outcome, as `--json` prints it.
#[derive(Debug, Default, Serialize)]
pub struct RollbackReport {
    pub target: &'static str,
    /// Where the requests went.
    pub endpoint: String,
    pub images: u64,
    pub removed: u64,
    pub already_gone: u64,
    pub failed: u64,
    pub left: u64,
    pub entities_deleted: Vec<String>,
    pub libs_deleted: Vec<String>,
    pub kept_not_empty: Vec<String>,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub lookups: u64,
}

#[derive(Debug, thiserror::Error)]
enum CollectError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(
        "the ledger {ledger} has no run {run}; `face-enroll status --ledger {ledger}` shows the last one"
    )]
    NoSuchRun { ledger: String, run: String },
}

impl CollectError {
    fn exit(&self) -> Exit {
        match self {
            CollectError::Ledger(e) => e.into(),
            CollectError::NoSuchRun { .. } => Exit::Usage,
        }
    }
}

/// `connect` is called only with `--yes`: printing the plan needs no credentials.
pub async fn execute<T: Backend>(
    config: RollbackConfig,
    name: TargetName,
    connect: impl AsyncFnOnce() -> Result<(T, String), Exit>,
) -> Exit {
    let (path, scope, yes) = (config.ledger.clone(), config.scope.clone(), config.yes);
    let collected = tokio::task::spawn_blocking(move || {
        let collect = |path: &Path| collect::<T>(path, &scope, name);
        if !yes {
            return collect(&path).map(|c| (c, None));
        }
        // Read under the lock, so what is removed is what the ledger says. A rollback only ever
        // changes a ledger that records something: a mistyped path is an error, never a new
        // empty ledger.
        Journal::begin(&path, Missing::Refuse, collect).map(|(c, begun)| (c, Some(begun)))
    })
    .await;
    let (collected, begun) = match collected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            crate::say!("face-enroll: {e}");
            return e.exit();
        }
        Err(e) => {
            crate::say!("face-enroll: internal error: {e}");
            return Exit::Usage;
        }
    };
    super::print_out(render_plan::<T>(&config, &collected));
    let Some(begun) = begun else {
        if collected.images + collected.made.len() > 0 {
            crate::say!(
                "face-enroll: nothing changed: add --yes to {} these {}",
                T::VERB,
                T::NOUN
            );
        }
        return Exit::Success;
    };
    if collected.images + collected.made.len() == 0 {
        return Exit::Success;
    }
    let (target, endpoint) = match connect().await {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    let stop = Arc::new(Stop::default());
    let caller = Arc::new(Caller::new(config.pace, stop.clone()));
    // As `run` does: a process killed a moment ago may have spent this second's budget.
    if ledger::may_have_sent_lately(collected.unfinished, true, begun.modified()) {
        tracing::info!(
            "the last command on this ledger may have sent requests a moment ago (killed, or \
             just ended): they still count against the budgets, so the first request of each \
             operation waits one second"
        );
        caller.assume_busy_window();
    }
    let start = Journal::start_record("rollback", &endpoint, target.kind());
    let journal = match begun.open(
        start,
        ProgressMode::Off,
        0,
        caller.tally().clone(),
        stop.clone(),
    ) {
        Ok(journal) => journal,
        Err(e) => return super::ledger_failure(&e),
    };
    remove_all(
        &config,
        collected,
        journal,
        Arc::new(target),
        caller,
        &endpoint,
    )
    .await
}

/// The images whose last record is `registered` with a server id, in scope, and the objects
/// the runs in scope created.
fn collect<T: Backend>(
    path: &Path,
    scope: &Scope,
    name: TargetName,
) -> Result<Collected<T::Place>, CollectError> {
    let wanted = match scope {
        Scope::Run(run) => Some(run.as_str()),
        Scope::All => None,
    };
    let mut seen = Seen::new(wanted, name);
    let scanned = ledger::scan(path, false, |entry| match entry {
        Entry::Run(view) => seen.run(view),
        Entry::Object(view) => seen.object(view),
        Entry::Person(_) | Entry::Upload(_) | Entry::Checked(_) => {}
        Entry::Image(image) => seen.image::<T>(&image),
    })?;
    if let Some(run) = wanted
        && !seen.run_seen
    {
        return Err(CollectError::NoSuchRun {
            ledger: path.display().to_string(),
            run: run.to_string(),
        });
    }
    Ok(seen.finish(scanned.torn_tail))
}

/// What one pass over the ledger keeps for a rollback: each image's last removable record
/// (with the run that wrote it), the objects runs created and those deleted since.
struct Seen<'w, P> {
    /// The run in scope; `None`: every run.
    wanted: Option<&'w str>,
    name: TargetName,
    slots: Vec<Option<(String, Item<P>)>>,
    /// Image key → index in `slots`.
    index: KeyMap<usize>,
    made: Vec<(String, Made)>,
    deleted: HashSet<String>,
    run_seen: bool,
    /// The last run started and did not end.
    unfinished: bool,
}

impl<'w, P> Seen<'w, P> {
    fn new(wanted: Option<&'w str>, name: TargetName) -> Self {
        Seen {
            wanted,
            name,
            slots: Vec::new(),
            index: KeyMap::default(),
            made: Vec::new(),
            deleted: HashSet::new(),
            run_seen: false,
            unfinished: false,
        }
    }

    fn run(&mut self, view: &ledger::View<'_>) {
        self.run_seen |= view.run.as_deref() == self.wanted;
        match view.kind {
            Some(ledger::record::LineKind::RunStart) => self.unfinished = true,
            Some(ledger::record::LineKind::RunEnd) => self.unfinished = false,
            _ => {}
        }
    }

    /// An ICE object created (kept, with its run) or deleted (forgotten until made again).
    fn object(&mut self, view: &ledger::View<'_>) {
        let (Some(object), Some(lib_id)) = (view.object, view.lib_id.as_deref()) else {
            return;
        };
        let id = view.entity_id.as_deref().unwrap_or(lib_id).to_string();
        if view.kind == Some(ledger::record::LineKind::Deleted) {
            self.deleted.insert(id);
        } else {
            self.deleted.remove(&id);
            let m = Made {
                object,
                name: view.name.as_deref().unwrap_or_default().to_string(),
                lib_id: lib_id.to_string(),
                entity_id: view.entity_id.as_deref().map(str::to_string),
                recovered: false,
            };
            self.made.push((view.run().to_string(), m));
        }
    }

    /// An image record: the image's last word, kept when it can be removed by id.
    fn image<T: Backend<Place = P>>(&mut self, image: &ledger::ImageLine<'_, '_>) {
        self.run_seen |= Some(image.run()) == self.wanted;
        let key = image.key();
        let ours = image.is_mts() == (self.name == TargetName::Mts);
        let item = match (image.status, image.server_id(), T::place_of(image.view)) {
            // A `removing` left by a crashed sync may still be there: removed by id all the same.
            (Status::Registered | Status::Removing, Some(id), Some(place)) if ours => Some((
                image.run().to_string(),
                Item {
                    category_id: image.category_id.to_string(),
                    person_id: image.person_id.to_string(),
                    image: image.image(),
                    id: id.to_string(),
                    place,
                },
            )),
            _ => None,
        };
        match self.index.get(&key) {
            Some(&at) => self.slots[at] = item,
            None if item.is_some() => {
                self.index.insert(key, self.slots.len());
                self.slots.push(item);
            }
            None => {}
        }
    }

    /// The images and the objects of the runs in scope, grouped.
    fn finish(self, torn_tail: u64) -> Collected<P> {
        let wanted = self.wanted;
        let in_scope = |run: &str| wanted.is_none_or(|w| w == run);
        let deleted = &self.deleted;
        let mut collected = Collected {
            jobs: Vec::new(),
            images: 0,
            libraries: Vec::new(),
            made: self
                .made
                .into_iter()
                .filter(|(run, m)| {
                    in_scope(run) && !deleted.contains(m.entity_id.as_ref().unwrap_or(&m.lib_id))
                })
                .map(|(_, m)| m)
                .collect(),
            unsafe_ids: Vec::new(),
            torn_tail,
            unfinished: self.unfinished,
        };
        let items = self
            .slots
            .into_iter()
            .flatten()
            .filter(|(run, _)| in_scope(run))
            .map(|(_, item)| item);
        group(&mut collected, items);
        collected
    }
}

/// Groups items by person and counts them by library, both in order of first appearance.
fn group<P>(collected: &mut Collected<P>, items: impl Iterator<Item = Item<P>>) {
    let mut person_at: KeyMap<usize> = KeyMap::default();
    let mut library_at: std::collections::HashMap<String, usize> = Default::default();
    for item in items {
        if !is_safe_id(&item.id) {
            collected.unsafe_ids.push(format!(
                "{} / {} {}: {:?}",
                item.category_id, item.person_id, item.image.source, item.id
            ));
            continue;
        }
        collected.images += 1;
        let folded = fold_id(&item.category_id);
        let at = *library_at.entry(folded).or_insert_with(|| {
            collected
                .libraries
                .push((item.category_id.trim().to_string(), 0));
            collected.libraries.len() - 1
        });
        collected.libraries[at].1 += 1;
        let person = person_key(&item.category_id, &item.person_id);
        let at = *person_at.entry(person).or_insert_with(|| {
            collected.jobs.push(Job { items: Vec::new() });
            collected.jobs.len() - 1
        });
        collected.jobs[at].items.push(item);
    }
}

fn render_plan<T: Backend>(config: &RollbackConfig, c: &Collected<T::Place>) -> String {
    use std::fmt::Write as _;
    let scope = match &config.scope {
        Scope::Run(run) => format!("run {run}"),
        Scope::All => "every run".to_string(),
    };
    let mut out = String::new();
    for bad in &c.unsafe_ids {
        let _ = writeln!(
            out,
            "  refused: {bad}: not an id that can be sent (empty, padded, a list or ALL)"
        );
    }
    if c.images == 0 && c.made.is_empty() {
        let _ = writeln!(
            out,
            "rollback of {scope}: nothing to {} (no {} of it is registered in the ledger {})",
            T::VERB,
            T::NOUN,
            config.ledger.display()
        );
        return out;
    }
    let verb = if config.yes {
        T::VERB.to_string()
    } else {
        format!("would {}", T::VERB)
    };
    let _ = writeln!(
        out,
        "rollback of {scope}: {verb} {} {} of {} in {}, by {}",
        c.images,
        T::NOUN,
        crate::say::count(c.jobs.len() as u64, "person", "persons"),
        crate::say::count(c.libraries.len() as u64, "library", "libraries"),
        T::ID
    );
    for (library, images) in &c.libraries {
        let _ = writeln!(out, "  library {library}: {images} {}", T::NOUN);
    }
    if !c.made.is_empty() {
        let count = |o: ObjectKind| c.made.iter().filter(|m| m.object == o).count();
        let _ = writeln!(
            out,
            "  then {verb} what the runs created once it is empty: {} entities, {} libraries \
             (one that still holds anything else is kept)",
            count(ObjectKind::Entity),
            count(ObjectKind::Lib)
        );
    }
    out
}

/// Workers over persons, a rate permit per request, one writer for the ledger.
async fn remove_all<T: Backend>(
    config: &RollbackConfig,
    collected: Collected<T::Place>,
    journal: Journal,
    target: Arc<T>,
    caller: Arc<Caller>,
    endpoint: &str,
) -> Exit {
    let counts = Arc::new(Counts::default());
    let signals = tokio::spawn(watch_signals(caller.stop().clone()));
    let (run_id, events) = (journal.run_id.clone(), journal.events.clone());
    let (t, c, n, e) = (
        target.clone(),
        caller.clone(),
        counts.clone(),
        events.clone(),
    );
    let skipped = counts.clone();
    schedule(
        collected.jobs,
        config.concurrency,
        caller.stop().clone(),
        move |job| {
            let (t, c, n, e, run) = (t.clone(), c.clone(), n.clone(), e.clone(), run_id.clone());
            async move { person(&*t, &c, job, &e, &run, &n).await }
        },
        move |job| {
            skipped
                .left
                .fetch_add(job.items.len() as u64, Ordering::Relaxed);
        },
    )
    .await;
    let mut report = RollbackReport {
        endpoint: endpoint.to_string(),
        ..RollbackReport::default()
    };
    if !caller.stop().is_stopping() && counts.failed.load(Ordering::Relaxed) == 0 {
        match target.tidy(&caller, &collected.made).await {
            Ok(tidied) => {
                for made in tidied.deleted {
                    let list = match made.object {
                        ObjectKind::Entity => &mut report.entities_deleted,
                        ObjectKind::Lib => &mut report.libs_deleted,
                    };
                    list.push(made.entity_id.clone().unwrap_or(made.lib_id.clone()));
                    let record = Made {
                        recovered: false,
                        ..made
                    }
                    .record(&journal.run_id, target.kind());
                    events.send(Event::Record(Record::Deleted(record)));
                }
                report.kept_not_empty = tidied.kept;
            }
            Err(halt) => {
                if let Some(e) = halt.error() {
                    crate::say!("face-enroll: cannot delete what the runs created: {e}");
                }
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    signals.abort();
    drop(events);
    finish(
        journal,
        &caller,
        &counts,
        collected.images,
        report,
        config.json,
        target.kind().name(),
    )
}

/// One person's images, one at a time.
async fn person<T: Backend>(
    target: &T,
    caller: &Caller,
    job: Job<T::Place>,
    events: &Events,
    run_id: &str,
    counts: &Counts,
) {
    let total = job.items.len() as u64;
    for (done, item) in job.items.into_iter().enumerate() {
        let id = item.id.as_str();
        let removal = crate::backend::remove_by_id(target, caller, &item.place, id).await;
        let removal = match removal {
            Ok(removal) => removal,
            Err(Halt::Stopped | Halt::Fatal) => {
                counts
                    .left
                    .fetch_add(total - done as u64, Ordering::Relaxed);
                return;
            }
            Err(Halt::Refused(e) | Halt::Exhausted(e)) => {
                // It may still be there: the ledger keeps it registered for the next try.
                crate::say!(
                    "face-enroll: cannot {} {} / {} {} {}: {e}",
                    T::VERB,
                    item.category_id,
                    item.person_id,
                    T::ID,
                    item.id
                );
                counts.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        // A removal whose answer was lost and a look-up found gone was made by this rollback.
        let counter = match removal {
            Removal::Removed | Removal::GoneAfterLookup => &counts.removed,
            Removal::AlreadyGone => &counts.already_gone,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut record = ImageRecord::of(
            run_id,
            Status::Removed,
            &item.category_id,
            &item.person_id,
            &item.image,
        );
        target.stamp(&mut record, Some(&item.place));
        T::set_id(&mut record, item.id);
        record.reason = Some(format!("rollback: {}", removal.reason()));
        events.send(Event::Outcome(record));
    }
}

/// The `run_end` record, the summary, and the exit code.
fn finish(
    journal: Journal,
    caller: &Caller,
    counts: &Counts,
    images: usize,
    mut report: RollbackReport,
    json: bool,
    target: &'static str,
) -> Exit {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    report.target = target;
    report.images = images as u64;
    report.removed = load(&counts.removed);
    report.already_gone = load(&counts.already_gone);
    report.failed = load(&counts.failed);
    report.left = load(&counts.left);
    let t = caller.tally();
    report.requests = load(&t.requests);
    report.retries = load(&t.retries);
    report.throttled = load(&t.throttled);
    report.lookups = load(&t.lookups);
    let fatal = caller.stop().take_fatal();
    let (exit, outcome) = match (&fatal, caller.stop().reason()) {
        (Some(_), _) => (
            Exit::ServiceFatal,
            "stopped: the service refused the rollback",
        ),
        (None, Some(_)) => (
            caller.stop().exit().unwrap_or(Exit::Interrupted),
            "stopped before every image was removed",
        ),
        _ if report.failed > 0 => (Exit::RowsNotRegistered, "finished, some images not removed"),
        _ => (Exit::Success, "complete"),
    };
    super::say_unreachable(caller.stop());
    if let Some(error) = &fatal {
        let endpoint = &report.endpoint;
        crate::say!("face-enroll: the service at {endpoint} refused the rollback: {error}");
        if let Some(hint) = error.hint() {
            crate::say!("  what to do: {hint}");
        }
    }
    let summary = serde_json::to_value(&report).unwrap_or_default();
    if json {
        super::print_out(&(serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"));
    }
    crate::say!(
        "rollback: {outcome} (exit {}): removed {}, already gone {}, failed {}, left {} of {images}; \
         entities deleted {}, libraries deleted {}",
        exit.code(),
        report.removed,
        report.already_gone,
        report.failed,
        report.left,
        report.entities_deleted.len(),
        report.libs_deleted.len()
    );
    if let Err(e) = journal.finish(outcome, exit, summary) {
        return super::ledger_failure(&e);
    }
    exit
}

/// `face-enroll rollback`: the flags, the target the ledger records, then [`execute`] (which connects only when it has work).
pub async fn command(args: crate::cli::ops::RollbackArgs) -> Exit {
    use crate::backend::TargetKind;
    let kind = ledger_target(&args.ledger).unwrap_or(TargetKind::Mts);
    let config = match args.config(kind) {
        Ok(config) => config,
        Err(message) => return fail(message),
    };
    let name = kind.ledger_name();
    let flags = &args.connect;
    crate::backend::dispatch!(kind, backend => {
        execute(config, name, async || {
            let c = connect_for(flags, kind).await?;
            Ok((backend(c.client), c.endpoint))
        })
        .await
    })
}

/// The command's flags, lowered once into its validated config.
impl crate::cli::ops::RollbackArgs {
    /// The validated configuration for the import's target `kind` (the ledger's).
    pub fn config(
        &self,
        kind: crate::backend::TargetKind,
    ) -> Result<RollbackConfig, crate::exit::UsageError> {
        let connect = self.connect.settings()?;
        let scope = match &self.run {
            Some(run) if run.trim().is_empty() => {
                return Err(crate::exit::UsageError::new("--run needs a run id"));
            }
            Some(run) => Scope::Run(crate::commands::runs::resolve(&self.ledger, run)?),
            None => Scope::All,
        };
        Ok(RollbackConfig {
            ledger: self.ledger.clone(),
            scope,
            yes: self.yes,
            json: self.json,
            pace: connect.pace(kind, crate::connect::SETTLE_MARGIN),
            concurrency: connect.concurrency(kind),
        })
    }
}

#[cfg(test)]
#[path = "rollback_tests.rs"]
mod tests;
