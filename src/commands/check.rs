//! `face-enroll check`: reads the manifest and the ledger, sends nothing, and says what a run
//! would do (and, with `--sync`, what it would remove).

use std::path::Path;

use crate::cli::CheckArgs;
use crate::exit::Exit;
use crate::ledger;
use crate::plan::{self, Plan};

use super::fail;

pub async fn command(args: CheckArgs) -> Exit {
    let (job, preflight) = match plan_job(&args) {
        Ok(planned) => planned,
        Err(exit) => return exit,
    };
    // With --upload-to, local photos are named by their content as a run names them (their
    // files read, nothing uploaded), so the plan holds them as the objects they will be.
    if args.upload_to.is_some() && (args.probe || preflight.is_some()) {
        return fail(
            "--upload-to with --probe or --preflight: the local photos are not uploaded yet, so \
             OSS would be asked for objects that are not there; check them without (a run \
             pre-flights local photos from their files)",
        );
    }
    if args.upload_to.is_some() {
        let photos = crate::upload::LocalPhotos {
            manifest: &args.manifest,
            to: args.upload_to.as_ref(),
            concurrency: args.upload_concurrency,
            ledger: args.ledger_path(),
            sandbox: args.sandbox,
        };
        if let Err(message) = photos.name(&job.read).await {
            return fail(message);
        }
    }
    let sync = job.sync;
    let checked = match tokio::task::spawn_blocking(move || plan_as_run(job)).await {
        Ok(Ok(checked)) => checked,
        Ok(Err(error)) => return fail(error),
        Err(e) => return fail(format!("internal error: {e}")),
    };
    let removals = checked.dropped.removals() as u64;
    let refusal = sync
        .and_then(|s| plan::sync_refusal(removals, s.max_delete, checked.plan.counts.invalid))
        .map(|(_, why)| why);
    // The plan is shown before the probe's answers come in; with --json both are one document.
    let connected = if args.probe || preflight.is_some() {
        match connect_for_objects(&args).await {
            Ok(connected) => Some(connected),
            Err(exit) => return exit,
        }
    } else {
        None
    };
    let examined = match &connected {
        Some(connected) if args.json => {
            let client = &connected.client;
            examine(&args, &checked, client, preflight.as_ref(), false).await
        }
        _ => (None, None),
    };
    let out = if args.json {
        render_json(&args, &checked, refusal.as_deref(), &examined)
    } else {
        render_text(&args, &checked, refusal.as_deref())
    };
    super::print_out(&out);
    let (probe, preflighted) = match &connected {
        Some(connected) if !args.json => {
            examine(&args, &checked, &connected.client, preflight.as_ref(), true).await
        }
        _ => examined,
    };
    // The credentials or the network, not the photos: said as such, with its own exit code.
    if let Some(halt) = preflighted.as_ref().and_then(|c| c.halt.as_ref()) {
        crate::say!("face-enroll: {}", halt.message);
        return halt.exit;
    }
    let unreadable = probe.map_or(0, |p| p.problems()) + preflighted.map_or(0, |c| c.refused);
    verdict(&checked.plan, refusal.is_some(), unreadable)
}

/// What `check` plans, from its flags (a usage error is said, and its exit returned), and
/// the pre-flight's settings.
fn plan_job(args: &CheckArgs) -> Result<(PlanJob, Option<crate::preflight::Settings>), Exit> {
    args.target.check().map_err(fail)?;
    let read = super::read_options(args.encoding, &args.columns, &args.sheet, &args.layout);
    crate::upload::read_uploads_from_journal(&read, &args.ledger_path());
    let sync = args.sync.settings();
    let preflight = args.preflight.settings(false).map_err(fail)?;
    if preflight.is_some() && args.sandbox {
        return Err(fail(
            "--preflight reads the images with the run's credentials: give --endpoint (or a \
             profile) rather than --sandbox",
        ));
    }
    let job = PlanJob {
        manifest: args.manifest.clone(),
        ledger: args.ledger_path(),
        read,
        kind: args.target.kind(),
        options: plan::Options {
            retry_failed: false,
            keep_work: args.probe || preflight.is_some(),
            reconcile: args.reconcile.into(),
            sync: sync.is_some(),
        },
        sync,
        with_hashes: preflight.is_some(),
    };
    Ok((job, preflight))
}

/// `check`'s exit: too many removals for `--max-delete`, rows that would not be registered
/// (invalid, over the limit, unreadable or refused by the probe or pre-flight), else success.
fn verdict(plan: &Plan, sync_refused: bool, unreadable: u64) -> Exit {
    if sync_refused {
        Exit::TooManyRemovals
    } else if plan.counts.invalid + plan.counts.over_limit + unreadable > 0 {
        Exit::RowsNotRegistered
    } else {
        Exit::Success
    }
}

/// `check --json`: the plan, its removals, and the probe's and pre-flight's reports.
fn render_json(
    args: &CheckArgs,
    checked: &Checked,
    refusal: Option<&str>,
    (probe, preflighted): &(Option<ProbeReport>, Option<crate::preflight::Report>),
) -> String {
    let sync = args.sync.settings();
    let mut json = CheckJson::new(args, &checked.plan, &checked.dropped, sync, refusal);
    json.probe = probe.as_ref();
    json.preflight = preflighted.as_ref();
    if let (Some(s), Some(c)) = (json.sync.as_mut(), &checked.replanned) {
        s.replanned = Some(Replanned {
            to_send: c.to_send,
            over_limit: c.over_limit,
        });
    }
    serde_json::to_string_pretty(&json).unwrap_or_default() + "\n"
}

/// `--probe` and `--preflight`, each when asked: their reports, printed as text when `print`
/// (with `--json` they go into the one document instead).
async fn examine(
    args: &CheckArgs,
    checked: &Checked,
    client: &crate::api::Client,
    preflight: Option<&crate::preflight::Settings>,
    print: bool,
) -> (Option<ProbeReport>, Option<crate::preflight::Report>) {
    let probe = if args.probe {
        let report = probe_objects(args, &checked.plan, client).await;
        if print {
            super::print_out(report.render());
        }
        Some(report)
    } else {
        None
    };
    let preflighted = match preflight {
        Some(settings) => {
            let report = preflight_images(&checked.plan, &checked.recorded, client, settings).await;
            if print && report.halt.is_none() {
                super::print_out(report.render());
            }
            Some(report)
        }
        None => None,
    };
    (probe, preflighted)
}

/// What `check` plans with, moved to the blocking thread that reads the manifest and ledger.
struct PlanJob {
    manifest: std::path::PathBuf,
    ledger: std::path::PathBuf,
    read: crate::manifest::ReadOptions,
    kind: crate::backend::TargetKind,
    options: plan::Options,
    sync: Option<plan::SyncSettings>,
    /// Pre-flight: read the photos the ledger records as registered, to compare new ones with.
    with_hashes: bool,
}

/// What `check` planned.
struct Checked {
    plan: Plan,
    dropped: plan::Dropped,
    /// The photos the ledger records as registered (pre-flight only; else empty).
    recorded: crate::preflight::Remembered,
    /// A refused sync: the counts of the plan `run` would make again without removals.
    replanned: Option<plan::Counts>,
}

/// Plans exactly as `run` plans, its refusals included (a ledger of another target)
/// (blocking).
fn plan_as_run(job: PlanJob) -> Result<Checked, plan::run::PlanError> {
    let replay = ledger::replay(&job.ledger)?;
    let run = plan::run::RunPlan {
        manifest: &job.manifest,
        ledger: &job.ledger,
        target: job.kind.ledger_name(),
        algorithm: job.kind.algorithm().map(crate::api::Algorithm::as_str),
        options: job.options,
        rules: job.kind.rules(),
        sync: job.sync.map(|s| s.scope),
    };
    let planned = plan::run::plan_run(&run, &job.read, &replay, &Default::default())?;
    // A refused sync makes `run` plan again without removals (exit 8): what it would then
    // send, since the image limit no longer counts the slots the removals would free.
    let refused = job.sync.is_some_and(|s| {
        let removals = planned.dropped.removals() as u64;
        plan::sync_refusal(removals, s.max_delete, planned.plan.counts.invalid).is_some()
    });
    let replanned = if refused {
        let again = plan::run::RunPlan {
            options: plan::Options {
                sync: false,
                ..run.options
            },
            sync: None,
            ..run
        };
        let again = plan::run::plan_run(&again, &job.read, &replay, &Default::default())?;
        Some(again.plan.counts)
    } else {
        None
    };
    // Pre-flight compares new photos with the ones the ledger records as registered.
    let recorded = if job.with_hashes {
        crate::preflight::recorded(&job.ledger)?
    } else {
        crate::preflight::Remembered::default()
    };
    Ok(Checked {
        plan: planned.plan,
        dropped: planned.dropped,
        recorded,
        replanned,
    })
}

/// The plan as text: its figures, how the manifest was read, and with `--sync` its removals.
fn render_text(args: &CheckArgs, checked: &Checked, refusal: Option<&str>) -> String {
    let (plan, limit) = (
        &checked.plan,
        args.target.kind().rules().max_images_per_person,
    );
    let mut text = render_plan(&args.manifest, plan, args.qps(), limit);
    // How the file was read (encoding or spreadsheet, which header holds which field).
    if let Some(read_as) = &plan.read_as {
        text.push_str(&format!("  read as {read_as}\n"));
    }
    if let Some(sync) = args.sync.settings() {
        text.push_str(&render_sync(plan, &checked.dropped, sync, refusal));
        if let Some(c) = &checked.replanned {
            text.push_str(&format!(
                "    it would then plan again without removals and send {} images ({} over \
                 the per-person limit: the slots the removals would free stay taken)\n",
                c.to_send, c.over_limit
            ));
        }
    }
    text
}

/// `check --json`: the plan's figures, and with `--sync` its removals, per library.
#[derive(serde::Serialize)]
struct CheckJson<'a> {
    manifest: String,
    target: &'static str,
    rows: u64,
    persons: u64,
    invalid: u64,
    duplicates: u64,
    already_registered: u64,
    over_limit: u64,
    previously_failed: u64,
    /// Refused earlier through a user-signed link that the manifest has since replaced.
    relinked: u64,
    /// Of `to_send`: recorded `invalid` by an earlier run (pre-flight refused the photo).
    previously_invalid: u64,
    to_send: u64,
    to_look_up: u64,
    to_reconcile: u64,
    /// Unsettled images the manifest no longer names, read back by the next run.
    to_settle: u64,
    libraries: Vec<CheckLibrary>,
    sync: Option<CheckSync>,
    /// `--probe`: what OSS said about the `oss://` objects to send.
    #[serde(skip_serializing_if = "Option::is_none")]
    probe: Option<&'a ProbeReport>,
    /// `--preflight`: what reading each image to send found, by line.
    #[serde(skip_serializing_if = "Option::is_none")]
    preflight: Option<&'a crate::preflight::Report>,
}

#[derive(serde::Serialize)]
struct CheckLibrary {
    library: String,
    adds: u64,
    removes: u64,
}

#[derive(serde::Serialize)]
struct CheckSync {
    scope: &'static str,
    removes: u64,
    max_delete: u64,
    /// `run --sync` would remove none and exit 8: more than `max_delete`, or invalid rows.
    over_max_delete: bool,
    /// Why, when it would.
    refused_because: Option<String>,
    /// `library` scope: the server is read by `run` for what other tools put there, which
    /// `check` (sending nothing) cannot count.
    server_not_read: bool,
    unsafe_ids: Vec<String>,
    /// Every image the sync would remove.
    removals: Vec<CheckRemoval>,
    /// With `over_max_delete`: what `run --sync` would do after refusing the removals, when it
    /// plans again without them.
    replanned: Option<Replanned>,
}

/// The plan `run --sync` makes again after refusing its removals (exit 8).
#[derive(serde::Serialize)]
struct Replanned {
    to_send: u64,
    over_limit: u64,
}

#[derive(serde::Serialize)]
struct CheckRemoval {
    library: String,
    person: String,
    image_url: String,
    id: Option<String>,
    reason: &'static str,
}

/// The removals a sync plans, in ledger order per person.
fn removal_list(dropped: &plan::Dropped) -> Vec<CheckRemoval> {
    dropped
        .persons
        .iter()
        .flat_map(|p| {
            p.drops.iter().filter(|d| d.remove).map(|d| CheckRemoval {
                library: p.category_id.clone(),
                person: p.person_id.clone(),
                image_url: d.image.source.clone(),
                id: d.id.clone(),
                reason: d.why.reason(),
            })
        })
        .collect()
}

impl<'a> CheckJson<'a> {
    fn new(
        args: &CheckArgs,
        plan: &Plan,
        dropped: &plan::Dropped,
        sync: Option<plan::SyncSettings>,
        refusal: Option<&str>,
    ) -> CheckJson<'a> {
        let c = &plan.counts;
        CheckJson {
            manifest: args.manifest.display().to_string(),
            target: args.target.kind().name(),
            rows: c.rows,
            persons: c.persons,
            invalid: c.invalid,
            duplicates: c.duplicates,
            already_registered: c.already_registered,
            over_limit: c.over_limit,
            previously_failed: c.previously_failed,
            relinked: c.relinked,
            previously_invalid: c.previously_invalid,
            to_send: c.to_send,
            to_look_up: c.to_look_up,
            to_reconcile: c.to_reconcile,
            to_settle: dropped
                .persons
                .iter()
                .flat_map(|p| &p.drops)
                .filter(|d| d.unsettled())
                .count() as u64,
            libraries: per_library(plan, dropped)
                .into_iter()
                .map(|(library, adds, removes)| CheckLibrary {
                    library,
                    adds,
                    removes,
                })
                .collect(),
            sync: sync.map(|s| CheckSync {
                scope: match s.scope {
                    plan::SyncScope::Ledger => "ledger",
                    plan::SyncScope::Library => "library",
                },
                removes: dropped.removals() as u64,
                max_delete: s.max_delete,
                over_max_delete: refusal.is_some(),
                refused_because: refusal.map(str::to_string),
                server_not_read: s.scope == plan::SyncScope::Library,
                unsafe_ids: dropped.unsafe_ids.clone(),
                removals: removal_list(dropped),
                replanned: None,
            }),
            probe: None,
            preflight: None,
        }
    }
}

/// (library, images to add, images to remove), the manifest's libraries in order.
fn per_library(plan: &Plan, dropped: &plan::Dropped) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = plan
        .libraries
        .iter()
        .cloned()
        .zip(plan.adds_by_library.iter().copied())
        .map(|(l, adds)| (l, adds, 0))
        .collect();
    for (library, removes) in dropped.removals_by_library() {
        let folded = crate::image::fold_id(&library);
        match out
            .iter_mut()
            .find(|(l, _, _)| crate::image::fold_id(l) == folded)
        {
            Some(entry) => entry.2 += removes,
            None => out.push((library, 0, removes)),
        }
    }
    out
}

/// `check --sync`'s part of the plan.
fn render_sync(
    plan: &Plan,
    dropped: &plan::Dropped,
    sync: plan::SyncSettings,
    refusal: Option<&str>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let removes = dropped.removals();
    let _ = writeln!(
        out,
        "  sync ({} scope): {removes} images to remove, --max-delete {}",
        match sync.scope {
            plan::SyncScope::Ledger => "ledger",
            plan::SyncScope::Library => "library",
        },
        sync.max_delete
    );
    for (library, adds, removes) in per_library(plan, dropped) {
        let _ = writeln!(out, "    library {library}: add {adds}, remove {removes}");
    }
    const SHOWN: usize = 20;
    let list = removal_list(dropped);
    for r in list.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "    to remove: {} / {} {} ({})",
            r.library,
            r.person,
            r.image_url,
            r.id.as_deref().unwrap_or("id read at run time")
        );
    }
    if list.len() > SHOWN {
        let _ = writeln!(
            out,
            "    … and {} more to remove (--json lists them all)",
            list.len() - SHOWN
        );
    }
    for bad in &dropped.unsafe_ids {
        let _ = writeln!(
            out,
            "    not removed: {bad}: not an id that can be sent (empty, padded, a list or ALL)"
        );
    }
    if sync.scope == plan::SyncScope::Library {
        let _ = writeln!(
            out,
            "    and what the server holds in these libraries beyond the ledger and the manifest \
             (run reads the libraries first; check sends nothing, so it cannot count those)"
        );
    }
    if let Some(why) = refusal {
        let _ = writeln!(out, "    run --sync would stop here and exit 8: {why}");
    }
    out
}

/// The plan as `check` prints it; `limit` is the target's images per person (`None`: ICE's none).
pub fn render_plan(manifest: &Path, plan: &Plan, qps: u32, limit: Option<u32>) -> String {
    use crate::say::count;
    use std::fmt::Write as _;
    let c = &plan.counts;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "manifest {}: {}, {}, {}",
        manifest.display(),
        count(c.rows, "row", "rows"),
        count(c.persons, "person", "persons"),
        count(c.libraries, "library", "libraries")
    );
    render_refused_rows(&mut out, plan, limit);
    render_to_send(&mut out, plan);
    let requests = c.to_send + c.to_look_up + c.to_reconcile;
    let estimate = if qps == 0 {
        "unlimited pace".to_string()
    } else {
        format_secs(requests as f64 / (f64::from(qps) * 0.99))
    };
    let _ = writeln!(out, "  estimated time at {qps}/s: {estimate}");
    out
}

/// Rows listed in the plan's text, of each kind, at most.
const SHOWN: usize = 20;

/// The rows no run would send: invalid ones, and those over the per-person limit.
fn render_refused_rows(out: &mut String, plan: &Plan, limit: Option<u32>) {
    use std::fmt::Write as _;
    let c = &plan.counts;
    let _ = writeln!(out, "  invalid rows: {}", c.invalid);
    let invalid = plan
        .rejected
        .iter()
        .filter(|r| r.status == ledger::Status::Invalid);
    for r in invalid.clone().take(SHOWN) {
        let _ = writeln!(out, "    line {}: {}", r.line, r.reason);
    }
    if c.invalid as usize > SHOWN {
        let _ = writeln!(
            out,
            "    … and {} more (run with --rejects FILE to list them all)",
            c.invalid as usize - SHOWN
        );
    }
    if let Some(limit) = limit {
        let _ = writeln!(
            out,
            "  persons over the {limit}-image limit: {} ({} images skipped)",
            c.over_limit_persons, c.over_limit
        );
    }
    let skipped = plan
        .rejected
        .iter()
        .filter(|r| r.status == ledger::Status::Skipped);
    for r in skipped.take(SHOWN) {
        let _ = writeln!(
            out,
            "    line {}: {} / {}: {}",
            r.line, r.category_id, r.person_id, r.image.source
        );
    }
}

/// Duplicates, what is registered or failed already, and what a run would send.
fn render_to_send(out: &mut String, plan: &Plan) {
    use crate::say::count;
    use std::fmt::Write as _;
    let c = &plan.counts;
    let _ = writeln!(out, "  duplicate rows (enrolled once): {}", c.duplicates);
    let _ = writeln!(out, "  already registered: {}", c.already_registered);
    if c.previously_failed > 0 {
        let _ = writeln!(
            out,
            "  failed earlier, not sent again without --retry-failed: {}",
            c.previously_failed
        );
    }
    if c.previously_invalid > 0 {
        let _ = writeln!(
            out,
            "  refused by an earlier run's pre-flight (or invalid before an edit), read again \
             first and refused again unless fixed: {} (`check --preflight` says why)",
            c.previously_invalid
        );
    }
    if c.relinked > 0 {
        let _ = writeln!(
            out,
            "  refused earlier through a link that has since been signed anew, sent again: {}",
            c.relinked
        );
    }
    let _ = writeln!(
        out,
        "  to send: {} ({} to look up first after an unknown outcome, {} the ledger has no \
         record of to read from the server first)",
        count(c.to_send, "image", "images"),
        count(c.to_look_up, "person", "persons"),
        c.to_reconcile
    );
    for (line, first) in plan.duplicate_rows.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "    line {line}: the same image as line {first} (sent once)"
        );
    }
}

fn format_secs(secs: f64) -> String {
    let secs = secs.ceil() as u64;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// What `--probe` found.
#[derive(serde::Serialize, Default)]
struct ProbeReport {
    /// `oss://` objects asked about (those a run would send).
    asked: u64,
    readable: u64,
    not_found: u64,
    access_denied: u64,
    /// Other answers, and requests that got none.
    other: u64,
    /// By line: what OSS would not give the service.
    problems: Vec<ProbeProblem>,
}

#[derive(serde::Serialize)]
struct ProbeProblem {
    line: u64,
    image_url: String,
    problem: String,
}

impl ProbeReport {
    /// Objects missing, refused or not answered: rows a run would not register.
    fn problems(&self) -> u64 {
        self.not_found + self.access_denied + self.other
    }

    fn render(&self) -> String {
        let mut text = format!(
            "probe: {} oss:// objects asked about: {} readable, {} not found, {} access denied, \
             {} other\n",
            self.asked, self.readable, self.not_found, self.access_denied, self.other
        );
        for p in self.problems.iter().take(PROBLEMS_SHOWN) {
            text.push_str(&format!(
                "    line {}: {}: {}\n",
                p.line, p.image_url, p.problem
            ));
        }
        if self.problems.len() > PROBLEMS_SHOWN {
            text.push_str(&format!(
                "    … and {} more (--json lists them all)\n",
                self.problems.len() - PROBLEMS_SHOWN
            ));
        }
        text
    }
}

/// How many objects are asked about at once.
const PROBES_IN_FLIGHT: usize = 16;
/// Problems listed one by one in the text; the rest are counted.
const PROBLEMS_SHOWN: usize = 50;

/// The client `--probe` and `--preflight` read objects with: the credentials a run would use,
/// signing `oss://` objects as a run would.
async fn connect_for_objects(args: &CheckArgs) -> Result<crate::connect::Connected, Exit> {
    let settings = args.connect.settings().map_err(fail)?;
    let target = args.target.kind();
    let connected = match crate::connect::connect(&settings, target).await {
        Ok(connected) => connected,
        Err(e) => {
            crate::say!("face-enroll: {e}");
            return Err(e.exit());
        }
    };
    let links = args.oss.links(&connected.region, None).map_err(fail)?;
    connected.client.set_oss_links(links);
    Ok(connected)
}

/// `--preflight`: reads and checks each image the plan would send.
async fn preflight_images(
    plan: &Plan,
    recorded: &crate::preflight::Remembered,
    client: &crate::api::Client,
    settings: &crate::preflight::Settings,
) -> crate::preflight::Report {
    let items = crate::preflight::sweep::items(&plan.jobs);
    crate::preflight::sweep(client, &items, recorded, settings).await
}

/// `--probe`: HEADs each `oss://` object the plan would send, paced at the run's --qps, with
/// the credentials a run would use, and lists by line what OSS would not give the service.
async fn probe_objects(args: &CheckArgs, plan: &Plan, client: &crate::api::Client) -> ProbeReport {
    use crate::api::ObjectProbe;
    use futures::StreamExt as _;
    let objects: Vec<(u64, &str)> = plan
        .jobs
        .iter()
        .flat_map(|job| &job.images)
        .filter(|image| image.image.source.starts_with("oss://"))
        .map(|image| (image.line, image.image.source.as_str()))
        .collect();
    let qps = args.qps();
    let gap = (qps > 0).then(|| std::time::Duration::from_secs_f64(1.0 / f64::from(qps)));
    let start = crate::clock::instant();
    let mut answers: Vec<(u64, &str, Result<ObjectProbe, crate::api::ApiError>)> =
        futures::stream::iter(objects.iter().enumerate())
            .map(|(i, &(line, address))| async move {
                if let Some(gap) = gap {
                    tokio::time::sleep_until(start + gap * i as u32).await;
                }
                (line, address, client.probe_object(address).await)
            })
            .buffer_unordered(PROBES_IN_FLIGHT)
            .collect()
            .await;
    answers.sort_by_key(|(line, _, _)| *line);
    let mut report = ProbeReport {
        asked: answers.len() as u64,
        ..ProbeReport::default()
    };
    for (line, address, answer) in answers {
        let problem = match answer {
            Ok(ObjectProbe::Found { .. }) => {
                report.readable += 1;
                continue;
            }
            Ok(ObjectProbe::Missing { code }) => {
                report.not_found += 1;
                format!("not found ({code})")
            }
            Ok(ObjectProbe::Denied { code, message }) => {
                report.access_denied += 1;
                let message = if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                };
                let grant = if code == "AccessDenied" {
                    ": the credentials need oss:GetObject on it"
                } else {
                    ""
                };
                format!("access denied ({code}{message}){grant}")
            }
            Ok(ObjectProbe::Other { status, code }) => {
                report.other += 1;
                format!("OSS answered HTTP {status} ({code})")
            }
            Err(error) => {
                report.other += 1;
                format!("not answered: {error}")
            }
        };
        report.problems.push(ProbeProblem {
            line,
            image_url: address.to_string(),
            problem,
        });
    }
    report
}
