//! `face-enroll run`: the import, from validated flags to the summary, the rejects and the
//! metrics file; with `--sandbox`, against an emulator that lives as long as the run.

use std::path::Path;

use crate::cli::RunArgs;
use crate::connect;
use crate::exit::Exit;
use crate::image::ImageId;
use crate::ledger;
use crate::pipeline::{self, Ending, RunConfig, RunError};
use crate::plan::Rejected;
use crate::sandbox::{Sandbox, SandboxConfig};

use super::fail;

/// The import, and its metrics file even when it ended before counting anything.
pub async fn command(args: RunArgs) -> Exit {
    // Never onto the ledger, its lock or the manifest, even to report a refusal.
    let metrics = args
        .metrics
        .clone()
        .filter(|_| refuse_clobbering_outputs(&args).is_ok());
    let exit = run(args).await;
    // A run that ended before counting anything (flags, lock, manifest) still says so; the
    // other endings wrote their figures in `finish_run`.
    if let Some(path) = metrics
        && matches!(exit, Exit::Usage | Exit::Locked)
    {
        super::metrics::write_or_warn(&path, &super::metrics::for_run_failure(exit.code()));
    }
    exit
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
    crate::manifest::set_reading(
        args.columns.clone(),
        args.sheet.clone(),
        args.layout.clone(),
    );
    crate::manifest::set_no_escape(args.no_escape);
    // A mistyped manifest path is the user's input, told as such (exit 2) before credentials
    // are looked for: without them it used to read as a credentials failure (exit 3).
    if let Err(e) = crate::manifest::check_source(&args.manifest) {
        return fail(e);
    }
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
    let sandbox_url = running_sandbox.as_ref().map(|sb| sb.base_url());
    // The flags were checked; a region of the credentials' own that is no OSS region leaves
    // oss:// rows to fail with a message naming --oss-region.
    if let Ok(links) = args.oss.links(&connected.region, sandbox_url.as_deref()) {
        connected.client.set_oss_links(links);
    }
    let uploads = match upload_local_files(&args, &connected.client).await {
        Ok(uploads) => uploads,
        Err(exit) => return exit,
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
        preflight: match args.preflight.settings() {
            Ok(settings) => settings,
            Err(e) => return fail(e),
        },
        progress: if args.quiet {
            crate::report::ProgressMode::Off
        } else {
            args.progress.into()
        },
        uploads,
    };
    let result = pipeline::run(config, connected.client).await;
    if let Some(sb) = running_sandbox {
        let held = sandbox_holds(&sb.snapshot(), target);
        tracing::info!("the built-in sandbox (new for every run) now holds {held}");
        sb.shutdown().await;
    }
    match result {
        Ok(done) => finish_run(&args, done),
        Err(RunError::Ledger(e)) => super::ledger_failure(&e),
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
        && let Err(e) = write_rejects(
            path,
            &all_rejects(&done.rejected, &args.ledger_path(), &args.manifest),
        )
    {
        crate::say!(
            "face-enroll: cannot write the rejects file {}: {e}",
            path.display()
        );
    }
    if let Some(path) = &args.metrics {
        crate::commands::metrics::write_or_warn(
            path,
            &crate::commands::metrics::for_run(&done.summary),
        );
    }
    exit
}

/// This run's rejects, and the rows earlier runs saw refused by the service that are still not
/// registered (the ledger's last word on them is `failed`), in manifest line order; each with its
/// person's name, and an earlier refusal with the line and URL the manifest gives it now.
fn all_rejects(
    this_run: &[Rejected],
    ledger_path: &Path,
    manifest: &Path,
) -> Vec<(Rejected, Option<String>)> {
    use crate::commands::failed::Current;
    use crate::image::person_key;
    let key = |r: &Rejected| {
        ImageId::new(&r.image_url, r.image_key.as_deref()).key(&r.category_id, &r.person_id)
    };
    let known: std::collections::HashSet<u128> = this_run.iter().map(key).collect();
    let mut earlier: Vec<_> = crate::commands::failed::collect(ledger_path)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.status == ledger::Status::Failed && !r.retryable && !known.contains(&r.key()))
        .collect();
    let images: ledger::KeyMap<()> = earlier.iter().map(|r| (r.key(), ())).collect();
    let persons: ledger::KeyMap<()> = this_run
        .iter()
        .map(|r| (&r.category_id, &r.person_id))
        .chain(earlier.iter().map(|r| (&r.category_id, &r.person_id)))
        .map(|(c, p)| (person_key(c, p), ()))
        .collect();
    // The manifest was read whole by this run; reading it again can fail only if it changed.
    let current = Current::read(manifest, &images, &persons).unwrap_or_default();
    current.apply(&mut earlier);
    let name = |c: &str, p: &str| current.names.get(&person_key(c, p)).cloned();
    let mut all: Vec<(Rejected, Option<String>)> = this_run
        .iter()
        .map(|r| (r.clone(), name(&r.category_id, &r.person_id)))
        .collect();
    for r in earlier {
        let rejected = Rejected {
            line: r.line.unwrap_or(0),
            reason: r.reason(),
            category_id: r.category_id,
            person_id: r.person_id,
            image_url: r.image_url,
            image_key: r.image_key,
            status: r.status,
            already_recorded: true,
        };
        all.push((rejected, r.person_name));
    }
    all.sort_by_key(|(r, _)| r.line);
    all
}

fn write_rejects(path: &Path, rejected: &[(Rejected, Option<String>)]) -> std::io::Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "line",
        "category_id",
        "person_id",
        "image_url",
        "status",
        "reason",
        "person_name",
    ])?;
    for (r, name) in rejected {
        let line = r.line.to_string();
        writer.write_record([
            line.as_str(),
            &r.category_id,
            &r.person_id,
            &crate::image::shown(&r.image_url),
            r.status.as_str(),
            &r.reason,
            name.as_deref().unwrap_or_default(),
        ])?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    crate::report::write_atomically(path, &bytes)
}

/// `--upload-to`: the manifest's local photos go to OSS before it is planned (each row then
/// reads as the object its file became). Local rows without `--upload-to` stop the run (exit 2)
/// before anything is sent.
async fn upload_local_files(
    args: &RunArgs,
    client: &crate::api::Client,
) -> Result<Vec<crate::ledger::record::UploadRecord>, Exit> {
    let manifest = args.manifest.clone();
    let found = tokio::task::spawn_blocking(move || {
        crate::manifest::Reader::open(&manifest).and_then(|r| r.local_files())
    })
    .await;
    let files = match found {
        Ok(Ok(files)) => files,
        // The planner reads the manifest again and reports what is wrong with it.
        Ok(Err(_)) => return Ok(Vec::new()),
        Err(e) => return Err(fail(format!("internal error: {e}"))),
    };
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let Some(to) = &args.upload_to else {
        let (line, path) = &files[0];
        return Err(fail(format!(
            "{}: line {line} names the local file {} ({} local files in all): give --upload-to \
             oss://BUCKET/PREFIX/ to upload them and send them as those objects",
            args.manifest.display(),
            path.display(),
            files.len()
        )));
    };
    let paths = files.into_iter().map(|(_, path)| path).collect();
    // What earlier runs uploaded (the built-in sandbox's OSS is new each run: all of it again).
    let known = if args.sandbox {
        Default::default()
    } else {
        let ledger = args.ledger_path();
        tokio::task::spawn_blocking(move || crate::upload::journaled(&ledger))
            .await
            .unwrap_or_default()
    };
    let (local, uploads, records) =
        crate::upload::upload_all(client, paths, to, args.upload_concurrency, &known).await;
    tracing::info!(
        files = uploads.files,
        uploaded = uploads.stored,
        already_there = uploads.already_there,
        unchanged = uploads.unchanged,
        refused = uploads.refused,
        "local photos uploaded to oss://{}/{}",
        to.bucket,
        to.prefix
    );
    crate::manifest::set_uploaded(local);
    Ok(records)
}
