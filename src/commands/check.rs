//! `face-enroll check`: reads the manifest and the ledger, sends nothing, and says what a run
//! would do (and, with `--sync`, what it would remove).

use std::path::Path;

use crate::cli::CheckArgs;
use crate::exit::Exit;
use crate::ledger;
use crate::plan::{self, Plan};

use super::fail;

pub async fn command(args: CheckArgs) -> Exit {
    if let Err(message) = args.target.check() {
        return fail(message);
    }
    crate::manifest::set_default_encoding(args.encoding.into());
    let ledger_path = args.ledger_path();
    let manifest = args.manifest.clone();
    let kind = args.target.kind();
    let reconcile = args.reconcile;
    let sync = args.sync.settings();
    // Planned exactly as `run` plans, its refusals included (a ledger of another target).
    let result = tokio::task::spawn_blocking(move || {
        let replay = ledger::replay(&ledger_path).map_err(|e| e.to_string())?;
        let run = plan::run::RunPlan {
            manifest: &manifest,
            ledger: &ledger_path,
            target: kind.ledger_name(),
            algorithm: kind.algorithm().map(crate::api::Algorithm::as_str),
            options: plan::Options {
                retry_failed: false,
                keep_work: false,
                reconcile: reconcile.into(),
                sync: sync.is_some(),
            },
            rules: kind.rules(),
            sync: sync.map(|s| s.scope),
        };
        let planned =
            plan::run::plan_run(&run, &replay, &Default::default()).map_err(|e| e.to_string())?;
        // A refused sync makes `run` plan again without removals (exit 8): what it would then
        // send, since the image limit no longer counts the slots the removals would free.
        let refused = sync.is_some_and(|s| {
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
            let again = plan::run::plan_run(&again, &replay, &Default::default())
                .map_err(|e| e.to_string())?;
            Some(again.plan.counts)
        } else {
            None
        };
        Ok::<_, String>((planned.plan, planned.dropped, replanned))
    })
    .await;
    let (plan, dropped, replanned) = match result {
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
        let mut json = CheckJson::new(&args, &plan, &dropped, sync, refusal.as_deref());
        if let (Some(s), Some(c)) = (json.sync.as_mut(), &replanned) {
            s.replanned = Some(Replanned {
                to_send: c.to_send,
                over_limit: c.over_limit,
            });
        }
        serde_json::to_string_pretty(&json).unwrap_or_default() + "\n"
    } else {
        let mut text = render_plan(&args.manifest, &plan, args.qps(), limit);
        if let Some(sync) = sync {
            text.push_str(&render_sync(&plan, &dropped, sync, refusal.as_deref()));
            if let Some(c) = &replanned {
                text.push_str(&format!(
                    "    it would then plan again without removals and send {} images ({} over \
                     the per-person limit: the slots the removals would free stay taken)\n",
                    c.to_send, c.over_limit
                ));
            }
        }
        text
    };
    super::print_out(&out);
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
                replanned: None,
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
