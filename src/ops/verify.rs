//! `face-enroll verify`: reads every library of the manifest and the ledger back from the server
//! (one paced, retried `ListCustomPersons` per library) and reports the drift; `--repair` makes
//! the ledger agree with the server, `--prune-duplicates` also unregisters extra copies by FaceId.
//! Nothing changes without `--yes`; changes are made under the ledger's lock.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::api::{Client, CustomPersons};
use crate::exit::Exit;
use crate::ledger::{self as scan, Entry as LedgerEntry};
use crate::ledger::{KeyMap, Lock, Status};
use crate::manifest::{self, Entry, fold_id, image_key, person_key};
use crate::ops::calls::{self, CallError, Caller};
use crate::ops::drift::{self, Drift, Expected, Inputs, LedgerFace, LibraryInputs};
use crate::ops::metrics::{self, VerifyFigures};
use crate::ops::verify_repair::{self, RepairPlan};
use crate::plan::MAX_FACES_PER_PERSON;

/// Validated flags of `verify`.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    pub manifest: PathBuf,
    pub ledger: PathBuf,
    pub qps: u32,
    pub max_attempts: u32,
    pub seed: Option<u64>,
    pub repair: bool,
    /// Implies `repair`.
    pub prune_duplicates: bool,
    pub yes: bool,
    pub json: bool,
    pub metrics: Option<PathBuf>,
}

/// The whole report, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub manifest: String,
    pub ledger: String,
    pub endpoint: String,
    pub libraries: Vec<Drift>,
    pub totals: VerifyFigures,
    pub invalid_rows: u64,
    pub ice_records_not_verified: u64,
    pub repair: Option<RepairPlan>,
}

pub async fn execute(config: VerifyConfig, client: Client, endpoint: String) -> Exit {
    let writes = (config.repair || config.prune_duplicates) && config.yes;
    // Locked before reading, so what is read is what the repair is based on.
    let lock = if writes {
        match Lock::acquire(&config.ledger) {
            Ok(lock) => Some(lock),
            Err(e) => return finish_early(&config, super::ledger_failure(&e)),
        }
    } else {
        None
    };
    let (manifest, ledger) = (config.manifest.clone(), config.ledger.clone());
    let inputs = match super::blocking(move || load(&manifest, &ledger)).await {
        Ok(inputs) => inputs,
        Err(message) => {
            eprintln!("face-enroll: {message}");
            return finish_early(&config, Exit::Usage);
        }
    };
    let (caller, drifts) = match read_all(&config, client, &inputs).await {
        Ok(read) => read,
        Err(exit) => return finish_early(&config, exit),
    };
    let exit = if drifts.iter().all(Drift::agrees) {
        Exit::Success
    } else {
        Exit::RowsNotRegistered
    };
    let mut report = VerifyReport {
        manifest: config.manifest.display().to_string(),
        ledger: config.ledger.display().to_string(),
        endpoint: endpoint.clone(),
        totals: totals(&drifts, exit),
        invalid_rows: inputs.invalid_rows,
        ice_records_not_verified: inputs.ice_records,
        repair: None,
        libraries: drifts,
    };
    if config.repair || config.prune_duplicates {
        let plan = verify_repair::plan(&report.libraries, &inputs, config.prune_duplicates);
        report.repair = Some(plan);
    }
    print_report(&report, config.json);
    let mut exit = exit;
    // An empty repair leaves the ledger untouched: no run records for nothing.
    if let (Some(lock), Some(plan)) = (lock, report.repair.as_mut())
        && !plan.is_empty()
    {
        let context = verify_repair::Context {
            ledger: &config.ledger,
            torn_tail: inputs.torn_tail,
            endpoint: &endpoint,
            exit,
        };
        match verify_repair::apply(lock, context, plan, &caller).await {
            Ok(applied) => exit = applied,
            Err(message) => {
                eprintln!("face-enroll: {message}");
                return finish_early(&config, Exit::Usage);
            }
        }
        eprintln!("{}", verify_repair::render_applied(plan));
        if let Some(error) = caller.take_fatal() {
            eprintln!("face-enroll: the service refused the repair: {error}");
        }
    } else if report.repair.as_ref().is_some_and(|p| !p.is_empty()) {
        eprintln!("face-enroll: nothing changed: add --yes to apply this repair");
    }
    if let Some(path) = &config.metrics {
        report.totals.exit_code = exit.code();
        metrics::write_or_warn(path, &metrics::for_verify(&report.totals));
    }
    exit
}

/// Reads every library. A run-fatal answer or an interruption ends the command.
async fn read_all(
    config: &VerifyConfig,
    client: Client,
    inputs: &Inputs,
) -> Result<(Arc<Caller>, Vec<Drift>), Exit> {
    let caller = Arc::new(Caller::new(
        client,
        config.qps,
        config.max_attempts,
        config.seed,
    ));
    let signals = tokio::spawn(calls::watch_signals(caller.stop.clone()));
    let drifts = read_server(&caller, inputs).await;
    signals.abort();
    if let Some(error) = caller.take_fatal() {
        eprintln!("face-enroll: the service refused the verification: {error}");
        if let Some(hint) = error.hint() {
            eprintln!("  what to do: {hint}");
        }
        return Err(Exit::ServiceFatal);
    }
    if caller.stop.is_stopping() {
        return Err(Exit::Interrupted);
    }
    Ok((caller, drifts))
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

/// One listing per library, in order; a library that cannot be read is reported as such.
async fn read_server(caller: &Caller, inputs: &Inputs) -> Vec<Drift> {
    let mut drifts = Vec::with_capacity(inputs.libraries.len());
    for library in &inputs.libraries {
        let listing = match caller.list(&library.name, None).await {
            Ok(listing) => listing,
            // An unknown library holds nothing (the service may say so instead of listing none).
            Err(CallError::Rejected(e)) if calls::is_not_found(&e) => CustomPersons::default(),
            Err(CallError::Fatal | CallError::Stopped) => break,
            Err(CallError::Rejected(e) | CallError::Exhausted(e)) => {
                drifts.push(Drift {
                    library: library.name.clone(),
                    error: Some(e.to_string()),
                    ..Drift::default()
                });
                continue;
            }
        };
        drifts.push(drift::compare(library, &listing, inputs));
    }
    drifts
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
        t.vanished += d.vanished.len() as u64;
        t.persons_over_limit += d.persons_over_limit.len() as u64;
    }
    t
}

/// Reads the ledger, then the manifest, into what the comparison needs.
pub(crate) fn load(manifest: &Path, ledger: &Path) -> Result<Inputs, String> {
    let mut inputs = Inputs::default();
    let registered = read_ledger(ledger, &mut inputs)?;
    let mut index: HashMap<String, usize> = HashMap::new();
    read_manifest(manifest, &registered, &mut inputs, &mut index)?;
    // Libraries only the ledger knows, in name order, so the report is stable.
    let mut only_ledger: BTreeMap<String, (String, Vec<u128>)> = BTreeMap::new();
    for (key, face) in &inputs.faces {
        let folded = fold_id(&face.category_id);
        match index.get(&folded) {
            Some(&at) => inputs.libraries[at].ledger_faces.push(*key),
            None => {
                let entry = only_ledger
                    .entry(folded)
                    .or_insert_with(|| (face.category_id.trim().to_string(), Vec::new()));
                entry.1.push(*key);
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

/// The last state of every MTS image; returns registered faces per person.
fn read_ledger(path: &Path, inputs: &mut Inputs) -> Result<KeyMap<u32>, String> {
    let scanned = scan::scan(path, true, |entry| {
        let LedgerEntry::Image(image) = entry else {
            return;
        };
        if !image.is_mts() {
            inputs.ice_records += 1;
            return;
        }
        let key = image_key(image.category_id, image.person_id, image.image_url);
        inputs.statuses.insert(key, image.status);
        match (image.status, image.face_id()) {
            (Status::Registered, Some(face_id)) => {
                inputs.faces.insert(
                    key,
                    LedgerFace {
                        face_id: face_id.to_string(),
                        category_id: image.category_id.to_string(),
                        person_id: image.person_id.to_string(),
                        image_url: image.image_url.to_string(),
                    },
                );
            }
            _ => {
                inputs.faces.remove(&key);
            }
        }
    })
    .map_err(|e| e.to_string())?;
    inputs.torn_tail = scanned.torn_tail;
    let mut per_person: KeyMap<u32> = KeyMap::default();
    for (key, face) in &inputs.faces {
        inputs.face_ids.insert(face.face_id.clone(), *key);
        *per_person
            .entry(person_key(&face.category_id, &face.person_id))
            .or_insert(0) += 1;
    }
    Ok(per_person)
}

/// The manifest's distinct valid images, up to each person's limit as `plan` counts it (faces
/// the ledger holds count first, then new rows in manifest order).
fn read_manifest(
    path: &Path,
    registered: &KeyMap<u32>,
    inputs: &mut Inputs,
    index: &mut HashMap<String, usize>,
) -> Result<(), String> {
    let reader = manifest::Reader::open(path).map_err(|e| e.to_string())?;
    let mut seen: KeyMap<()> = KeyMap::default();
    let mut used: KeyMap<u32> = KeyMap::default();
    for entry in reader {
        let row = match entry.map_err(|e| e.to_string())? {
            Entry::Valid(row) => row,
            Entry::Invalid(_) => {
                inputs.invalid_rows += 1;
                continue;
            }
        };
        let key = image_key(&row.category_id, &row.person_id, &row.image_url);
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
        let already = inputs.faces.contains_key(&key);
        let slot = used
            .entry(person)
            .or_insert_with(|| registered.get(&person).copied().unwrap_or(0));
        if !already {
            if *slot >= MAX_FACES_PER_PERSON {
                inputs.libraries[at].over_limit += 1;
                continue;
            }
            *slot += 1;
        }
        inputs.libraries[at].expected.push(Expected {
            line: row.line,
            category_id: row.category_id,
            person_id: row.person_id,
            person_name: row.person_name,
            image_url: row.image_url,
        });
    }
    Ok(())
}

fn print_report(report: &VerifyReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    } else {
        print!("{}", super::verify_render::render(report));
    }
}
