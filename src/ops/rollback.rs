//! `face-enroll rollback`: unregisters, by FaceId, the faces the ledger records as registered —
//! by one run or all — paced and retried like `run`, each removal recorded (`removed`, with its
//! `face_id`) so a re-run after a crash resumes where it stopped. Never sends `ALL`.
//!
//! Without `--yes` it prints the plan and changes nothing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::api::Client;
use crate::exit::Exit;
use crate::ledger::{self as scan, Entry};
use crate::ledger::{ImageRecord, KeyMap, Lock, Status};
use crate::manifest::{fold_id, image_key, person_key};
use crate::ops::Journal;
use crate::ops::calls::{self, CallError, Caller};
use crate::stop::StopReason;

/// Which faces to unregister.
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
    pub qps: u32,
    pub max_attempts: u32,
    pub concurrency: usize,
    pub seed: Option<u64>,
}

/// One face to unregister.
#[derive(Clone, Debug)]
struct Target {
    category_id: String,
    person_id: String,
    image_url: String,
    face_id: String,
}

/// The faces of one person: unregistered one after another, so a look-up serves them all.
struct Job {
    targets: Vec<Target>,
}

/// What the ledger says is to be removed.
#[derive(Default)]
struct Collected {
    jobs: Vec<Job>,
    faces: usize,
    /// (library as first written, faces), in order of first appearance.
    libraries: Vec<(String, usize)>,
    run_seen: bool,
    torn_tail: u64,
}

#[derive(Default)]
struct Counts {
    removed: AtomicU64,
    already_gone: AtomicU64,
    failed: AtomicU64,
    left: AtomicU64,
}

pub async fn execute(config: RollbackConfig, service: Option<(Client, String)>) -> Exit {
    let lock = match (config.yes, &service) {
        (true, Some(_)) => match Lock::acquire(&config.ledger) {
            Ok(lock) => Some(lock),
            Err(e) => return super::ledger_failure(&e),
        },
        _ => None,
    };
    let (path, scope) = (config.ledger.clone(), config.scope.clone());
    let collected = match super::blocking(move || collect(&path, &scope)).await {
        Ok(c) => c,
        Err(message) => {
            eprintln!("face-enroll: {message}");
            return Exit::Usage;
        }
    };
    if let Scope::Run(run) = &config.scope
        && !collected.run_seen
    {
        eprintln!(
            "face-enroll: the ledger {} has no run {run}; `face-enroll status --ledger {}` shows the last one",
            config.ledger.display(),
            config.ledger.display()
        );
        return Exit::Usage;
    }
    print!("{}", render_plan(&config, &collected));
    let (Some(lock), Some((client, endpoint))) = (lock, service) else {
        if collected.faces > 0 {
            eprintln!("face-enroll: nothing changed: add --yes to unregister these faces");
        }
        return Exit::Success;
    };
    if collected.faces == 0 {
        return Exit::Success;
    }
    let journal = match Journal::open(
        lock,
        &config.ledger,
        collected.torn_tail,
        "rollback",
        &endpoint,
    ) {
        Ok(journal) => journal,
        Err(e) => return super::ledger_failure(&e),
    };
    let caller = Arc::new(Caller::new(
        client,
        config.qps,
        config.max_attempts,
        config.seed,
    ));
    unregister_all(&config, collected, journal, caller).await
}

/// The faces whose last record is `registered` (MTS, with a FaceId), in scope.
fn collect(path: &std::path::Path, scope: &Scope) -> Result<Collected, String> {
    let mut slots: Vec<Option<(String, Target)>> = Vec::new();
    let mut index: KeyMap<usize> = KeyMap::default();
    let mut collected = Collected::default();
    let wanted = match scope {
        Scope::Run(run) => Some(run.as_str()),
        Scope::All => None,
    };
    let scanned = scan::scan(path, false, |entry| {
        let image = match entry {
            Entry::Run(view) => {
                collected.run_seen |= view.run.as_deref() == wanted;
                return;
            }
            Entry::Object(_) => return,
            Entry::Image(image) => image,
        };
        collected.run_seen |= Some(image.run()) == wanted;
        let key = image_key(image.category_id, image.person_id, image.image_url);
        let target = match (image.status, image.face_id()) {
            (Status::Registered, Some(face_id)) if image.is_mts() => Some((
                image.run().to_string(),
                Target {
                    category_id: image.category_id.to_string(),
                    person_id: image.person_id.to_string(),
                    image_url: image.image_url.to_string(),
                    face_id: face_id.to_string(),
                },
            )),
            _ => None,
        };
        match index.get(&key) {
            Some(&at) => slots[at] = target,
            None if target.is_some() => {
                index.insert(key, slots.len());
                slots.push(target);
            }
            None => {}
        }
    })
    .map_err(|e| e.to_string())?;
    collected.torn_tail = scanned.torn_tail;
    let in_scope = slots
        .into_iter()
        .flatten()
        .filter(|(run, _)| wanted.is_none_or(|w| w == run))
        .map(|(_, target)| target);
    group(&mut collected, in_scope);
    Ok(collected)
}

/// Groups targets by person and counts them by library, both in order of first appearance.
fn group(collected: &mut Collected, targets: impl Iterator<Item = Target>) {
    let mut person_at: KeyMap<usize> = KeyMap::default();
    let mut library_at: std::collections::HashMap<String, usize> = Default::default();
    for target in targets {
        collected.faces += 1;
        let folded = fold_id(&target.category_id);
        let at = *library_at.entry(folded).or_insert_with(|| {
            collected
                .libraries
                .push((target.category_id.trim().to_string(), 0));
            collected.libraries.len() - 1
        });
        collected.libraries[at].1 += 1;
        let person = person_key(&target.category_id, &target.person_id);
        let at = *person_at.entry(person).or_insert_with(|| {
            collected.jobs.push(Job {
                targets: Vec::new(),
            });
            collected.jobs.len() - 1
        });
        collected.jobs[at].targets.push(target);
    }
}

fn render_plan(config: &RollbackConfig, c: &Collected) -> String {
    use std::fmt::Write as _;
    let scope = match &config.scope {
        Scope::Run(run) => format!("run {run}"),
        Scope::All => "every run".to_string(),
    };
    let mut out = String::new();
    if c.faces == 0 {
        let _ = writeln!(
            out,
            "rollback of {scope}: nothing to unregister (no face of it is registered in the ledger {})",
            config.ledger.display()
        );
        return out;
    }
    let _ = writeln!(
        out,
        "rollback of {scope}: unregister {} faces of {} persons in {} libraries, by FaceId",
        c.faces,
        c.jobs.len(),
        c.libraries.len()
    );
    for (library, faces) in &c.libraries {
        let _ = writeln!(out, "  library {library}: {faces} faces");
    }
    out
}

/// Workers over persons, a rate permit per request, one writer for the ledger.
async fn unregister_all(
    config: &RollbackConfig,
    collected: Collected,
    journal: Journal,
    caller: Arc<Caller>,
) -> Exit {
    let run_id = journal.run_id.clone();
    let (records, writer) = spawn_writer(journal, caller.clone());
    let counts = Arc::new(Counts::default());
    let signals = tokio::spawn(calls::watch_signals(caller.stop.clone()));
    let queue = Arc::new(Mutex::new(collected.jobs.into_iter()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..config.concurrency.max(1) {
        let (caller, queue, counts) = (caller.clone(), queue.clone(), counts.clone());
        let (records, run_id) = (records.clone(), run_id.clone());
        tasks.spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some(job) = next else { break };
                person(&caller, job, &records, &run_id, &counts).await;
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result {
            tracing::error!("a worker ended unexpectedly: {e}");
            caller.stop.stop(StopReason::LedgerFailed);
        }
    }
    signals.abort();
    drop(records);
    let journal = match writer.await {
        Ok(Ok(journal)) => journal,
        Ok(Err(message)) => {
            eprintln!("face-enroll: {message}");
            return Exit::Usage;
        }
        Err(e) => {
            eprintln!("face-enroll: internal error: {e}");
            return Exit::Usage;
        }
    };
    finish(journal, &caller, &counts, collected.faces)
}

/// One person's faces, one at a time.
async fn person(
    caller: &Caller,
    job: Job,
    records: &tokio::sync::mpsc::UnboundedSender<ImageRecord>,
    run_id: &str,
    counts: &Counts,
) {
    let total = job.targets.len() as u64;
    for (done, t) in job.targets.into_iter().enumerate() {
        let removal = match caller
            .unregister(&t.category_id, &t.person_id, &t.face_id)
            .await
        {
            Ok(removal) => removal,
            Err(CallError::Stopped | CallError::Fatal) => {
                counts
                    .left
                    .fetch_add(total - done as u64, Ordering::Relaxed);
                return;
            }
            Err(CallError::Rejected(e) | CallError::Exhausted(e)) => {
                // The face may still be there: the ledger keeps it registered for the next try.
                eprintln!(
                    "face-enroll: cannot unregister {} / {} FaceId {}: {e}",
                    t.category_id, t.person_id, t.face_id
                );
                counts.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let counter = match removal {
            calls::Removal::Unregistered => &counts.removed,
            _ => &counts.already_gone,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut record = ImageRecord::new(
            run_id,
            Status::Removed,
            &t.category_id,
            &t.person_id,
            &t.image_url,
        );
        record.face_id = Some(t.face_id);
        record.reason = Some(format!("rollback: {}", removal.reason()));
        let _ = records.send(record);
    }
}

/// The one ledger writer: appends what arrives, one sync per batch, off the async threads.
fn spawn_writer(
    mut journal: Journal,
    caller: Arc<Caller>,
) -> (
    tokio::sync::mpsc::UnboundedSender<ImageRecord>,
    tokio::task::JoinHandle<Result<Journal, String>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ImageRecord>();
    let handle = tokio::task::spawn_blocking(move || {
        let mut failure = None;
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            if failure.is_some() {
                continue;
            }
            if let Err(e) = journal.write(&batch, None) {
                // Nothing more may be removed unrecorded: stop, and say so at the end.
                caller.stop.stop(StopReason::LedgerFailed);
                failure = Some(e.to_string());
            }
        }
        match failure {
            Some(message) => Err(message),
            None => Ok(journal),
        }
    });
    (tx, handle)
}

/// The `run_end` record, the summary on stderr, and the exit code.
fn finish(journal: Journal, caller: &Caller, counts: &Counts, faces: usize) -> Exit {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (removed, gone, failed, left) = (
        load(&counts.removed),
        load(&counts.already_gone),
        load(&counts.failed),
        load(&counts.left),
    );
    let fatal = caller.take_fatal();
    let (exit, outcome) = match (&fatal, caller.stop.reason()) {
        (Some(_), _) => (
            Exit::ServiceFatal,
            "stopped: the service refused the rollback",
        ),
        (None, Some(_)) => (Exit::Interrupted, "interrupted"),
        _ if failed > 0 => (Exit::RowsNotRegistered, "finished, some faces not removed"),
        _ => (Exit::Success, "complete"),
    };
    if let Some(error) = &fatal {
        eprintln!("face-enroll: the service refused the rollback: {error}");
        if let Some(hint) = error.hint() {
            eprintln!("  what to do: {hint}");
        }
    }
    let t = &caller.tally;
    let summary = serde_json::json!({
        "faces": faces,
        "removed": removed,
        "already_gone": gone,
        "failed": failed,
        "left": left,
        "requests": load(&t.requests),
        "retries": load(&t.retries),
        "throttled": load(&t.throttled),
        "lookups": load(&t.lookups),
    });
    eprintln!(
        "rollback: {outcome} (exit {}): unregistered {removed}, already gone {gone}, failed {failed}, left {left} of {faces} faces",
        exit.code()
    );
    if let Err(e) = journal.finish(outcome, exit, summary) {
        eprintln!("face-enroll: {e}");
        return Exit::Usage;
    }
    exit
}
