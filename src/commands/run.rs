//! `face-enroll run`: the import, from validated flags to the summary, the rejects and the
//! metrics file; with `--sandbox`, against an emulator that lives as long as the run.

use std::path::Path;

use crate::cli::RunArgs;
use crate::connect;
use crate::exit::Exit;
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
    let (exit, counted) = run(args).await;
    // A run that ended before counting anything — flags, lock, manifest, credentials (exit 3),
    // an unusable ledger — still says how it ended; `finish_run` wrote the figures of the rest.
    if let Some(path) = metrics
        && !counted
    {
        super::metrics::write_or_warn(&path, &super::metrics::for_run_failure(exit.code()));
    }
    exit
}

/// The exit, and whether `finish_run` wrote the figures (and with them the metrics file).
async fn run(args: RunArgs) -> (Exit, bool) {
    let exit = |exit: Exit| (exit, false);
    let settings = match args.validate() {
        Ok(settings) => settings,
        Err(e) => return exit(fail(e)),
    };
    if let Err(e) = refuse_clobbering_outputs(&args) {
        return exit(fail(e));
    }
    let mut read = super::read_options(args.encoding, &args.columns, &args.sheet, &args.layout);
    read.no_escape = args.no_escape;
    // A mistyped manifest path is the user's input, told as such (exit 2) before credentials
    // are looked for: without them it used to read as a credentials failure (exit 3).
    if let Err(e) = crate::manifest::check_source(&args.manifest) {
        return exit(fail(e));
    }
    let target = args.target.kind();
    let (connected, running_sandbox) = match connect_run(&args, &settings, target).await {
        Ok(both) => both,
        Err(code) => return exit(code),
    };
    let sandbox_url = running_sandbox.as_ref().map(|sb| sb.base_url());
    // The flags were checked; a region of the credentials' own that is no OSS region leaves
    // oss:// rows to fail with a message naming --oss-region.
    if let Ok(links) = args.oss.links(&connected.region, sandbox_url.as_deref()) {
        connected.client.set_oss_links(links);
    }
    let uploads = match prepare_local_files(&args, &read).await {
        Ok(uploads) => uploads.map(std::sync::Arc::new),
        Err(code) => return exit(code),
    };
    let endpoint = connected.endpoint.clone();
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
        preflight: match args.preflight.settings(true) {
            Ok(settings) => settings,
            Err(e) => return exit(fail(e)),
        },
        probe: !args.no_probe,
        converge_reads: !args.sandbox,
        quiet: args.quiet,
        read: read.clone(),
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
        let earlier = result.as_ref().map_or(0, |done| done.summary.already_done);
        tracing::info!("{}", sandbox_note(&held, earlier));
        sb.shutdown().await;
    }
    match result {
        Ok(done) => (finish_run(&args, &read, done, &endpoint), true),
        Err(RunError::Ledger(e)) => exit(super::ledger_failure(&e)),
        Err(RunError::Stopped {
            exit: code,
            message,
        }) => {
            crate::say!("face-enroll: {message}");
            exit(code)
        }
        Err(e) => exit(fail(e)),
    }
}

/// The signed client for the run, and with `--sandbox` the emulator it talks to, which lives
/// as long as the run, in this process. A failure is said here.
async fn connect_run(
    args: &RunArgs,
    settings: &connect::Settings,
    target: crate::backend::TargetKind,
) -> Result<(connect::Connected, Option<Sandbox>), Exit> {
    if !args.sandbox {
        return match connect::connect(settings, target).await {
            Ok(connected) => Ok((connected, None)),
            Err(e) => {
                crate::say!("face-enroll: {e}");
                Err(e.exit())
            }
        };
    }
    let sb = match Sandbox::start(SandboxConfig::realistic()).await {
        Ok(sb) => sb,
        Err(e) => return Err(fail(format!("cannot start the built-in sandbox: {e}"))),
    };
    let url = sb.base_url();
    tracing::info!("using the built-in sandbox at {url} (nothing leaves this machine)");
    let connected = connect::sandbox(settings, target, &url).map(|mut c| {
        c.endpoint = format!("sandbox {url}");
        c
    });
    match connected {
        Ok(connected) => Ok((connected, Some(sb))),
        Err(e) => {
            crate::say!("face-enroll: {e}");
            Err(e.exit())
        }
    }
}

/// The closing line of a `--sandbox` run. The sandbox is new for every run, so what the ledger
/// records from earlier runs is not in it: said, or a second run's "holds 0 faces" reads as a
/// loss.
fn sandbox_note(held: &str, earlier: u64) -> String {
    let mut note = format!("the built-in sandbox (new for every run) now holds {held}");
    if earlier > 0 {
        note.push_str(&format!(
            ", those this run sent; the {earlier} the ledger records from earlier runs were in \
             their own sandboxes and were not sent again"
        ));
    }
    note
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
            crate::say::count(faces as u64, "face", "faces")
        }
        crate::backend::TargetKind::Ice(_) => {
            let samples: usize = state
                .ice
                .libs
                .iter()
                .flat_map(|l| &l.entities)
                .map(|e| e.samples.len())
                .sum();
            crate::say::count(samples as u64, "sample", "samples")
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

fn finish_run(
    args: &RunArgs,
    read: &crate::manifest::ReadOptions,
    done: pipeline::RunResult,
    endpoint: &str,
) -> Exit {
    let exit = done.ending.exit();
    let json = crate::say::is_json();
    if let Ending::ServiceFatal(error) = &done.ending {
        let hint = error.hint().unwrap_or("see the message");
        if json {
            tracing::error!(code = error.code(), error = %error, endpoint, what_to_do = hint, "the service refused the run; fix the problem and run again to resume");
        } else {
            crate::say!("face-enroll: the service at {endpoint} refused the run: {error}");
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
                let mut fields = serde_json::Map::new();
                fields.insert("outcome".into(), s.outcome.clone().into());
                fields.insert("exit_code".into(), s.exit_code.into());
                fields.insert("causes".into(), s.causes().into());
                fields.insert("left".into(), s.left.into());
                crate::say::json_event("WARN", "summary", fields);
            } else {
                crate::say!("{}", s.one_line());
            }
        }
    } else if json {
        // One structured event, so a log shipper reads the figures without parsing prose:
        // every figure of the `--summary` document, nested ones as objects, none as `null`.
        crate::say::json_event("INFO", "summary", summary_fields(s));
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
            &all_rejects(&done.rejected, &args.ledger_path(), &args.manifest, read),
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

/// The summary as the fields of the JSON log's summary event: `stopped_because` is always
/// there (`null` when the run did not stop early).
fn summary_fields(s: &crate::report::Summary) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = match serde_json::to_value(s) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    fields
        .entry("stopped_because")
        .or_insert(serde_json::Value::Null);
    fields
}

/// This run's rejects, and the rows earlier runs saw refused by the service that are still not
/// registered (the ledger's last word on them is `failed`), in manifest line order; each with its
/// person's name, and an earlier refusal with the line and URL the manifest gives it now.
fn all_rejects(
    this_run: &[Rejected],
    ledger_path: &Path,
    manifest: &Path,
    read: &crate::manifest::ReadOptions,
) -> Vec<(Rejected, Option<String>)> {
    use crate::commands::failed::Current;
    use crate::image::person_key;
    let key = |r: &Rejected| r.image.key_in(&r.category_id, &r.person_id);
    let known: std::collections::HashSet<u128> = this_run.iter().map(key).collect();
    let mut earlier: Vec<_> = crate::commands::failed::collect_refused(ledger_path)
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
    let current = Current::read(manifest, read, &images, &persons).unwrap_or_default();
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
            image: r.image,
            status: r.status,
            already_recorded: true,
            reported: true,
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
            &r.image.shown(),
            r.status.as_str(),
            &r.reason,
            name.as_deref().unwrap_or_default(),
        ])?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    crate::report::write_atomically(path, &bytes)
}

/// `--upload-to`: the manifest's local photos are named by their content before it is planned
/// (each row then reads as the object its file will be); the run uploads them as it goes. Local
/// rows without `--upload-to` stop the run (exit 2) before anything is sent.
async fn prepare_local_files(
    args: &RunArgs,
    read: &crate::manifest::ReadOptions,
) -> Result<Option<crate::upload::Prepared>, Exit> {
    let photos = crate::upload::LocalPhotos {
        manifest: &args.manifest,
        to: args.upload_to.as_ref(),
        concurrency: args.upload_concurrency,
        ledger: args.ledger_path(),
        sandbox: args.sandbox,
    };
    photos.name(read).await.map_err(fail)
}
