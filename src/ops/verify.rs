//! `face-enroll verify`, for either target: reads every library of the manifest and the ledger
//! back from the server (paced and retried like `run`) and reports the drift; `--repair` makes
//! the ledger agree with the server, `--prune-duplicates` also removes extra copies by id.
//! Nothing changes without `--yes`; changes are made under the ledger's lock.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::caller::{Caller, Halt, Pace};
use crate::exit::Exit;
use crate::ledger::{self, Entry, KeyMap, LedgerError, Lock, Status};
use crate::manifest::{self, Entry as Row, ManifestError, fold_id, image_key, person_key};
use crate::ops::drift::{self, Drift, Expected, Inputs, LedgerFace, LibraryInputs, ServerFace};
use crate::ops::metrics::{self, VerifyFigures};
use crate::ops::verify_render::VerifyReport;
use crate::ops::verify_repair;
use crate::stop::{Stop, watch_signals};
use crate::target::{Target, TargetKind};

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
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

pub async fn execute<T: Target>(config: VerifyConfig, target: T, endpoint: String) -> Exit {
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
    let kind = target.kind();
    let (manifest, ledger) = (config.manifest.clone(), config.ledger.clone());
    let inputs = match tokio::task::spawn_blocking(move || load(&manifest, &ledger, kind)).await {
        Ok(Ok(inputs)) => inputs,
        Ok(Err(e)) => {
            crate::say!("face-enroll: {e}");
            return finish_early(&config, Exit::Usage);
        }
        Err(e) => {
            crate::say!("face-enroll: internal error: {e}");
            return finish_early(&config, Exit::Usage);
        }
    };
    let stop = Arc::new(Stop::default());
    let caller = Caller::new(config.pace, stop.clone());
    let signals = tokio::spawn(watch_signals(stop.clone()));
    let (mut drifts, places) = read_server(&caller, &target, &inputs).await;
    let refused = super::verify_render::set_aside_refused(&mut drifts, &config.ledger);
    signals.abort();
    if let Some(error) = stop.take_fatal() {
        crate::say!("face-enroll: the service refused the verification: {error}");
        if let Some(hint) = error.hint() {
            crate::say!("  what to do: {hint}");
        }
        return finish_early(&config, Exit::ServiceFatal);
    }
    if let Some(exit) = stop.exit() {
        return finish_early(&config, exit);
    }
    let exit = if drifts.iter().all(Drift::agrees) {
        Exit::Success
    } else {
        Exit::RowsNotRegistered
    };
    let vanished: u64 = drifts.iter().map(|d| d.vanished.len() as u64).sum();
    let registered = inputs.faces.len() as u64;
    let mut report = VerifyReport {
        manifest: config.manifest.display().to_string(),
        ledger: config.ledger.display().to_string(),
        endpoint: endpoint.clone(),
        target: kind.name(),
        checked: inputs.statuses.len() as u64,
        agree: registered.saturating_sub(vanished),
        totals: totals(&drifts, exit),
        invalid_rows: inputs.invalid_rows,
        other_target_records_not_verified: inputs.other_target_records,
        repair: None,
        libraries: drifts,
    };
    report.totals.refused = refused;
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
            places: &places,
        };
        match verify_repair::apply(lock, context, plan, &caller, &target).await {
            Ok(applied) => exit = applied,
            Err(e) => {
                crate::say!("face-enroll: {e}");
                return finish_early(&config, Exit::Usage);
            }
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

/// One read per library, in order; a library that cannot be read is reported as such. Also
/// returns where each server id lives, for a repair.
async fn read_server<T: Target>(
    caller: &Caller,
    target: &T,
    inputs: &Inputs,
) -> (Vec<Drift>, HashMap<String, T::Place>) {
    let rules = drift::Rules {
        max_per_person: target.kind().rules().max_images_per_person,
        samples: matches!(target.kind(), TargetKind::Ice(_)),
    };
    let mut drifts = Vec::with_capacity(inputs.libraries.len());
    let mut places = HashMap::new();
    for library in &inputs.libraries {
        let listing = match target.library(caller, &library.name).await {
            Ok(listing) => listing,
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
        let mut faces = Vec::new();
        for person in listing.persons {
            for image in person.images {
                places.insert(image.id.clone(), person.place.clone());
                faces.push(ServerFace {
                    category_id: library.name.clone(),
                    person_id: person.person_id.clone(),
                    image_url: image.image_url,
                    id: image.id,
                });
            }
        }
        drifts.push(drift::compare(library, &faces, inputs, rules));
    }
    (drifts, places)
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
fn load(manifest: &Path, ledger: &Path, kind: TargetKind) -> Result<Inputs, LoadError> {
    let mut inputs = Inputs::default();
    let registered = read_ledger(ledger, kind, &mut inputs)?;
    let mut index: HashMap<String, usize> = HashMap::new();
    read_manifest(manifest, kind, &registered, &mut inputs, &mut index)?;
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

/// The last state of every image of the target; returns registered images per person.
fn read_ledger(
    path: &Path,
    kind: TargetKind,
    inputs: &mut Inputs,
) -> Result<KeyMap<u32>, LedgerError> {
    let ice = matches!(kind, TargetKind::Ice(_));
    let scanned = ledger::scan(path, true, |entry| {
        let Entry::Image(image) = entry else {
            return;
        };
        if image.is_mts() == ice {
            inputs.other_target_records += 1;
            return;
        }
        let key = image_key(image.category_id, image.person_id, image.image_url);
        inputs.statuses.insert(key, image.status);
        match (image.status, image.server_id()) {
            (Status::Registered, Some(id)) => {
                inputs.faces.insert(
                    key,
                    LedgerFace {
                        id: id.to_string(),
                        category_id: image.category_id.to_string(),
                        person_id: image.person_id.to_string(),
                        image_url: image.image_url.to_string(),
                        identity: image.identity().to_string(),
                    },
                );
            }
            _ => {
                inputs.faces.remove(&key);
            }
        }
    })?;
    inputs.torn_tail = scanned.torn_tail;
    let mut per_person: KeyMap<u32> = KeyMap::default();
    for (key, face) in &inputs.faces {
        inputs.ids.insert(face.id.clone(), *key);
        *per_person
            .entry(person_key(&face.category_id, &face.person_id))
            .or_insert(0) += 1;
    }
    Ok(per_person)
}

/// The manifest's distinct valid images, up to each person's limit as `plan` counts it (images
/// the ledger holds count first, then new rows in manifest order).
fn read_manifest(
    path: &Path,
    kind: TargetKind,
    registered: &KeyMap<u32>,
    inputs: &mut Inputs,
    index: &mut HashMap<String, usize>,
) -> Result<(), ManifestError> {
    let rules = kind.rules();
    let reader = manifest::Reader::open(path)?;
    let mut seen: KeyMap<()> = KeyMap::default();
    let mut used: KeyMap<u32> = KeyMap::default();
    for entry in reader {
        let row = match entry? {
            Row::Valid(row) if rules.check_row.and_then(|check| check(&row)).is_none() => row,
            _ => {
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
            if rules
                .max_images_per_person
                .is_some_and(|limit| *slot >= limit)
            {
                inputs.libraries[at].over_limit += 1;
                continue;
            }
            *slot += 1;
        }
        let identity = row.identity().to_string();
        inputs.libraries[at].expected.push(Expected {
            identity,
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
