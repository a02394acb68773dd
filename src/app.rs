//! The commands, from validated flags to one typed outcome; `Exit::code` is the only place that
//! turns an outcome into a process exit code.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::api::{Client, ClientConfig, Endpoints};
use crate::cli::{CheckArgs, Command, RunArgs};
use crate::credentials::{self, Credentials, CredentialsError, Provider, Secret};
use crate::ledger::{self, LedgerError};
use crate::pipeline::{self, Ending, RunConfig, RunError};
use crate::plan::{self, Plan, Rejected};
use crate::sandbox::{self, Sandbox, SandboxConfig};

/// Every way a command can end, each with its documented exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Success,
    RowsNotRegistered,
    Usage,
    ServiceFatal,
    Locked,
    StoppedEarly,
    Interrupted,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::RowsNotRegistered => 1,
            Exit::Usage => 2,
            Exit::ServiceFatal => 3,
            Exit::Locked => 4,
            Exit::StoppedEarly => 5,
            Exit::Interrupted => 130,
        }
    }
}

impl From<&Ending> for Exit {
    fn from(ending: &Ending) -> Exit {
        match ending {
            Ending::Complete => Exit::Success,
            Ending::SomeRowsNotRegistered => Exit::RowsNotRegistered,
            Ending::ServiceFatal(_) => Exit::ServiceFatal,
            Ending::StoppedEarly => Exit::StoppedEarly,
            Ending::Interrupted => Exit::Interrupted,
        }
    }
}

pub async fn execute(command: Command) -> Exit {
    match command {
        Command::Run(args) => {
            let metrics = args.metrics.clone();
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
        Command::Export(args) => crate::ops::export::execute(args.config()).await,
        Command::Verify(args) => verify(args).await,
        Command::Rollback(args) => rollback(args).await,
        Command::Completions(args) => completions(args),
        Command::Lib(args) => crate::ice::commands::execute(args).await,
        Command::Sandbox(args) => match crate::cli::sandbox::serve(args).await {
            Ok(()) => Exit::Success,
            Err(e) => {
                eprintln!("face-enroll sandbox: {e:#}");
                Exit::Usage
            }
        },
    }
}

fn fail(message: impl std::fmt::Display) -> Exit {
    eprintln!("face-enroll: {message}");
    Exit::Usage
}

async fn check(args: CheckArgs) -> Exit {
    let ledger_path = args.ledger_path();
    let manifest = args.manifest.clone();
    let rules = args.rules();
    let result = tokio::task::spawn_blocking(move || {
        let replay = ledger::replay(&ledger_path).map_err(|e| e.to_string())?;
        let options = plan::Options {
            retry_failed: false,
            keep_work: false,
        };
        pipeline::plan_files_with(&manifest, &replay, options, rules).map_err(|e| e.to_string())
    })
    .await;
    let plan = match result {
        Ok(Ok(plan)) => plan,
        Ok(Err(message)) => return fail(message),
        Err(e) => return fail(format!("internal error: {e}")),
    };
    let text = render_plan(&args.manifest, &plan, args.qps());
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    if plan.counts.invalid + plan.counts.over_limit > 0 {
        Exit::RowsNotRegistered
    } else {
        Exit::Success
    }
}

/// The plan as `check` prints it.
pub fn render_plan(manifest: &Path, plan: &Plan, qps: u32) -> String {
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
    let _ = writeln!(
        out,
        "  persons over the {}-image limit: {} ({} images skipped)",
        plan::MAX_FACES_PER_PERSON,
        c.over_limit_persons,
        c.over_limit
    );
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
        "  to send: {} images ({} persons to look up first after an unknown outcome)",
        c.to_send, c.to_look_up
    );
    let requests = c.to_send + c.to_look_up;
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
    if let Err(message) = args.validate() {
        return fail(message);
    }
    // With --sandbox the emulator lives as long as the run, in this process.
    let mut running_sandbox: Option<Sandbox> = None;
    let (endpoints, credentials, endpoint_label) = if args.sandbox {
        match Sandbox::start(SandboxConfig::realistic()).await {
            Ok(sb) => {
                let url = sb.base_url();
                running_sandbox = Some(sb);
                let endpoints = Endpoints::single(&url).expect("the sandbox URL is valid");
                tracing::info!("using the built-in sandbox at {url} (nothing leaves this machine)");
                (
                    endpoints,
                    sandbox_credentials().into(),
                    format!("sandbox {url}"),
                )
            }
            Err(e) => return fail(format!("cannot start the built-in sandbox: {e}")),
        }
    } else {
        match resolve_service(&args).await {
            Ok(found) => found,
            Err(e) => return e.report("face-enroll"),
        }
    };
    let client = match Client::new(ClientConfig {
        endpoints,
        credentials,
        signature: args.signature,
        timeout: Duration::from_secs(args.timeout),
        max_idle_per_host: args.concurrency(),
    }) {
        Ok(client) => client,
        Err(e) => return fail(e),
    };
    let config = RunConfig {
        target: args.target(),
        manifest: args.manifest.clone(),
        ledger: args.ledger_path(),
        endpoint: endpoint_label,
        qps: args.qps,
        concurrency: args.concurrency(),
        max_attempts: args.max_attempts,
        max_duration: args.max_duration,
        retry_failed: args.retry_failed,
        progress: if args.quiet {
            crate::report::ProgressMode::Off
        } else {
            args.progress.into()
        },
        seed: args.seed,
    };
    let result = pipeline::run(config, client).await;
    if let Some(sb) = running_sandbox {
        let faces: usize = sb
            .snapshot()
            .mts
            .categories
            .iter()
            .flat_map(|c| &c.persons)
            .map(|p| p.faces.len())
            .sum();
        tracing::info!("the built-in sandbox (new for every run) now holds {faces} faces");
        sb.shutdown().await;
    }
    match result {
        Ok(done) => finish_run(&args, done),
        Err(RunError::Ledger(e @ LedgerError::Locked { .. })) => {
            eprintln!("face-enroll: {e}");
            Exit::Locked
        }
        Err(e) => fail(e),
    }
}

fn finish_run(args: &RunArgs, done: pipeline::RunResult) -> Exit {
    let exit = Exit::from(&done.ending);
    let json = args.log_format == crate::cli::LogFormat::Json;
    if let Ending::ServiceFatal(error) = &done.ending {
        let hint = error.hint().unwrap_or("see the message");
        if json {
            tracing::error!(code = error.code(), error = %error, what_to_do = hint, "the service refused the run; fix the problem and run again to resume");
        } else {
            eprintln!("face-enroll: the service refused the run: {error}");
            eprintln!("  what to do: {hint}");
            eprintln!(
                "  nothing was lost: the ledger records every image sent; fix the problem and run again to resume"
            );
        }
    }
    if !args.quiet {
        if json {
            // One structured event, so a log shipper reads the figures without parsing prose.
            let s = &done.summary;
            tracing::info!(
                outcome = %s.outcome, exit_code = s.exit_code, rows = s.rows,
                already_done = s.already_done, registered_now = s.registered_now,
                recovered = s.recovered, failed = s.failed, invalid = s.invalid,
                skipped = s.skipped, duplicates = s.duplicates, left = s.left,
                retries = s.retries, throttled = s.throttled, lookups = s.lookups,
                elapsed_s = s.elapsed_s, rate_per_s = s.rate_per_s, ledger = %s.ledger,
                "summary"
            );
        } else {
            eprintln!("{}", done.summary.render());
        }
    }
    if let Some(path) = &args.summary {
        let json = serde_json::to_vec_pretty(&done.summary).unwrap_or_default();
        if let Err(e) = crate::report::write_atomically(path, &json) {
            eprintln!(
                "face-enroll: cannot write the summary {}: {e}",
                path.display()
            );
        }
    }
    if let Some(path) = &args.rejects
        && let Err(e) = write_rejects(path, &done.rejected)
    {
        eprintln!(
            "face-enroll: cannot write the rejects file {}: {e}",
            path.display()
        );
    }
    if let Some(path) = &args.metrics {
        crate::ops::metrics::write_or_warn(path, &crate::ops::metrics::for_run(&done.summary));
    }
    exit
}

/// The signed MTS client for `verify` and `rollback`: credentials and endpoint found exactly as
/// `run` finds them (`resolve_connection`). Returns the client and the endpoint it talks to.
async fn connect(flags: &crate::cli::ops::ConnectArgs) -> Result<(Client, String), ConnectError> {
    let (endpoints, credentials, _region) = resolve_connection(
        flags.profile.as_deref(),
        flags.region.as_deref(),
        flags.endpoint.as_deref(),
    )
    .await?;
    let label = endpoints.mts.clone();
    let client = Client::new(ClientConfig {
        endpoints,
        credentials,
        signature: flags.signature,
        timeout: Duration::from_secs(flags.timeout),
        max_idle_per_host: flags.concurrency(),
    })
    .map_err(|e| ConnectError::usage(e.to_string()))?;
    Ok((client, label))
}

async fn verify(args: crate::cli::ops::VerifyArgs) -> Exit {
    let config = match args.config() {
        Ok(config) => config,
        Err(message) => return fail(message),
    };
    let ice =
        args.target == crate::cli::TargetArg::Ice || crate::ops::ice::is_ice_ledger(&config.ledger);
    match connect(&args.connect).await {
        Ok((client, _)) if ice => crate::ops::ice::verify(config, client).await,
        Ok((client, endpoint)) => crate::ops::verify::execute(config, client, endpoint).await,
        Err(e) => e.report("face-enroll"),
    }
}

async fn rollback(args: crate::cli::ops::RollbackArgs) -> Exit {
    let config = match args.config() {
        Ok(config) => config,
        Err(message) => return fail(message),
    };
    if crate::ops::ice::is_ice_ledger(&config.ledger) {
        // ICE's plan is made against the server's listings, so even the dry run connects.
        return match connect(&args.connect).await {
            Ok((client, _)) => crate::ops::ice::rollback(config, client).await,
            Err(e) => e.report("face-enroll"),
        };
    }
    // Printing the plan needs no credentials; only --yes talks to the service.
    let service = if config.yes {
        match connect(&args.connect).await {
            Ok(found) => Some(found),
            Err(e) => return e.report("face-enroll"),
        }
    } else {
        None
    };
    crate::ops::rollback::execute(config, service).await
}

fn completions(args: crate::cli::ops::CompletionsArgs) -> Exit {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "face-enroll",
        &mut std::io::stdout(),
    );
    Exit::Success
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

fn sandbox_credentials() -> Credentials {
    Credentials {
        access_key_id: sandbox::DEFAULT_ACCESS_KEY_ID.to_string(),
        access_key_secret: Secret::new(sandbox::DEFAULT_ACCESS_KEY_SECRET),
        security_token: None,
    }
}

async fn resolve_service(args: &RunArgs) -> Result<(Endpoints, Provider, String), ConnectError> {
    let (endpoints, credentials, region) = resolve_connection(
        args.profile.as_deref(),
        args.region.as_deref(),
        args.endpoint.as_deref(),
    )
    .await?;
    let label = match args.target() {
        crate::pipeline::Target::Mts => endpoints.mts.clone(),
        crate::pipeline::Target::Ice(_) => {
            if args.endpoint.is_none() {
                crate::ice::check_region(&region).map_err(ConnectError::usage)?;
            }
            endpoints.ice.clone()
        }
    };
    Ok((endpoints, credentials, label))
}

/// Why `resolve_connection` failed: credentials that do not work exit 3, bad flags exit 2.
#[derive(Debug)]
pub(crate) struct ConnectError {
    exit: Exit,
    message: String,
}

impl ConnectError {
    pub(crate) fn usage(message: impl std::fmt::Display) -> ConnectError {
        ConnectError {
            exit: Exit::Usage,
            message: message.to_string(),
        }
    }

    /// Prints the message after `who` and gives the exit.
    pub(crate) fn report(self, who: &str) -> Exit {
        eprintln!("{who}: {}", self.message);
        self.exit
    }
}

impl From<CredentialsError> for ConnectError {
    fn from(error: CredentialsError) -> ConnectError {
        let exit = if error.is_usage() {
            Exit::Usage
        } else {
            Exit::ServiceFatal
        };
        ConnectError {
            exit,
            message: error.to_string(),
        }
    }
}

/// Credentials (the provider chain of `credentials::resolve`, first credentials fetched), the
/// region, and the endpoints: `endpoint` when given, else the region's. Shared by every command
/// that talks to the service.
pub(crate) async fn resolve_connection(
    profile: Option<&str>,
    region: Option<&str>,
    endpoint: Option<&str>,
) -> Result<(Endpoints, Provider, String), ConnectError> {
    let resolved = credentials::resolve(profile, region, &credentials::process_env).await?;
    tracing::info!(source = %resolved.source, region = %resolved.region, "credentials found");
    let endpoints = match endpoint {
        Some(url) => Endpoints::single(url).map_err(ConnectError::usage)?,
        None => Endpoints::for_region(&resolved.region),
    };
    Ok((endpoints, resolved.credentials, resolved.region))
}
