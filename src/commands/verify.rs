//! `face-enroll verify`, for either target: reads every library of the manifest and the ledger
//! back from the server (paced and retried like `run`) and reports the drift; `--repair` makes
//! the ledger agree with the server, `--prune-duplicates` also removes extra copies by id.
//! Nothing changes without `--yes`; changes are made under the ledger's lock.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{connect_for, fail, ledger_target};
use crate::backend::{Backend, TargetKind};
use crate::caller::{Caller, Halt, Pace};
use crate::commands::drift::{
    self, Drift, Expected, ExpectedRow, Inputs, LedgerFace, LedgerIndex, LedgerRec, LibraryInputs,
    ServerId, Vanished,
};
use crate::commands::metrics::{self, VerifyFigures};
use crate::commands::verify_render::VerifyReport;
use crate::commands::verify_repair;
use crate::exit::Exit;
use crate::image::{ImageId, fold_id, person_key};
use crate::ledger::{self, Entry, KeyMap, LedgerError, Status};
use crate::manifest::{self, Entry as Row, ManifestError};
use crate::pipeline::journal::{self, Journal, Missing};
use crate::plan::Key;
use crate::stop::{Stop, watch_signals};

/// Validated flags of `verify`.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    pub manifest: PathBuf,
    pub ledger: PathBuf,
    pub pace: Pace,
    pub repair: bool,
    /// Implies `repair`.
    pub prune_duplicates: bool,
    pub yes: bool,
    pub json: bool,
    pub metrics: Option<PathBuf>,
    /// Orphans that match no manifest row are foreign: reported apart, not disagreement.
    pub accept_foreign: bool,
    /// How the manifest is read (`--encoding`, `--columns`, `--sheet`, `--layout`).
    pub read: manifest::ReadOptions,
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{} changed while verify read it; run verify again", .0.display())]
    Changed(PathBuf),
}

impl journal::Read for crate::commands::drift::Inputs {
    fn torn_tail(&self) -> u64 {
        self.torn_tail
    }
}

impl LoadError {
    fn exit(&self) -> Exit {
        match self {
            LoadError::Ledger(e) => e.into(),
            LoadError::Manifest(_) | LoadError::Changed(_) => Exit::Usage,
        }
    }
}

pub async fn execute<T: Backend>(config: VerifyConfig, target: T, endpoint: String) -> Exit {
    let writes = (config.repair || config.prune_duplicates) && config.yes;
    // A manifest path that names nothing is refused before the ledger is locked (and created,
    // for a repair that rebuilds a lost one) beside it.
    if writes && let Err(e) = crate::manifest::check_source(&config.manifest) {
        crate::say!("face-enroll: {e}");
        return finish_early(&config, Exit::Usage);
    }
    let kind = target.kind();
    let (inputs, begun) = match load_inputs(&config, kind, writes).await {
        Ok(loaded) => loaded,
        Err(exit) => return finish_early(&config, exit),
    };
    let (stop, caller) = pace_after_lately(&config, &inputs, begun.as_ref());
    let signals = tokio::spawn(watch_signals(stop.clone()));
    let repairs = config.repair || config.prune_duplicates;
    let (drifts, places, inputs) = read_server(&caller, &target, inputs, repairs).await;
    let Some(inputs) = inputs else {
        crate::say!("face-enroll: internal error: a read of the server did not end");
        begun.into_iter().for_each(journal::Begun::abandon);
        return finish_early(&config, Exit::Usage);
    };
    // Until the repair writes, an early end leaves no ledger this command created empty.
    let abandon =
        |begun: Option<journal::Begun>| begun.into_iter().for_each(journal::Begun::abandon);
    let (mut drifts, inputs) = match resolve_drifts(&config, kind, drifts, inputs).await {
        Ok(both) => both,
        Err(exit) => {
            abandon(begun);
            return finish_early(&config, exit);
        }
    };
    let refused = drifts.iter().map(|d| d.refused).sum();
    if config.accept_foreign {
        drifts.iter_mut().for_each(Drift::set_foreign_apart);
    }
    signals.abort();
    super::say_unreachable(&stop);
    if let Some(error) = stop.take_fatal() {
        crate::say!("face-enroll: the service at {endpoint} refused the verification: {error}");
        if let Some(hint) = error.hint() {
            crate::say!("  what to do: {hint}");
        }
        abandon(begun);
        return finish_early(&config, Exit::ServiceFatal);
    }
    if let Some(exit) = stop.exit() {
        abandon(begun);
        return finish_early(&config, exit);
    }
    let (mut report, exit) = report_of(&config, &endpoint, kind, drifts, &inputs);
    report.totals.refused = refused;
    if repairs {
        let plan = verify_repair::plan(&report.libraries, &inputs, config.prune_duplicates);
        report.repair = Some(plan);
    }
    print_report(&report, config.json);
    let mut exit = exit;
    // An empty repair leaves the ledger untouched: no run records for nothing.
    if let (Some(begun), Some(plan)) = (begun, report.repair.as_mut())
        && !plan.is_empty()
    {
        let context = verify_repair::Context {
            endpoint: &endpoint,
            exit,
            places: &places,
        };
        match verify_repair::apply(begun, context, plan, &caller, &target).await {
            Ok(applied) => exit = applied,
            Err(e) => return finish_early(&config, super::ledger_failure(&e)),
        }
        crate::say!("{}", verify_repair::render_applied(plan));
        if let Some(error) = stop.take_fatal() {
            crate::say!("face-enroll: the service refused the repair: {error}");
        }
    } else if report.repair.as_ref().is_some_and(|p| !p.is_empty()) {
        crate::say!("face-enroll: nothing changed: add --yes to apply this repair");
    }
    if let Some(path) = &config.metrics {
        report.totals.exit_code = exit.code();
        metrics::write_or_warn(path, &metrics::for_verify(&report.totals));
    }
    exit
}

/// Reads the ledger and the manifest (the ledger locked first when the command writes, so
/// what is read is what the repair is based on); an error is said here.
async fn load_inputs(
    config: &VerifyConfig,
    kind: TargetKind,
    writes: bool,
) -> Result<(Inputs, Option<journal::Begun>), Exit> {
    let (manifest, ledger) = (config.manifest.clone(), config.ledger.clone());
    let read = config.read.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let load = |ledger: &Path| load(&manifest, &read, ledger, kind);
        if !writes {
            return load(&ledger).map(|inputs| (inputs, None));
        }
        Journal::begin(&ledger, Missing::Create, load).map(|(inputs, begun)| (inputs, Some(begun)))
    })
    .await;
    said(loaded)
}

/// The stop and the caller; as `run` does, a process killed a moment ago may have spent this
/// second's budget.
fn pace_after_lately(
    config: &VerifyConfig,
    inputs: &Inputs,
    begun: Option<&journal::Begun>,
) -> (Arc<Stop>, Caller) {
    let stop = Arc::new(Stop::default());
    let caller = Caller::new(config.pace, stop.clone());
    let modified = match begun {
        Some(begun) => begun.modified(),
        None => std::fs::metadata(&config.ledger)
            .and_then(|m| m.modified())
            .ok(),
    };
    if ledger::may_have_sent_lately(inputs.unfinished_run, true, modified) {
        tracing::info!(
            "the last command on this ledger may have sent requests a moment ago (killed, or \
             just ended): they still count against the budgets, so the first request of each \
             operation waits one second"
        );
        caller.assume_busy_window();
    }
    (stop, caller)
}

/// [`resolve`] on a blocking thread; an error is said here.
async fn resolve_drifts(
    config: &VerifyConfig,
    kind: TargetKind,
    mut drifts: Vec<Drift>,
    mut inputs: Inputs,
) -> Result<(Vec<Drift>, Inputs), Exit> {
    let (manifest, ledger) = (config.manifest.clone(), config.ledger.clone());
    let read = config.read.clone();
    let resolved = tokio::task::spawn_blocking(move || {
        resolve(&manifest, &read, &ledger, kind, &mut drifts, &mut inputs)
            .map(|()| (drifts, inputs))
    })
    .await;
    said(resolved)
}

/// A blocking step's outcome, its error said here: the step's exit, or 2 for a step that
/// never finished (a bug).
fn said<T>(outcome: Result<Result<T, LoadError>, tokio::task::JoinError>) -> Result<T, Exit> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            crate::say!("face-enroll: {e}");
            Err(e.exit())
        }
        Err(e) => {
            crate::say!("face-enroll: internal error: {e}");
            Err(Exit::Usage)
        }
    }
}

/// The report of the comparison, and its exit: success when every library agrees.
fn report_of(
    config: &VerifyConfig,
    endpoint: &str,
    kind: TargetKind,
    drifts: Vec<Drift>,
    inputs: &Inputs,
) -> (VerifyReport, Exit) {
    let exit = if drifts.iter().all(Drift::agrees) {
        Exit::Success
    } else {
        Exit::RowsNotRegistered
    };
    let vanished: u64 = drifts.iter().map(|d| d.vanished.len() as u64).sum();
    let registered = inputs.ledger.faces() as u64;
    let report = VerifyReport {
        manifest: config.manifest.display().to_string(),
        ledger: config.ledger.display().to_string(),
        endpoint: endpoint.to_string(),
        target: kind.name(),
        checked: inputs.ledger.len() as u64,
        agree: registered.saturating_sub(vanished),
        totals: totals(&drifts, exit),
        invalid_rows: inputs.invalid_rows,
        other_target_records_not_verified: inputs.other_target_records,
        repair: None,
        libraries: drifts,
    };
    (report, exit)
}

/// An exit before any figure exists: the metrics file still records it.
fn finish_early(config: &VerifyConfig, exit: Exit) -> Exit {
    if let Some(path) = &config.metrics {
        let figures = VerifyFigures {
            exit_code: exit.code(),
            ..VerifyFigures::default()
        };
        metrics::write_or_warn(path, &metrics::for_verify(&figures));
    }
    exit
}

/// One read per library, in order; a library that cannot be read is reported as such. With
/// `places`, also where each server id a finding names lives, for a repair. Each listing is
/// compared as it is read (on the reader's thread, which shares the inputs); the inputs come
/// back at the end (`None`: a cancelled read's thread kept them past a second, a bug).
async fn read_server<T: Backend>(
    caller: &Caller,
    target: &T,
    inputs: Inputs,
    places: bool,
) -> (Vec<Drift>, HashMap<String, T::Place>, Option<Inputs>) {
    let rules = drift::Rules {
        max_per_person: target.kind().rules().max_images_per_person,
        samples: matches!(target.kind(), TargetKind::Ice(_)),
    };
    let inputs = Arc::new(inputs);
    let mut drifts = Vec::with_capacity(inputs.libraries.len());
    let mut found = HashMap::new();
    for (at, library) in inputs.libraries.iter().enumerate() {
        let start = || drift::Comparison::new(drift::Shared(inputs.clone(), at), rules, places);
        let comparison = match target.walk_listing(caller, &library.name, start).await {
            Ok(comparison) => comparison,
            Err(Halt::Fatal | Halt::Stopped) => break,
            Err(Halt::Refused(e) | Halt::Exhausted(e)) => {
                drifts.push(Drift {
                    library: library.name.clone(),
                    error: Some(e.to_string()),
                    ..Drift::default()
                });
                continue;
            }
        };
        let (drift, places) = comparison.finish();
        drift::add_places(&mut found, places);
        drifts.push(drift);
    }
    (drifts, found, unshare(inputs).await)
}

/// The inputs back from the comparisons that shared them. A read cancelled while its reader
/// thread ran lets go of them as soon as that thread sees its answer end: a moment later.
async fn unshare(mut inputs: Arc<Inputs>) -> Option<Inputs> {
    for _ in 0..1000 {
        match Arc::try_unwrap(inputs) {
            Ok(inputs) => return Some(inputs),
            Err(shared) => inputs = shared,
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    None
}

/// Reads the strings the drift names: the manifest rows of missing images and of orphans (a
/// second pass over the manifest), and the ledger records of vanished faces (a second scan).
fn resolve(
    manifest: &Path,
    read: &manifest::ReadOptions,
    ledger: &Path,
    kind: TargetKind,
    drifts: &mut [Drift],
    inputs: &mut Inputs,
) -> Result<(), LoadError> {
    resolve_rows(manifest, read, drifts, inputs)?;
    resolve_vanished(ledger, kind, drifts, inputs)
}

/// The manifest rows the drift names by line (missing images, orphans' rows), read again; a
/// row whose image changed since the first pass means the manifest changed.
fn resolve_rows(
    manifest: &Path,
    read: &manifest::ReadOptions,
    drifts: &mut [Drift],
    inputs: &mut Inputs,
) -> Result<(), LoadError> {
    // The image key each named line had when it was read first.
    let mut lines: HashMap<u64, (u128, Option<Expected>)> = HashMap::new();
    for (d, library) in drifts.iter().zip(&inputs.libraries) {
        let named = d.missing.iter().map(|m| m.line);
        for line in named.chain(d.orphans.iter().filter_map(|o| o.line)) {
            let expected = &library.expected;
            if let Ok(at) = expected.binary_search_by_key(&line, |e| e.line) {
                lines.insert(line, (expected[at].key(), None));
            }
        }
    }
    let changed = || LoadError::Changed(manifest.into());
    if !lines.is_empty() {
        for entry in manifest::Reader::open(manifest, read)? {
            let Row::Valid(row) = entry? else { continue };
            let Some((key, slot)) = lines.get_mut(&row.line) else {
                continue;
            };
            if *key != inputs.row_key(&row) {
                return Err(changed());
            }
            *slot = Some(Expected {
                line: row.line,
                identity: row.image_id().to_string(),
                category_id: row.category_id,
                person_id: row.person_id,
                person_name: row.person_name,
                image_url: row.image.source,
            });
        }
        for (line, (_, row)) in lines {
            inputs.rows.insert(line, row.ok_or_else(changed)?);
        }
    }
    for d in drifts.iter_mut() {
        for m in &mut d.missing {
            let row = inputs.rows.get(&m.line).ok_or_else(changed)?;
            m.person_id = row.person_id.clone();
            m.image_url = row.image_url.clone();
        }
    }
    Ok(())
}

/// The ledger records of the vanished faces (a second scan), each named by its id, listed by
/// person and image.
fn resolve_vanished(
    ledger: &Path,
    kind: TargetKind,
    drifts: &mut [Drift],
    inputs: &mut Inputs,
) -> Result<(), LoadError> {
    let wanted: KeyMap<()> = drifts
        .iter()
        .flat_map(|d| &d.vanished_at)
        .map(|&at| (inputs.ledger.key(at as usize), ()))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let faces = registered_faces(ledger, kind, &wanted)?;
    let samples = matches!(kind, TargetKind::Ice(_));
    for d in drifts.iter_mut() {
        for at in std::mem::take(&mut d.vanished_at) {
            let key = inputs.ledger.key(at as usize);
            let face = faces
                .get(&key)
                .ok_or_else(|| LoadError::Changed(ledger.into()))?;
            let id = if samples {
                ServerId::SampleId(face.id.clone())
            } else {
                ServerId::FaceId(face.id.clone())
            };
            d.vanished.push(Vanished {
                person_id: face.person_id.clone(),
                image_url: face.image_url.clone(),
                id,
            });
            inputs.vanished.insert(face.id.clone(), (key, face.clone()));
        }
        // The ledger index is in key-hash order: list them by person and image instead.
        d.vanished.sort_by(|a, b| {
            (&a.person_id, &a.image_url, a.id.as_str()).cmp(&(
                &b.person_id,
                &b.image_url,
                b.id.as_str(),
            ))
        });
    }
    Ok(())
}

/// The ledger's last `registered` record of each image `wanted` (of this target).
fn registered_faces(
    ledger: &Path,
    kind: TargetKind,
    wanted: &KeyMap<()>,
) -> Result<KeyMap<LedgerFace>, LoadError> {
    let mut faces: KeyMap<LedgerFace> = KeyMap::default();
    let ice = matches!(kind, TargetKind::Ice(_));
    ledger::scan(ledger, true, |entry| {
        let Entry::Image(image) = entry else {
            return;
        };
        let key = image.key();
        if image.is_mts() == ice || !wanted.contains_key(&key) {
            return;
        }
        match (image.status, image.server_id()) {
            (Status::Registered, Some(id)) => {
                faces.insert(
                    key,
                    LedgerFace {
                        id: id.to_string(),
                        category_id: image.category_id.to_string(),
                        person_id: image.person_id.to_string(),
                        image_url: image.image_url.to_string(),
                        identity: image.image_id().to_string(),
                    },
                );
            }
            _ => {
                faces.remove(&key);
            }
        }
    })?;
    Ok(faces)
}

fn totals(drifts: &[Drift], exit: Exit) -> VerifyFigures {
    let mut t = VerifyFigures {
        exit_code: exit.code(),
        libraries: drifts.len() as u64,
        ..VerifyFigures::default()
    };
    for d in drifts {
        t.libraries_unreadable += u64::from(d.error.is_some());
        t.server_faces += d.server_faces;
        t.missing += d.missing.len() as u64;
        t.duplicate_images += d.duplicates.len() as u64;
        t.extra_copies += d.extra_copies() as u64;
        t.orphans += d.orphans.len() as u64;
        t.foreign += d.foreign.len() as u64;
        t.vanished += d.vanished.len() as u64;
        t.persons_over_limit += d.persons_over_limit.len() as u64;
        t.removed_in_ledger += d.removed_in_ledger;
    }
    t
}

/// Reads the ledger, then the manifest, into what the comparison needs.
fn load(
    manifest: &Path,
    read: &manifest::ReadOptions,
    ledger: &Path,
    kind: TargetKind,
) -> Result<Inputs, LoadError> {
    let mut inputs = Inputs::default();
    let (registered, ledger_libraries) = read_ledger(ledger, kind, &mut inputs)?;
    let mut index: HashMap<String, usize> = HashMap::new();
    read_manifest(manifest, read, kind, registered, &mut inputs, &mut index)?;
    // Libraries only the ledger knows, in name order, so the report is stable.
    let mut only_ledger: BTreeMap<&str, (String, Vec<u32>)> = BTreeMap::new();
    for at in inputs.ledger.face_images() {
        let (folded, name) = &ledger_libraries[inputs.ledger.rec(at).library as usize];
        match index.get(folded) {
            Some(&lib) => inputs.libraries[lib].ledger_faces.push(at as u32),
            None => {
                let entry = only_ledger
                    .entry(folded)
                    .or_insert_with(|| (name.clone(), Vec::new()));
                entry.1.push(at as u32);
            }
        }
    }
    for (_, (name, ledger_faces)) in only_ledger {
        inputs.libraries.push(LibraryInputs {
            name,
            ledger_faces,
            ..LibraryInputs::default()
        });
    }
    Ok(inputs)
}

/// The ledger's libraries: each folded, and as first written.
type LedgerLibraries = Vec<(String, String)>;

/// The last state of every image of the target, packed into `inputs.ledger`; returns the
/// registered images per person, and the ledger's libraries.
fn read_ledger(
    path: &Path,
    kind: TargetKind,
    inputs: &mut Inputs,
) -> Result<(KeyMap<u32>, LedgerLibraries), LedgerError> {
    let ice = matches!(kind, TargetKind::Ice(_));
    let mut at: Parted<u32> = Parted::default();
    let mut images: Vec<([u64; 2], LedgerRec, [u64; 2])> = Vec::new();
    let mut per_person: KeyMap<u32> = KeyMap::default();
    let mut libraries = LibraryIndex::default();
    let mut aliases: KeyMap<u128> = KeyMap::default();
    let mut unfinished = false;
    let scanned = ledger::scan(path, true, |entry| {
        let image = match entry {
            Entry::Image(image) => image,
            Entry::Run(view) => {
                match view.kind {
                    Some(ledger::record::LineKind::RunStart) => unfinished = true,
                    Some(ledger::record::LineKind::RunEnd) => unfinished = false,
                    _ => {}
                }
                return;
            }
            _ => return,
        };
        if image.is_mts() == ice {
            inputs.other_target_records += 1;
            return;
        }
        let library = libraries.of(image.category_id);
        let key = image.key();
        if image.view.image_key.is_some() {
            let by_url =
                ImageId::new(image.image_url, None).key(image.category_id, image.person_id);
            if by_url != key {
                aliases.insert(by_url, key);
            }
        }
        let slot = *at.entry(key).or_insert_with(|| {
            images.push((
                drift::split(key),
                LedgerRec {
                    status: image.status,
                    face: false,
                    refused: false,
                    library: 0,
                },
                [0; 2],
            ));
            (images.len() - 1) as u32
        }) as usize;
        let id = match (image.status, image.server_id()) {
            (Status::Registered, Some(id)) => Some(drift::id_hash(id)),
            _ => None,
        };
        let was_face = images[slot].1.face;
        if was_face != id.is_some() {
            let person = person_key(image.category_id, image.person_id);
            recount(&mut per_person, person, was_face);
        }
        images[slot].1 = LedgerRec {
            status: image.status,
            face: id.is_some(),
            refused: image.status == Status::Failed && image.view.retryable != Some(true),
            library,
        };
        images[slot].2 = id.unwrap_or_default();
    })?;
    drop(at);
    inputs.aliases = aliases;
    inputs.torn_tail = scanned.torn_tail;
    inputs.unfinished_run = unfinished;
    inputs.ledger = LedgerIndex::build_split(images);
    Ok((per_person, libraries.libraries))
}

/// How many parts [`Parted`] has.
const PARTS: usize = 64;

/// A map by image key in parts (chosen by the key's high half; a part hashes by the low
/// half), so a part that grows holds its old and its new table of a sixty-fourth of the
/// images rather than of them all; each key kept in 16 bytes at 4-byte alignment (an entry of
/// a `u32` takes 20 bytes, not 32). A million images: some 60 MB less at the peak.
struct Parted<V> {
    parts: Vec<HashMap<Key, V, std::hash::BuildHasherDefault<ledger::KeyHasher>>>,
}

impl<V> Default for Parted<V> {
    fn default() -> Self {
        Parted {
            parts: (0..PARTS).map(|_| HashMap::default()).collect(),
        }
    }
}

impl<V> Parted<V> {
    fn part(
        &mut self,
        key: u128,
    ) -> &mut HashMap<Key, V, std::hash::BuildHasherDefault<ledger::KeyHasher>> {
        &mut self.parts[(key >> 64) as usize % PARTS]
    }

    fn entry(&mut self, key: u128) -> std::collections::hash_map::Entry<'_, Key, V> {
        self.part(key).entry(Key::of(key))
    }

    fn insert(&mut self, key: u128, value: V) -> Option<V> {
        self.part(key).insert(Key::of(key), value)
    }
}

/// A person's registered images, one fewer when an image stopped being a face (`was_face`),
/// else one more.
fn recount(per_person: &mut KeyMap<u32>, person: u128, was_face: bool) {
    let count = per_person.entry(person).or_insert(0);
    *count = if was_face {
        count.saturating_sub(1)
    } else {
        *count + 1
    };
}

/// The ledger's libraries by their folded name, numbered as first written.
#[derive(Default)]
struct LibraryIndex {
    libraries: LedgerLibraries,
    library_of: HashMap<String, u32>,
    /// The last category id asked for and its library: records come in runs of one library.
    last: (String, u32),
}

impl LibraryIndex {
    /// The number of the library `category_id` names, added when new.
    fn of(&mut self, category_id: &str) -> u32 {
        if self.libraries.is_empty() || self.last.0 != category_id {
            let folded = fold_id(category_id);
            let next = self.libraries.len() as u32;
            let libraries = &mut self.libraries;
            let library = *self.library_of.entry(folded.clone()).or_insert_with(|| {
                libraries.push((folded, category_id.trim().to_string()));
                next
            });
            self.last = (category_id.to_string(), library);
        }
        self.last.1
    }
}

/// The manifest's distinct valid images, up to each person's limit as `plan` counts it (images
/// the ledger holds count first, then new rows in manifest order).
fn read_manifest(
    path: &Path,
    read: &manifest::ReadOptions,
    kind: TargetKind,
    registered: KeyMap<u32>,
    inputs: &mut Inputs,
    index: &mut HashMap<String, usize>,
) -> Result<(), ManifestError> {
    let rules = kind.rules();
    let reader = manifest::Reader::open(path, read)?;
    let mut seen: Parted<()> = Parted::default();
    // Each person's count starts at its registered images: the counts become the used ones.
    let mut used = registered;
    for entry in reader {
        let row = match entry? {
            Row::Valid(row) if rules.check_row.and_then(|check| check(&row)).is_none() => row,
            _ => {
                inputs.invalid_rows += 1;
                continue;
            }
        };
        let key = inputs.row_key(&row);
        if seen.insert(key, ()).is_some() {
            inputs.duplicate_rows += 1;
            continue;
        }
        let at = *index.entry(fold_id(&row.category_id)).or_insert_with(|| {
            inputs.libraries.push(LibraryInputs {
                name: row.category_id.clone(),
                ..LibraryInputs::default()
            });
            inputs.libraries.len() - 1
        });
        let person = person_key(&row.category_id, &row.person_id);
        let already = inputs.ledger.is_face(key);
        let slot = used.entry(person).or_insert(0);
        if !already {
            if rules
                .max_images_per_person
                .is_some_and(|limit| *slot >= limit)
            {
                inputs.libraries[at].over_limit += 1;
                continue;
            }
            *slot += 1;
        }
        inputs.libraries[at]
            .expected
            .push(ExpectedRow::new(key, row.line));
    }
    Ok(())
}

fn print_report(report: &VerifyReport, json: bool) {
    if json {
        super::print_out(&(serde_json::to_string_pretty(report).unwrap_or_default() + "\n"));
    } else {
        super::print_out(super::verify_render::render(report));
    }
}

/// `face-enroll verify`: the flags, the target the ledger records, the connection, then [`execute`].
pub async fn command(args: crate::cli::ops::VerifyArgs) -> Exit {
    use crate::backend::TargetKind;
    let flagged = args.target.kind();
    let kind = match ledger_target(&args.ledger_path()) {
        Some(found @ TargetKind::Ice(_)) => found,
        _ => flagged,
    };
    let config = match args.config(kind) {
        Ok(config) => config,
        Err(message) => return fail(message),
    };
    crate::upload::read_uploads_from_journal(&config.read, &args.ledger_path());
    let connected = match connect_for(&args.connect, kind).await {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    crate::backend::dispatch!(kind, backend => {
        execute(config, backend(connected.client), connected.endpoint).await
    })
}

/// The command's flags, lowered once into its validated config.
impl crate::cli::ops::VerifyArgs {
    /// The ledger: `--ledger`, else the default beside the manifest for `--target`.
    pub fn ledger_path(&self) -> PathBuf {
        self.ledger.clone().unwrap_or_else(|| {
            self.target
                .kind()
                .default_ledger(&self.manifest, self.sandbox)
        })
    }

    /// The validated configuration for the import's target `kind`.
    pub fn config(
        &self,
        kind: crate::backend::TargetKind,
    ) -> Result<VerifyConfig, crate::exit::UsageError> {
        let connect = self.connect.settings()?;
        if let Some(metrics) = &self.metrics {
            let ledger = self.ledger_path();
            let lock = crate::ledger::lock_path(&ledger);
            let keep = [ledger.as_path(), lock.as_path(), self.manifest.as_path()];
            crate::report::refuse_clobbering("--metrics", metrics, &keep)?;
        }
        Ok(VerifyConfig {
            manifest: self.manifest.clone(),
            ledger: self.ledger_path(),
            pace: connect.pace(kind, crate::connect::SETTLE_MARGIN),
            repair: self.repair || self.prune_duplicates,
            prune_duplicates: self.prune_duplicates,
            yes: self.yes,
            json: self.json,
            metrics: self.metrics.clone(),
            accept_foreign: self.accept_foreign,
            read: super::read_options(self.encoding, &self.columns, &self.sheet, &self.layout),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_are_numbered_by_folded_name_as_first_written() {
        let mut index = LibraryIndex::default();
        let numbers: Vec<u32> = ["Staff", "Staff", "guests", " staff", "GUESTS"]
            .into_iter()
            .map(|id| index.of(id))
            .collect();
        assert_eq!(numbers, [0, 0, 1, 0, 1]);
        let written: Vec<(&str, &str)> = index
            .libraries
            .iter()
            .map(|(folded, first)| (folded.as_str(), first.as_str()))
            .collect();
        assert_eq!(written, [("staff", "Staff"), ("guests", "guests")]);
    }

    #[test]
    fn a_person_counts_one_more_face_or_one_fewer_never_below_zero() {
        let mut per_person = KeyMap::default();
        recount(&mut per_person, 7, false);
        recount(&mut per_person, 7, false);
        recount(&mut per_person, 7, true);
        recount(&mut per_person, 8, true);
        assert_eq!((per_person[&7], per_person[&8]), (1, 0));
    }
}
