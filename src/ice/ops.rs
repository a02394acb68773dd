//! Operator checks of an ICE ledger against the server: `verify` (what the ledger says versus
//! what the libraries hold) and `rollback` (delete the samples the ledger recorded).
//!
//! Rollback deletes samples by the SampleId in the ledger. A whole entity or library is deleted
//! only when a `created` record in the ledger says a run in scope made it, and it is empty once
//! the samples are gone: whatever someone else put there, or made, stays.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::session::Session;
use crate::api::{Algorithm, ApiError, Client, ErrorClass, Sample};
use crate::ledger::{
    self, Appender, ImageRecord, LedgerError, Lock, ObjectKind, ObjectRecord, Record, RunRecord,
    Status, TargetName,
};
use crate::manifest::{fold_id, image_key};

/// How hard `verify` and `rollback` may push the service.
#[derive(Clone, Copy, Debug)]
pub struct IceOpsOptions {
    /// The libraries' algorithm; `None`: the one the ledger records.
    pub algorithm: Option<Algorithm>,
    /// Requests per second (ICE allows 50 per account); 0 = unlimited.
    pub qps: u32,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
}

impl Default for IceOpsOptions {
    fn default() -> Self {
        IceOpsOptions {
            algorithm: None,
            qps: super::DEFAULT_QPS,
            max_attempts: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IceOpsError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the service refused: {0}")]
    Api(#[from] ApiError),
    #[error("ledger {path}, line {line}: {problem}")]
    NotIce {
        path: String,
        line: u64,
        problem: String,
    },
}

/// One discrepancy, with everything known about where it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub category_id: String,
    pub person_id: String,
    pub image_url: Option<String>,
    pub lib_id: Option<String>,
    pub entity_id: Option<String>,
    pub sample_id: Option<String>,
    pub detail: String,
}

/// What `verify` found. The four lists use the MTS categories:
/// - `missing`: the ledger's last word is `pending` or a retryable `failed`, and the server does
///   not hold the image: the next run sends it.
/// - `duplicated`: the server holds an image twice in one entity, or two libraries (entities)
///   with one name that the ledger uses.
/// - `orphaned`: a sample in an entity the ledger uses that no `registered` record accounts for
///   (an image registered by other means, or one the ledger says was removed).
/// - `vanished`: the ledger says `registered`, the server no longer holds that sample (deleted
///   by other means, or its entity or library was).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Image records looked at (last record per image).
    pub checked: u64,
    /// `registered` and on the server with the recorded SampleId.
    pub ok: u64,
    /// `pending` in the ledger yet on the server: the next run records it without sending.
    pub unsettled: u64,
    pub missing: Vec<Finding>,
    pub duplicated: Vec<Finding>,
    pub orphaned: Vec<Finding>,
    pub vanished: Vec<Finding>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.duplicated.is_empty()
            && self.orphaned.is_empty()
            && self.vanished.is_empty()
    }
}

/// Which samples a rollback removes.
#[derive(Clone, Debug, Default)]
pub struct RollbackOptions {
    /// Only what this run registered (and created); `None`: everything in the ledger.
    pub run: Option<String>,
    /// Say what would be deleted; send no delete and write nothing.
    pub dry_run: bool,
    pub ops: IceOpsOptions,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RollbackReport {
    /// Samples deleted now (or, with `dry_run`, that would be).
    pub removed: u64,
    /// Samples the ledger recorded that the server no longer held (recorded as removed too).
    pub already_gone: u64,
    /// Samples whose delete the service refused or never confirmed; the ledger keeps them.
    pub failed: Vec<Finding>,
    /// EntityIds and LibIds deleted because a run in scope created them and they were empty.
    pub entities_deleted: Vec<String>,
    pub libs_deleted: Vec<String>,
    /// Created by a run in scope but still holding what others put there: kept.
    pub kept_not_empty: Vec<String>,
}

/// The ICE side of a ledger: last record per image, and the libraries and entities made.
#[derive(Default)]
struct IceLedger {
    algorithm: Option<String>,
    images: HashMap<u128, ImageRecord>,
    created: Vec<ObjectRecord>,
    deleted: HashSet<String>,
}

/// Reads an ICE ledger through the one reader; an MTS record is refused.
fn read_ledger(path: &Path) -> Result<IceLedger, IceOpsError> {
    let mut ledger = IceLedger::default();
    let mut not_ice: Option<u64> = None;
    let mut line = 0u64;
    let owned = |c: &Option<std::borrow::Cow<'_, str>>| c.as_deref().map(str::to_string);
    ledger::scan(path, true, |entry| {
        line += 1;
        match entry {
            ledger::Entry::Image(image) => {
                if image.is_mts() {
                    not_ice.get_or_insert(line);
                    return;
                }
                let v = image.view;
                let mut record = ImageRecord::new(
                    image.run(),
                    image.status,
                    image.category_id,
                    image.person_id,
                    image.image_url,
                );
                record.target = v.target;
                record.algorithm = owned(&v.algorithm);
                record.lib_id = owned(&v.lib_id);
                record.entity_id = owned(&v.entity_id);
                record.sample_id = owned(&v.sample_id);
                record.retryable = v.retryable;
                ledger.algorithm = record.algorithm.clone().or(ledger.algorithm.take());
                let key = image_key(image.category_id, image.person_id, image.image_url);
                ledger.images.insert(key, record);
            }
            ledger::Entry::Object(v) => {
                let (Some(object), Some(lib_id)) = (v.object, v.lib_id.as_deref()) else {
                    return;
                };
                let record = ObjectRecord {
                    ts: owned(&v.ts).unwrap_or_default(),
                    run: v.run().to_string(),
                    target: TargetName::Ice,
                    algorithm: owned(&v.algorithm).unwrap_or_default(),
                    object,
                    name: owned(&v.name).unwrap_or_default(),
                    lib_id: lib_id.to_string(),
                    entity_id: owned(&v.entity_id),
                    recovered: None,
                };
                let id = record
                    .entity_id
                    .clone()
                    .unwrap_or_else(|| record.lib_id.clone());
                if v.kind == Some(ledger::read::LineKind::Deleted) {
                    ledger.deleted.insert(id);
                } else {
                    ledger.deleted.remove(&id);
                    ledger.created.push(record);
                }
            }
            ledger::Entry::Run(_) => {}
        }
    })?;
    if let Some(line) = not_ice {
        return Err(IceOpsError::NotIce {
            path: path.display().to_string(),
            line,
            problem: "an MTS record: this is not an ICE ledger".into(),
        });
    }
    Ok(ledger)
}

fn session(client: &Client, ledger: &IceLedger, options: &IceOpsOptions) -> Session {
    let recorded = ledger.algorithm.as_deref().and_then(|a| a.parse().ok());
    let algorithm = options.algorithm.or(recorded).unwrap_or(Algorithm::Face);
    Session::new(client.clone(), algorithm, options.qps, options.max_attempts)
}

fn finding(record: &ImageRecord, detail: &str) -> Finding {
    Finding {
        category_id: record.category_id.clone(),
        person_id: record.person_id.clone(),
        image_url: Some(record.image_url.clone()),
        lib_id: record.lib_id.clone(),
        entity_id: record.entity_id.clone(),
        sample_id: record.sample_id.clone(),
        detail: detail.into(),
    }
}

/// What the server holds in the libraries the ledger uses: every sample, and the names.
#[derive(Default)]
struct Server {
    /// SampleId → sample, for the listed libraries.
    samples: HashMap<String, Sample>,
    /// (EntityId, ImageUrl) → SampleIds.
    by_url: HashMap<(String, String), Vec<String>>,
}

/// Compares the ledger at `ledger` with the server, listing every library of the algorithm and
/// every sample of the libraries the ledger uses. Sends no change.
pub async fn verify(
    client: &Client,
    ledger: &Path,
    options: &IceOpsOptions,
) -> Result<VerifyReport, IceOpsError> {
    let book = read_ledger(ledger)?;
    let session = session(client, &book, options);
    let libs = session.libs().await?;
    let present: HashSet<&str> = libs.iter().map(|l| l.lib_id.as_str()).collect();
    let used: HashSet<&str> = book
        .images
        .values()
        .filter_map(|r| r.lib_id.as_deref())
        .filter(|id| present.contains(id))
        .collect();
    let mut server = Server::default();
    let mut report = VerifyReport::default();
    for lib_id in &used {
        for sample in session.samples(lib_id, "ANY", None).await? {
            let entity = sample.entity_id.clone().unwrap_or_default();
            let url = sample.image_url.clone().unwrap_or_default();
            server
                .by_url
                .entry((entity, url))
                .or_default()
                .push(sample.sample_id.clone());
            server.samples.insert(sample.sample_id.clone(), sample);
        }
        duplicate_entities(&session, lib_id, &book, &mut report).await?;
    }
    duplicate_libs(&libs, &book, &mut report);
    compare(&book, &server, &mut report);
    Ok(report)
}

/// Libraries of one name that the ledger uses more than once on the server.
fn duplicate_libs(libs: &[crate::api::Lib], book: &IceLedger, report: &mut VerifyReport) {
    let names: HashSet<String> = book
        .images
        .values()
        .map(|r| fold_id(&r.category_id))
        .collect();
    let mut seen: HashMap<String, Vec<&str>> = HashMap::new();
    for lib in libs {
        let name = fold_id(lib.lib_name.as_deref().unwrap_or_default());
        if names.contains(&name) {
            seen.entry(name).or_default().push(&lib.lib_id);
        }
    }
    for (name, ids) in seen.into_iter().filter(|(_, ids)| ids.len() > 1) {
        report.duplicated.push(Finding {
            category_id: name,
            detail: format!("{} libraries with this name: {}", ids.len(), ids.join(", ")),
            ..Finding::default()
        });
    }
}

async fn duplicate_entities(
    session: &Session,
    lib_id: &str,
    book: &IceLedger,
    report: &mut VerifyReport,
) -> Result<(), ApiError> {
    let names: HashSet<String> = book
        .images
        .values()
        .filter(|r| r.lib_id.as_deref() == Some(lib_id))
        .map(|r| fold_id(&r.person_id))
        .collect();
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for entity in session.entities(lib_id).await? {
        let name = fold_id(entity.entity_name.as_deref().unwrap_or_default());
        if names.contains(&name) {
            seen.entry(name).or_default().push(entity.entity_id);
        }
    }
    for (name, ids) in seen.into_iter().filter(|(_, ids)| ids.len() > 1) {
        report.duplicated.push(Finding {
            person_id: name,
            lib_id: Some(lib_id.into()),
            detail: format!("{} entities with this name: {}", ids.len(), ids.join(", ")),
            ..Finding::default()
        });
    }
    Ok(())
}

fn compare(book: &IceLedger, server: &Server, report: &mut VerifyReport) {
    let mut accounted: HashSet<&str> = HashSet::new();
    let mut entities: HashSet<&str> = HashSet::new();
    for record in book.images.values() {
        report.checked += 1;
        let entity = record.entity_id.as_deref().unwrap_or_default();
        let on_server = server
            .by_url
            .get(&(entity.to_string(), record.image_url.clone()));
        if !entity.is_empty() {
            entities.insert(entity);
        }
        match record.status {
            Status::Registered => {
                let id = record.sample_id.as_deref().unwrap_or_default();
                if server.samples.contains_key(id) {
                    report.ok += 1;
                    accounted.insert(id);
                } else {
                    report
                        .vanished
                        .push(finding(record, "the recorded sample is gone"));
                }
            }
            Status::Pending | Status::Failed => {
                if record.status == Status::Failed && record.retryable != Some(true) {
                    continue; // refused for good: nothing to look for
                }
                match on_server {
                    Some(ids) => {
                        report.unsettled += 1;
                        accounted.extend(ids.iter().map(String::as_str));
                    }
                    None => report
                        .missing
                        .push(finding(record, "not on the server yet")),
                }
            }
            _ => {}
        }
    }
    for ((entity, url), ids) in &server.by_url {
        if entities.contains(entity.as_str()) && ids.len() > 1 {
            report.duplicated.push(Finding {
                image_url: Some(url.clone()),
                entity_id: Some(entity.clone()),
                detail: format!("{} samples of this image: {}", ids.len(), ids.join(", ")),
                ..Finding::default()
            });
        }
    }
    for (id, sample) in &server.samples {
        let entity = sample.entity_id.as_deref().unwrap_or_default();
        if entities.contains(entity) && !accounted.contains(id.as_str()) {
            report.orphaned.push(Finding {
                image_url: sample.image_url.clone(),
                lib_id: sample.lib_id.clone(),
                entity_id: sample.entity_id.clone(),
                sample_id: Some(id.clone()),
                detail: "on the server, not registered in the ledger".into(),
                ..Finding::default()
            });
        }
    }
}

/// Deletes the samples the ledger at `ledger` recorded as registered (by `options.run`, or by
/// any run), appending a `removed` record for each; then deletes the entities and libraries a
/// run in scope created, if they are empty. Holds the ledger's lock throughout.
pub async fn rollback(
    client: &Client,
    ledger: &Path,
    options: &RollbackOptions,
) -> Result<RollbackReport, IceOpsError> {
    let _lock = Lock::acquire(ledger)?;
    let book = read_ledger(ledger)?;
    let replay = ledger::replay(ledger)?;
    let session = session(client, &book, &options.ops);
    let in_scope = |run: &str| options.run.as_deref().is_none_or(|r| r == run);
    let mut groups: HashMap<(String, String), Vec<&ImageRecord>> = HashMap::new();
    for record in book.images.values() {
        if record.status == Status::Registered
            && record.sample_id.is_some()
            && in_scope(&record.run)
        {
            let (Some(lib), Some(entity)) = (&record.lib_id, &record.entity_id) else {
                continue;
            };
            groups
                .entry((lib.clone(), entity.clone()))
                .or_default()
                .push(record);
        }
    }
    let mut out = Outbox::open(ledger, replay.torn_tail, options.dry_run, session.algorithm)?;
    let mut report = RollbackReport::default();
    for ((lib_id, entity_id), records) in &groups {
        let held = held_samples(&session, lib_id, entity_id).await?;
        for record in records {
            let sample_id = record.sample_id.as_deref().unwrap_or_default();
            if !held.contains(sample_id) {
                report.already_gone += 1;
                out.removed(record, "already gone from the server");
                continue;
            }
            match delete_sample(&session, lib_id, entity_id, sample_id, options.dry_run).await {
                Ok(()) => {
                    report.removed += 1;
                    out.removed(record, "deleted by rollback");
                }
                Err(error) => report.failed.push(finding(record, &error.to_string())),
            }
        }
        // Durable per entity: a rollback cut short leaves a ledger that says what it did.
        out.flush()?;
    }
    let created: Vec<&ObjectRecord> = book
        .created
        .iter()
        .filter(|c| {
            in_scope(&c.run)
                && !book
                    .deleted
                    .contains(c.entity_id.as_ref().unwrap_or(&c.lib_id))
        })
        .collect();
    remove_empty(&session, &created, &mut out, &mut report, options.dry_run).await?;
    out.close()?;
    Ok(report)
}

/// SampleIds the entity holds now; none when it (or its library) is gone.
async fn held_samples(
    session: &Session,
    lib_id: &str,
    entity_id: &str,
) -> Result<HashSet<String>, ApiError> {
    match session.samples(lib_id, entity_id, None).await {
        Ok(samples) => Ok(samples.into_iter().map(|s| s.sample_id).collect()),
        Err(error) if error.class() == ErrorClass::RowRejected => Ok(HashSet::new()),
        Err(error) => Err(error),
    }
}

/// Deletes one sample; a refusal after a lost answer counts as done when the sample is gone.
async fn delete_sample(
    session: &Session,
    lib_id: &str,
    entity_id: &str,
    sample_id: &str,
    dry_run: bool,
) -> Result<(), ApiError> {
    if dry_run {
        return Ok(());
    }
    let (client, algorithm) = (&session.client, session.algorithm);
    match session
        .call(|| client.delete_recognition_sample(algorithm, lib_id, entity_id, sample_id))
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if error.class() == ErrorClass::RowRejected => {
            let held = held_samples(session, lib_id, entity_id).await?;
            if held.contains(sample_id) {
                Err(error)
            } else {
                Ok(())
            }
        }
        Err(error) => Err(error),
    }
}

/// Entities first, then libraries: each deleted only when empty now.
async fn remove_empty(
    session: &Session,
    created: &[&ObjectRecord],
    out: &mut Outbox,
    report: &mut RollbackReport,
    dry_run: bool,
) -> Result<(), ApiError> {
    let (client, algorithm) = (&session.client, session.algorithm);
    for made in created.iter().filter(|c| c.object == ObjectKind::Entity) {
        let Some(entity_id) = made.entity_id.as_deref() else {
            continue;
        };
        let lib_id = made.lib_id.as_str();
        let samples = match session.samples(lib_id, entity_id, None).await {
            Ok(samples) => samples,
            Err(error) if error.class() == ErrorClass::RowRejected => continue, // already gone
            Err(error) => return Err(error),
        };
        if !samples.is_empty() {
            report.kept_not_empty.push(entity_id.to_string());
            continue;
        }
        if !dry_run {
            session
                .call(|| client.delete_recognition_entity(algorithm, lib_id, entity_id))
                .await?;
        }
        out.deleted(made);
        report.entities_deleted.push(entity_id.to_string());
    }
    for made in created.iter().filter(|c| c.object == ObjectKind::Lib) {
        let lib_id = made.lib_id.as_str();
        let entities = match session.entities(lib_id).await {
            Ok(entities) => entities,
            Err(error) if error.class() == ErrorClass::RowRejected => continue,
            Err(error) => return Err(error),
        };
        // A dry run deleted nothing: count the entities it would have deleted as gone.
        let left = entities
            .iter()
            .any(|e| !(dry_run && report.entities_deleted.contains(&e.entity_id)));
        if left {
            report.kept_not_empty.push(lib_id.to_string());
            continue;
        }
        if !dry_run {
            session
                .call(|| client.delete_recognition_lib(algorithm, lib_id))
                .await?;
        }
        out.deleted(made);
        report.libs_deleted.push(lib_id.to_string());
    }
    Ok(())
}

/// The rollback's lines: a `run_start`, a `removed` record per sample, a `deleted` record per
/// entity or library, a `run_end`; written once at the end and synced.
struct Outbox {
    appender: Option<Appender>,
    run: String,
    algorithm: Algorithm,
    buf: Vec<u8>,
}

impl Outbox {
    fn open(
        path: &Path,
        torn: u64,
        dry_run: bool,
        algorithm: Algorithm,
    ) -> Result<Outbox, LedgerError> {
        let appender = if dry_run {
            None
        } else {
            Some(Appender::open(path, torn)?)
        };
        let run = uuid::Uuid::new_v4().to_string();
        let mut outbox = Outbox {
            appender,
            run,
            algorithm,
            buf: Vec::new(),
        };
        outbox.run_record("run_start");
        Ok(outbox)
    }

    fn run_record(&mut self, kind: &str) {
        let record = RunRecord {
            target: Some(TargetName::Ice),
            algorithm: Some(self.algorithm.to_string()),
            ..RunRecord::start(&self.run, "rollback")
        };
        let record = if kind == "run_start" {
            Record::RunStart(record)
        } else {
            Record::RunEnd(record)
        };
        ledger::encode(&record, &mut self.buf);
    }

    fn removed(&mut self, last: &ImageRecord, reason: &str) {
        let mut record = ImageRecord::new(
            &self.run,
            Status::Removed,
            &last.category_id,
            &last.person_id,
            &last.image_url,
        );
        record.target = last.target;
        record.algorithm = last.algorithm.clone();
        record.lib_id = last.lib_id.clone();
        record.entity_id = last.entity_id.clone();
        record.sample_id = last.sample_id.clone();
        record.reason = Some(reason.into());
        ledger::encode(&Record::Image(record), &mut self.buf);
    }

    fn deleted(&mut self, made: &ObjectRecord) {
        let record = ObjectRecord {
            ts: crate::clock::now_rfc3339(),
            run: self.run.clone(),
            recovered: None,
            ..made.clone()
        };
        ledger::encode(&Record::Deleted(record), &mut self.buf);
    }

    fn flush(&mut self) -> Result<(), LedgerError> {
        let Some(appender) = &mut self.appender else {
            return Ok(());
        };
        appender.append(&self.buf)?;
        self.buf.clear();
        appender.sync()
    }

    fn close(mut self) -> Result<(), LedgerError> {
        self.run_record("run_end");
        self.flush()
    }
}
