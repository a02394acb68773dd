//! Dispatch: each command from its validated flags to one typed outcome, in `commands/`;
//! `Exit::code` is the only place that turns an outcome into a process exit code.

use crate::cli::Command;
use crate::commands::{self, fail};
pub use crate::exit::Exit;

pub async fn execute(command: Command) -> Exit {
    match command {
        Command::Run(args) => commands::run::command(args).await,
        Command::Check(args) => commands::check::command(args).await,
        Command::Status(args) => match args.config() {
            Ok(config) => commands::status::execute(config).await,
            Err(message) => fail(message),
        },
        Command::Export(args) => match args.config() {
            Ok(config) => commands::export::execute(config).await,
            Err(message) => fail(message),
        },
        Command::Report(args) => match args.config() {
            Ok(config) => commands::report::execute(config).await,
            Err(message) => fail(message),
        },
        Command::Runs(args) => commands::runs::execute(args.config()).await,
        Command::Verify(args) => commands::verify::command(args).await,
        Command::Rollback(args) => commands::rollback::command(args).await,
        Command::Scan(args) => commands::scan::command(args),
        Command::Completions(args) => commands::completions::command(args),
        Command::Man(args) => commands::man::command(args),
        Command::Lib(args) => commands::library::execute(args).await,
        Command::Sandbox(args) => commands::sandbox::command(args).await,
    }
}
