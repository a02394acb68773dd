//! `face-enroll verify`, for either target: reads every library of the manifest and the ledger
//! back from the server (paced and retried like `run`) and reports the drift; `--repair` makes
//! the ledger agree with the server, `--prune-duplicates` also removes extra copies by id.
//! Nothing changes without `--yes`; changes are made under the ledger's lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{connect_for, fail, ledger_target};
use crate::backend::{Backend, TargetKind};
use crate::caller::{Caller, Halt, Pace};
use crate::commands::drift::{self, Drift, Expected, Inputs, LedgerFace, ServerId, Vanished};
use crate::commands::metrics::{self, VerifyFigures};
use crate::commands::verify_inputs::{LoadError, load};
use crate::commands::verify_render::VerifyReport;
use crate::commands::verify_repair;
use crate::exit::Exit;
use crate::ledger::{self, Entry, KeyMap, Status};
use crate::manifest::{self, Entry as Row};
use crate::pipeline::journal::{self, Journal, Missing};
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
    if let Some(exit) = stopped(&stop, &endpoint) {
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
    let context = verify_repair::Context {
        endpoint: &endpoint,
        exit,
        places: &places,
    };
    let exit = match repair(begun, report.repair.as_mut(), context, &caller, &target).await {
        Ok(exit) => exit,
        Err(exit) => return finish_early(&config, exit),
    };
    if let Some(error) = stop.take_fatal() {
        crate::say!("face-enroll: the service refused the repair: {error}");
    }
    if let Some(path) = &config.metrics {
        report.totals.exit_code = exit.code();
        metrics::write_or_warn(path, &metrics::for_verify(&report.totals));
    }
    exit
}

/// The exit of a verification the run's stop ended: a run-fatal answer from the service
/// (said, with what to do) or another stop (the endpoint unreachable is said first).
fn stopped(stop: &Stop, endpoint: &str) -> Option<Exit> {
    super::say_unreachable(stop);
    if let Some(error) = stop.take_fatal() {
        crate::say!("face-enroll: the service at {endpoint} refused the verification: {error}");
        if let Some(hint) = error.hint() {
            crate::say!("  what to do: {hint}");
        }
        return Some(Exit::ServiceFatal);
    }
    stop.exit()
}

/// Applies the repair when there is one to apply and the ledger is open for it (`--yes`);
/// an empty repair leaves the ledger untouched (no run records for nothing), one without
/// `--yes` is only said. The exit: the repair's, else what `verify` found; `Err` when the
/// ledger could not be written.
async fn repair<T: Backend>(
    begun: Option<journal::Begun>,
    plan: Option<&mut verify_repair::RepairPlan>,
    context: verify_repair::Context<'_, T::Place>,
    caller: &Caller,
    target: &T,
) -> Result<Exit, Exit> {
    let Some(plan) = plan.filter(|plan| !plan.is_empty()) else {
        return Ok(context.exit);
    };
    let Some(begun) = begun else {
        crate::say!("face-enroll: nothing changed: add --yes to apply this repair");
        return Ok(context.exit);
    };
    let exit = verify_repair::apply(begun, context, plan, caller, target)
        .await
        .map_err(|e| super::ledger_failure(&e))?;
    crate::say!("{}", verify_repair::render_applied(plan));
    Ok(exit)
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
                category_id: row.category_id,
                person_id: row.person_id,
                person_name: row.person_name,
                image: row.image,
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
            m.image_url = row.image.shown().into_owned();
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
                image_url: face.image.source.clone(),
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
                        image: image.image(),
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
