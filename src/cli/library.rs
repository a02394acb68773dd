//! Flags of `face-enroll lib`: ICE custom recognition libraries, created, listed and deleted by
//! hand. Every subcommand takes the same connection flags as `run`.

use clap::{Args, Subcommand};

use crate::api::Algorithm;

#[derive(Args, Debug)]
pub struct LibArgs {
    #[command(subcommand)]
    pub command: LibCommand,
}

#[derive(Subcommand, Debug)]
pub enum LibCommand {
    /// Create a library; prints its LibId (the server chooses it).
    Create(CreateArgs),
    /// List every library of an algorithm (all pages).
    List(ListArgs),
    /// Delete a library, and with it every entity and sample in it.
    Delete(DeleteArgs),
    /// List the entities of a library (all pages).
    Entities(EntitiesArgs),
    /// List the samples of a library, or of one entity (all pages).
    Samples(SamplesArgs),
}

/// Where and as whom: the same flags as `run`, and the output format.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    #[command(flatten)]
    pub connect: super::ConnectArgs,
    /// Print JSON on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// landmark, object, logo, face or label.
    #[arg(long, value_parser = parse_algorithm)]
    pub algorithm: Algorithm,
    /// The library's name: 1 to 64 bytes of UTF-8.
    #[arg(long)]
    pub name: String,
    /// What the library is for: at most 128 bytes of UTF-8.
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// landmark, object, logo, face or label.
    #[arg(long, value_parser = parse_algorithm)]
    pub algorithm: Algorithm,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// landmark, object, logo, face or label.
    #[arg(long, value_parser = parse_algorithm)]
    pub algorithm: Algorithm,
    /// The library to delete.
    #[arg(long)]
    pub lib_id: String,
    /// Confirm: the library's entities and samples are deleted with it, for good.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct EntitiesArgs {
    /// landmark, object, logo, face or label.
    #[arg(long, value_parser = parse_algorithm)]
    pub algorithm: Algorithm,
    #[arg(long)]
    pub lib_id: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct SamplesArgs {
    /// landmark, object, logo, face or label.
    #[arg(long, value_parser = parse_algorithm)]
    pub algorithm: Algorithm,
    #[arg(long)]
    pub lib_id: String,
    /// Only this entity's samples.
    #[arg(long, conflicts_with = "entity_name")]
    pub entity_id: Option<String>,
    /// Only the samples of entities with this name.
    #[arg(long)]
    pub entity_name: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

pub(crate) fn parse_algorithm(text: &str) -> Result<Algorithm, crate::api::UnknownAlgorithm> {
    text.parse::<Algorithm>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<LibCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("face-enroll").chain(args.iter().copied()))?;
        match cli.command {
            Command::Lib(lib) => Ok(lib.command),
            other => panic!("not a lib command: {other:?}"),
        }
    }

    #[test]
    fn create_takes_an_algorithm_in_any_case_and_a_name() {
        let LibCommand::Create(create) =
            parse(&["lib", "create", "--algorithm", "FACE", "--name", "staff"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(create.algorithm, Algorithm::Face);
        assert_eq!(create.connection.connect.timeout, 10);
    }

    #[test]
    fn an_unknown_algorithm_is_a_usage_error_naming_the_five() {
        let err = parse(&["lib", "list", "--algorithm", "faces"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("landmark, object, logo, face, label")
        );
    }

    #[test]
    fn samples_take_an_entity_id_or_a_name_but_not_both() {
        let both = [
            "lib",
            "samples",
            "--algorithm",
            "face",
            "--lib-id",
            "L",
            "--entity-id",
            "E",
            "--entity-name",
            "n",
        ];
        assert!(parse(&both).is_err());
        assert!(parse(&both[..8]).is_ok());
    }
}
