//! The commands, from validated flags to one typed outcome; `Exit::code` is the only place that
//! turns an outcome into a process exit code.

use std::io::Write;
use std::path::Path;

use crate::cli::{CheckArgs, Command, RunArgs};
use crate::connect;
pub use crate::exit::Exit;

use crate::ledger::{self, LedgerError};
use crate::pipeline::{self, Ending, RunConfig, RunError};
use crate::plan::{self, Plan, Rejected};
use crate::sandbox::{Sandbox, SandboxConfig};

pub async fn execute(command: Command) -> Exit {
    match command {
        Command::Run(args) => {
            // Never onto the ledger, its lock or the manifest, even to report a refusal.
            let metrics = args
                .metrics
                .clone()
                .filter(|_| refuse_clobbering_outputs(&args).is_ok());
            let exit = run(args).await;
            // A run that ended before counting anything (flags, lock, manifest) still says so;
            // the other endings wrote their figures in `finish_run`.
            if let Some(path) = metrics
                && matches!(exit, Exit::Usage | Exit::Locked)
            {
                crate::ops::metrics::write_or_warn(
                    &path,
                    &crate::ops::metrics::for_run_failure(exit.code()),
                );
            }
            exit
        }
        Command::Check(args) => check(args).await,
        Command::Status(args) => match args.config() {
            Ok(config) => crate::ops::status::execute(config).await,
            Err(message) => fail(message),
        },
        Command::Export(args) => match args.config() {
            Ok(config) => crate::ops::export::execute(config).await,
            Err(message) => fail(message),
        },
        Command::Runs(args) => crate::ops::runs::execute(args.config()).await,
        Command::Verify(args) => verify(args).await,
        Command::Rollback(args) => rollback(args).await,
        Command::Completions(args) => completions(args),
        Command::Lib(args) => crate::ice::commands::execute(args).await,
        Command::Sandbox(args) => match crate::cli::sandbox::serve(args).await {
            Ok(()) => Exit::Success,
            Err(e) => {
                crate::say!("face-enroll sandbox: {e:#}");
                Exit::Usage
            }
        },
    }
}

fn fail(message: impl std::fmt::Display) -> Exit {
    crate::say!("face-enroll: {message}");
    Exit::Usage
}

async fn check(args: CheckArgs) -> Exit {
    if let Err(message) = args.target.check() {
        return fail(message);
    }
    crate::manifest::set_default_encoding(args.encoding.into());
    let ledger_path = args.ledger_path();
    let manifest = args.manifest.clone();
    let rules = args.target.kind().rules();
    let reconcile = args.reconcile;
    let sync = args.sync.settings();
    let result = tokio::task::spawn_blocking(move || {
        let replay = ledger::replay(&ledger_path).map_err(|e| e.to_string())?;
        let options = plan::Options {
            retry_failed: false,
            keep_work: false,
            reconcile: reconcile.into(),
            sync: sync.is_some(),
        };
        let plan = pipeline::plan_files_with(&manifest, &replay, options, rules)
            .map_err(|e| e.to_string())?;
        let dropped = plan::drops::collect(
            &ledger_path,
            &replay,
            sync.map(|s| s.scope),
            &plan.libraries,
        )
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((plan, dropped))
    })
    .await;
    let (plan, dropped) = match result {
        Ok(Ok(planned)) => planned,
        Ok(Err(message)) => return fail(message),
        Err(e) => return fail(format!("internal error: {e}")),
    };
    let limit = args.target.kind().rules().max_images_per_person;
    let removals = dropped.removals() as u64;
    let refusal =
        sync.and_then(|s| plan::sync_refusal(removals, s.max_delete, plan.counts.invalid));
    let too_many = refusal.is_some();
    let out = if args.json {
        let json = CheckJson::new(&args, &plan, &dropped, sync, refusal.as_deref());
        serde_json::to_string_pretty(&json).unwrap_or_default() + "\n"
    } else {
        let mut text = render_plan(&args.manifest, &plan, args.qps(), limit);
        if let Some(sync) = sync {
            text.push_str(&render_sync(&plan, &dropped, sync, refusal.as_deref()));
        }
        text
    };
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    if too_many {
        Exit::TooManyRemovals
    } else if plan.counts.invalid + plan.counts.over_limit > 0 {
        Exit::RowsNotRegistered
    } else {
        Exit::Success
    }
}

/// `check --json`: the plan's figures, and with `--sync` its removals, per library.
#[derive(serde::Serialize)]
struct CheckJson {
    manifest: String,
    target: &'static str,
    rows: u64,
    persons: u64,
    invalid: u64,
    duplicates: u64,
    already_registered: u64,
    over_limit: u64,
    previously_failed: u64,
    to_send: u64,
    to_look_up: u64,
    to_reconcile: u64,
    /// Unsettled images the manifest no longer names, read back by the next run.
    to_settle: u64,
    libraries: Vec<CheckLibrary>,
    sync: Option<CheckSync>,
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
                image_url: d.image_url.clone(),
                id: d.id.clone(),
                reason: d.why.reason(),
            })
        })
        .collect()
}

impl CheckJson {
    fn new(
        args: &CheckArgs,
        plan: &Plan,
        dropped: &plan::Dropped,
        sync: Option<plan::SyncSettings>,
        refusal: Option<&str>,
    ) -> CheckJson {
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
            }),
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
        let folded = crate::manifest::fold_id(&library);
        match out
            .iter_mut()
            .find(|(l, _, _)| crate::manifest::fold_id(l) == folded)
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
    use std::fmt::Write as _;
    const SHOWN: usize = 20;
    let c = &plan.counts;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "manifest {}: {} rows, {} persons, {} libraries",
        manifest.display(),
        c.rows,
        c.persons,
        c.libraries
    );
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
            r.line, r.category_id, r.person_id, r.image_url
        );
    }
    let _ = writeln!(out, "  duplicate rows (enrolled once): {}", c.duplicates);
    let _ = writeln!(out, "  already registered: {}", c.already_registered);
    if c.previously_failed > 0 {
        let _ = writeln!(
            out,
            "  failed earlier, not sent again without --retry-failed: {}",
            c.previously_failed
        );
    }
    let _ = writeln!(
        out,
        "  to send: {} images ({} persons to look up first after an unknown outcome, {} the \
         ledger has no record of to read from the server first)",
        c.to_send, c.to_look_up, c.to_reconcile
    );
    for (line, first) in plan.duplicate_rows.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "    line {line}: the same image as line {first} (sent once)"
        );
    }
    let requests = c.to_send + c.to_look_up + c.to_reconcile;
    let estimate = if qps == 0 {
        "unlimited pace".to_string()
    } else {
        format_secs(requests as f64 / (f64::from(qps) * 0.99))
    };
    let _ = writeln!(out, "  estimated time at {qps}/s: {estimate}");
    out
}

fn format_secs(secs: f64) -> String {
    let secs = secs.ceil() as u64;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

async fn run(args: RunArgs) -> Exit {
    let settings = match args.validate() {
        Ok(settings) => settings,
        Err(e) => return fail(e),
    };
    if let Err(e) = refuse_clobbering_outputs(&args) {
        return fail(e);
    }
    crate::manifest::set_default_encoding(args.encoding.into());
    let target = args.target.kind();
    // With --sandbox the emulator lives as long as the run, in this process.
    let mut running_sandbox: Option<Sandbox> = None;
    let connected = if args.sandbox {
        match Sandbox::start(SandboxConfig::realistic()).await {
            Ok(sb) => {
                let url = sb.base_url();
                running_sandbox = Some(sb);
                tracing::info!("using the built-in sandbox at {url} (nothing leaves this machine)");
                connect::sandbox(&settings, target, &url).map(|mut c| {
                    c.endpoint = format!("sandbox {url}");
                    c
                })
            }
            Err(e) => return fail(format!("cannot start the built-in sandbox: {e}")),
        }
    } else {
        connect::connect(&settings, target).await
    };
    let connected = match connected {
        Ok(connected) => connected,
        Err(e) => {
            crate::say!("face-enroll: {e}");
            return e.exit();
        }
    };
    let config = RunConfig {
        target,
        manifest: args.manifest.clone(),
        ledger: args.ledger_path(),
        endpoint: connected.endpoint,
        pace: settings.pace(target, connect::SETTLE_MARGIN),
        concurrency: settings.concurrency(target),
        max_duration: args.max_duration,
        retry_failed: args.retry_failed,
        reconcile: args.reconcile.into(),
        sync: args.sync.settings(),
        strict: args.strict,
        progress: if args.quiet {
            crate::report::ProgressMode::Off
        } else {
            args.progress.into()
        },
    };
    let result = pipeline::run(config, connected.client).await;
    if let Some(sb) = running_sandbox {
        let held = sandbox_holds(&sb.snapshot(), target);
        tracing::info!("the built-in sandbox (new for every run) now holds {held}");
        sb.shutdown().await;
    }
    match result {
        Ok(done) => finish_run(&args, done),
        Err(RunError::Ledger(e @ LedgerError::Locked { .. })) => {
            crate::say!("face-enroll: {e}");
            Exit::Locked
        }
        Err(RunError::Ledger(e @ (LedgerError::Write { .. } | LedgerError::Replaced { .. }))) => {
            eprintln!("face-enroll: {e}");
            Exit::LedgerFailed
        }
        Err(e) => fail(e),
    }
}

/// What the in-process sandbox holds for the run's target: faces (MTS) or samples (ICE).
fn sandbox_holds(
    state: &crate::sandbox::StateSnapshot,
    target: crate::backend::TargetKind,
) -> String {
    match target {
        crate::backend::TargetKind::Mts => {
            let faces: usize = state
                .mts
                .categories
                .iter()
                .flat_map(|c| &c.persons)
                .map(|p| p.faces.len())
                .sum();
            format!("{faces} faces")
        }
        crate::backend::TargetKind::Ice(_) => {
            let samples: usize = state
                .ice
                .libs
                .iter()
                .flat_map(|l| &l.entities)
                .map(|e| e.samples.len())
                .sum();
            format!("{samples} samples")
        }
    }
}

/// `--summary`, `--rejects` and `--metrics` must not name the ledger, its lock or the manifest.
fn refuse_clobbering_outputs(args: &RunArgs) -> Result<(), crate::exit::UsageError> {
    let ledger = args.ledger_path();
    let lock = ledger::lock_path(&ledger);
    let keep = [ledger.as_path(), lock.as_path(), args.manifest.as_path()];
    for (flag, path) in [
        ("--summary", &args.summary),
        ("--rejects", &args.rejects),
        ("--metrics", &args.metrics),
    ] {
        if let Some(path) = path {
            crate::report::refuse_clobbering(flag, path, &keep)?;
        }
    }
    Ok(())
}

fn finish_run(args: &RunArgs, done: pipeline::RunResult) -> Exit {
    let exit = done.ending.exit();
    let json = crate::say::is_json();
    if let Ending::ServiceFatal(error) = &done.ending {
        let hint = error.hint().unwrap_or("see the message");
        if json {
            tracing::error!(code = error.code(), error = %error, what_to_do = hint, "the service refused the run; fix the problem and run again to resume");
        } else {
            crate::say!("face-enroll: the service refused the run: {error}");
            crate::say!("  what to do: {hint}");
            crate::say!(
                "  nothing was lost: the ledger records every image sent; fix the problem and run again to resume"
            );
        }
    }
    let s = &done.summary;
    if args.quiet {
        // Quiet, but never silent about an ending cron must look at.
        if exit != Exit::Success {
            if json {
                tracing::warn!(outcome = %s.outcome, exit_code = s.exit_code, causes = %s.causes().join("; "), left = s.left, "summary");
            } else {
                crate::say!("{}", s.one_line());
            }
        }
    } else if json {
        // One structured event, so a log shipper reads the figures without parsing prose.
        tracing::info!(
            outcome = %s.outcome, exit_code = s.exit_code, rows = s.rows,
            already_done = s.already_done, registered_now = s.registered_now,
            recovered = s.recovered, adopted = s.adopted, failed = s.failed, invalid = s.invalid,
            skipped = s.skipped, duplicates = s.duplicates, left = s.left,
            new_rejections = s.new_rejections, known_rejections = s.known_rejections,
            refused_by_code = ?s.refused_by_code, invalid_by_column = ?s.invalid_by_column,
            retries_ran_out = ?s.retries_ran_out, stopped_because = ?s.stopped_because,
            retries = s.retries, throttled = s.throttled, lookups = s.lookups,
            requests = s.requests, requests_create = s.requests_create,
            requests_read = s.requests_read, requests_remove = s.requests_remove,
            elapsed_s = s.elapsed_s, rate_per_s = s.rate_per_s, ledger = %s.ledger,
            hints = ?s.hints,
            "summary"
        );
    } else {
        crate::say::text(&s.render());
    }
    if let Some(path) = &args.summary {
        let mut json = serde_json::to_vec_pretty(&done.summary).unwrap_or_default();
        json.push(b'\n');
        if let Err(e) = crate::report::write_atomically(path, &json) {
            crate::say!(
                "face-enroll: cannot write the summary {}: {e}",
                path.display()
            );
        }
    }
    if let Some(path) = &args.rejects
        && let Err(e) = write_rejects(path, &all_rejects(&done.rejected, &args.ledger_path()))
    {
        crate::say!(
            "face-enroll: cannot write the rejects file {}: {e}",
            path.display()
        );
    }
    if let Some(path) = &args.metrics {
        crate::ops::metrics::write_or_warn(path, &crate::ops::metrics::for_run(&done.summary));
    }
    exit
}

/// This run's rejects, and the rows earlier runs saw refused by the service that are still not
/// registered (the ledger's last word on them is `failed`), in manifest line order.
fn all_rejects(this_run: &[Rejected], ledger_path: &Path) -> Vec<Rejected> {
    let mut all = this_run.to_vec();
    let known: std::collections::HashSet<u128> = all
        .iter()
        .map(|r| crate::manifest::image_key(&r.category_id, &r.person_id, &r.image_url))
        .collect();
    if let Ok(rows) = crate::ops::failed::collect(ledger_path) {
        let earlier = rows.into_iter().filter(|r| {
            r.status == ledger::Status::Failed
                && !r.retryable
                && !known.contains(&crate::manifest::image_key(
                    &r.category_id,
                    &r.person_id,
                    &r.image_url,
                ))
        });
        for r in earlier {
            all.push(Rejected {
                line: r.line.unwrap_or(0),
                reason: r.reason(),
                category_id: r.category_id,
                person_id: r.person_id,
                image_url: r.image_url,
                status: r.status,
                already_recorded: true,
            });
        }
    }
    all.sort_by_key(|r| r.line);
    all
}

/// The signed client for `verify` and `rollback`, found exactly as `run` finds it.
async fn connect_for(
    flags: &crate::cli::ConnectArgs,
    target: crate::backend::TargetKind,
) -> Result<connect::Connected, Exit> {
    let settings = flags.settings().map_err(fail)?;
    connect::connect(&settings, target).await.map_err(|e| {
        crate::say!("face-enroll: {e}");
        e.exit()
    })
}

/// The target of the import a ledger records (its last run's), if it says.
fn ledger_target(path: &Path) -> Option<crate::backend::TargetKind> {
    let last = ledger::replay(path).ok()?.last_run_start?;
    match last.target? {
        ledger::TargetName::Mts => Some(crate::backend::TargetKind::Mts),
        ledger::TargetName::Ice => {
            let algorithm = last.algorithm.and_then(|a| a.parse().ok());
            Some(crate::backend::TargetKind::Ice(
                algorithm.unwrap_or(crate::api::Algorithm::Face),
            ))
        }
    }
}

async fn verify(args: crate::cli::ops::VerifyArgs) -> Exit {
    use crate::backend::{IceBackend, MtsBackend, TargetKind};
    let flagged = args.target.kind();
    let kind = match ledger_target(&args.ledger_path()) {
        Some(found @ TargetKind::Ice(_)) => found,
        _ => flagged,
    };
    let config = match args.config(kind) {
        Ok(config) => config,
        Err(message) => return fail(message),
    };
    crate::manifest::set_default_encoding(args.encoding.into());
    let connected = match connect_for(&args.connect, kind).await {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    match kind {
        TargetKind::Mts => {
            let target = MtsBackend::new(connected.client);
            crate::ops::verify::execute(config, target, connected.endpoint).await
        }
        TargetKind::Ice(algorithm) => {
            let target = IceBackend::new(connected.client, algorithm);
            crate::ops::verify::execute(config, target, connected.endpoint).await
        }
    }
}

async fn rollback(args: crate::cli::ops::RollbackArgs) -> Exit {
    use crate::backend::{IceBackend, MtsBackend, TargetKind};
    use crate::ops::rollback::execute;
    let kind = ledger_target(&args.ledger).unwrap_or(TargetKind::Mts);
    let config = match args.config(kind) {
        Ok(config) => config,
        Err(message) => return fail(message),
    };
    let name = kind.ledger_name();
    let flags = &args.connect;
    match kind {
        TargetKind::Mts => {
            execute(config, name, async || {
                let c = connect_for(flags, kind).await?;
                Ok((MtsBackend::new(c.client), c.endpoint))
            })
            .await
        }
        TargetKind::Ice(algorithm) => {
            execute(config, name, async || {
                let c = connect_for(flags, kind).await?;
                Ok((IceBackend::new(c.client, algorithm), c.endpoint))
            })
            .await
        }
    }
}

fn completions(args: crate::cli::ops::CompletionsArgs) -> Exit {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "face-enroll", &mut script);
    if args.shell == clap_complete::Shell::Bash {
        command.build();
        script = fix_bash(&String::from_utf8_lossy(&script), &command).into_bytes();
    }
    let _ = std::io::stdout().lock().write_all(&script);
    Exit::Success
}

/// Two faults of clap_complete's bash script: for a name with a hyphen its case labels
/// (`face__subcmd__enroll__subcmd__check`) differ from the names its dispatch loop builds
/// (`face__enroll__subcmd__check`), so no subcommand's flags were ever completed; and it offers
/// hidden flags (test switches). Both are mended here.
fn fix_bash(script: &str, command: &clap::Command) -> String {
    let script = script.replace("face__subcmd__enroll", "face__enroll");
    let mut hidden = std::collections::HashMap::new();
    hidden_flags(command, "face__enroll".to_string(), &mut hidden);
    let mut block = String::new();
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_suffix(')')
            && hidden.contains_key(name)
        {
            block = name.to_string();
        }
        match (trimmed.strip_prefix("opts=\""), hidden.get(&block)) {
            (Some(rest), Some(flags)) if !flags.is_empty() => {
                let indent = &line[..line.len() - line.trim_start().len()];
                let kept: Vec<&str> = rest
                    .trim_end_matches('"')
                    .split(' ')
                    .filter(|word| !flags.iter().any(|f| f == word))
                    .collect();
                out.push_str(&format!("{indent}opts=\"{}\"", kept.join(" ")));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn hidden_flags(
    command: &clap::Command,
    block: String,
    out: &mut std::collections::HashMap<String, Vec<String>>,
) {
    let flags = command
        .get_arguments()
        .filter(|a| a.is_hide_set())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    for sub in command.get_subcommands() {
        let name = sub.get_name().replace('-', "_");
        hidden_flags(sub, format!("{block}__subcmd__{name}"), out);
    }
    out.insert(block, flags);
}

fn write_rejects(path: &Path, rejected: &[Rejected]) -> std::io::Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "line",
        "category_id",
        "person_id",
        "image_url",
        "status",
        "reason",
    ])?;
    for r in rejected {
        let line = r.line.to_string();
        writer.write_record([
            line.as_str(),
            &r.category_id,
            &r.person_id,
            &r.image_url,
            r.status.as_str(),
            &r.reason,
        ])?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    crate::report::write_atomically(path, &bytes)
}
