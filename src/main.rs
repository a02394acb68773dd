//! The face-enroll binary: parse the flags, set up logging and the runtime, run one command,
//! exit with its code.

use clap::Parser;
use face_enroll::app::execute;
use face_enroll::cli::{Cli, Command, LogFormat};
use face_enroll::exit::Exit;

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    // A paced run needs little CPU: one thread saves a cross-thread wake-up per request.
    // Unpaced runs and the sandbox use every core.
    let paced = matches!(&cli.command, Command::Run(run) if run.connect.qps != Some(0));
    let mut builder = if paced {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("face-enroll: cannot start the async runtime: {e}");
            std::process::exit(Exit::Usage.code());
        }
    };
    let exit = runtime.block_on(execute(cli.command));
    // Idle pooled connections and timers need not be waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(exit.code());
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let (format, quiet) = match &cli.command {
        Command::Run(run) => (run.log_format, run.quiet),
        _ => (LogFormat::Text, false),
    };
    let default = if quiet { "warn" } else { "info" };
    let filter =
        EnvFilter::try_from_env("FACE_ENROLL_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder.with_ansi(ansi).with_target(false).init(),
    }
}
