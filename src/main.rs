//! The face-enroll binary: parse the flags, set up logging and the runtime, run one command,
//! exit with its code.

use clap::Parser;
use face_enroll::app::execute;
use face_enroll::cli::{Cli, Command, LogFormat};
use face_enroll::exit::Exit;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
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
            face_enroll::say!("face-enroll: cannot start the async runtime: {e}");
            std::process::exit(Exit::Usage.code());
        }
    };
    let exit = runtime.block_on(execute(cli.command));
    // Idle pooled connections and timers need not be waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(exit.code());
}

/// A flag clap refused (or `--help` / `--version`): as clap prints it, or as one JSON line when
/// `--log-format json` is on the command line (the flags could not be parsed, so look for it).
fn usage_error(e: clap::Error) -> ! {
    use std::io::Write;
    let args: Vec<String> = std::env::args().collect();
    let json = args
        .windows(2)
        .any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json");
    let is_error = e.use_stderr();
    if json && is_error {
        let line = serde_json::json!({
            "timestamp": face_enroll::clock::now_rfc3339(),
            "level": "ERROR",
            "fields": { "message": e.render().to_string().trim_end() },
        });
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        std::process::exit(Exit::Usage.code());
    }
    // clap's own printing ignores a closed stream; exit code 2 for errors, 0 for --help.
    let _ = e.print();
    std::process::exit(if is_error { Exit::Usage.code() } else { 0 });
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let quiet = matches!(&cli.command, Command::Run(run) if run.quiet);
    let format = cli.log_format;
    face_enroll::say::set_json(format == LogFormat::Json);
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::new(filter_directives(
        std::env::var("FACE_ENROLL_LOG").ok().as_deref(),
        default,
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| QuietStderr);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder.with_ansi(ansi).with_target(false).init(),
    }
}

/// The filter: `FACE_ENROLL_LOG` (an env_logger-style filter) or the default level, with the
/// HTTP libraries' connection-pool chatter kept at `warn` unless the user names them.
fn filter_directives(given: Option<&str>, default: &str) -> String {
    let given = given
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .unwrap_or(default);
    let mut directives = given.to_string();
    for noisy in ["hyper", "hyper_util", "reqwest", "h2", "rustls"] {
        if !given.contains(noisy) {
            directives.push_str(&format!(",{noisy}=warn"));
        }
    }
    directives
}

/// Stderr for the log: a closed or broken stderr drops the line. tracing-subscriber would
/// otherwise report the failed write with `eprintln!`, which panics on that same stderr.
struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().lock().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
