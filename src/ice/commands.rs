//! `face-enroll lib …`: ICE custom recognition libraries by hand. Everything is checked before
//! the first request; listings follow every page; `--json` prints what scripts need.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use super::session::Session;
use super::{DEFAULT_QPS, check_lib_fields, check_region};
use crate::api::{Algorithm, ApiError, Client, ClientConfig, Entity, ErrorClass, Lib, Sample};
use crate::app::Exit;
use crate::cli::Limits;
use crate::cli::lib::{
    Connection, CreateArgs, DeleteArgs, EntitiesArgs, LibArgs, LibCommand, ListArgs, SamplesArgs,
};

/// Attempts per request for the `lib` commands.
const MAX_ATTEMPTS: u32 = 8;
/// Look-ups after unknown outcomes of one `lib create` before giving up.
const MAX_LOOKUPS: u32 = 4;

/// `Err` carries the exit; its message is already on stderr.
type Outcome = Result<(), Exit>;

pub async fn execute(args: LibArgs) -> Exit {
    let outcome = match args.command {
        LibCommand::Create(args) => create(args).await,
        LibCommand::List(args) => list(args).await,
        LibCommand::Delete(args) => delete(args).await,
        LibCommand::Entities(args) => entities(args).await,
        LibCommand::Samples(args) => samples(args).await,
    };
    outcome.err().unwrap_or(Exit::Success)
}

fn usage(message: impl std::fmt::Display) -> Exit {
    eprintln!("face-enroll lib: {message}");
    Exit::Usage
}

/// A service error: run-fatal (credentials, signature, clock) exits 3, a refused request 2,
/// retries running out 5.
fn refused(error: ApiError) -> Exit {
    eprintln!("face-enroll lib: {error}");
    if let Some(hint) = error.hint() {
        eprintln!("  what to do: {hint}");
    }
    match error.class() {
        ErrorClass::RunFatal => Exit::ServiceFatal,
        ErrorClass::RowRejected => Exit::Usage,
        _ => Exit::StoppedEarly,
    }
}

/// Validates the connection flags and builds a session; only credentials are fetched here.
async fn connect(connection: &Connection, algorithm: Algorithm) -> Result<Session, Exit> {
    if !(1..=Limits::MAX_TIMEOUT_S).contains(&connection.timeout) {
        return Err(usage(format!(
            "--timeout {}: between 1 and {} seconds",
            connection.timeout,
            Limits::MAX_TIMEOUT_S
        )));
    }
    let (endpoints, credentials, region) = crate::app::resolve_connection(
        connection.profile.as_deref(),
        connection.region.as_deref(),
        connection.endpoint.as_deref(),
    )
    .await
    .map_err(|e| e.report("face-enroll lib"))?;
    if connection.endpoint.is_none() {
        check_region(&region).map_err(usage)?;
    }
    let client = Client::new(ClientConfig {
        endpoints,
        credentials,
        signature: connection.signature,
        timeout: Duration::from_secs(connection.timeout),
        max_idle_per_host: 4,
    })
    .map_err(usage)?;
    Ok(Session::new(client, algorithm, DEFAULT_QPS, MAX_ATTEMPTS))
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    print(&format!("{text}\n"));
}

/// `lib create`: not idempotent, so an unknown outcome is settled by listing before resending.
async fn create(args: CreateArgs) -> Outcome {
    check_lib_fields(&args.name, args.description.as_deref()).map_err(usage)?;
    let session = connect(&args.connection, args.algorithm).await?;
    let before = session.libs().await.map_err(refused)?;
    let same_name: Vec<&str> = before
        .iter()
        .filter(|l| l.lib_name.as_deref() == Some(args.name.as_str()))
        .map(|l| l.lib_id.as_str())
        .collect();
    if !same_name.is_empty() {
        eprintln!(
            "face-enroll lib: note: a library named \"{}\" already exists ({}); creating another",
            args.name,
            same_name.join(", ")
        );
    }
    let (lib_id, request_id) = create_once(&session, &args, &same_name)
        .await
        .map_err(refused)?;
    if args.connection.json {
        print_json(&json!({ "LibId": lib_id, "RequestId": request_id }));
    } else {
        print(&format!("{lib_id}\n"));
    }
    Ok(())
}

/// Creates the library once: after an answer that never arrived, a library with the name that
/// was not there before is the one this call made.
async fn create_once(
    session: &Session,
    args: &CreateArgs,
    before: &[&str],
) -> Result<(String, Option<String>), ApiError> {
    let (client, algorithm, name) = (&session.client, args.algorithm, args.name.as_str());
    let description = args.description.as_deref();
    let mut last = None;
    for _ in 0..MAX_LOOKUPS {
        let attempt = session
            .send(|| client.create_recognition_lib(algorithm, name, description))
            .await;
        match attempt {
            Ok(created) => return Ok((created.lib_id, created.request_id)),
            Err(error) if error.class() != ErrorClass::OutcomeUnknown => return Err(error),
            Err(error) => last = Some(error),
        }
        let now = session.libs().await?;
        let made = now
            .into_iter()
            .find(|l| l.lib_name.as_deref() == Some(name) && !before.contains(&l.lib_id.as_str()));
        if let Some(lib) = made {
            return Ok((lib.lib_id, None));
        }
    }
    Err(last.expect("at least one attempt was made"))
}

async fn list(args: ListArgs) -> Outcome {
    let session = connect(&args.connection, args.algorithm).await?;
    let libs = session.libs().await.map_err(refused)?;
    show_libs(&args.connection, &libs);
    Ok(())
}

async fn delete(args: DeleteArgs) -> Outcome {
    if !args.yes {
        return Err(usage(format!(
            "deleting library {} also deletes every entity and sample in it, for good; nothing \
             was sent. Run again with --yes to confirm (`lib entities` shows what it holds).",
            args.lib_id
        )));
    }
    let session = connect(&args.connection, args.algorithm).await?;
    let (client, algorithm, lib_id) = (&session.client, args.algorithm, args.lib_id.as_str());
    session
        .call(|| client.delete_recognition_lib(algorithm, lib_id))
        .await
        .map_err(refused)?;
    if args.connection.json {
        print_json(&json!({ "LibId": lib_id, "Deleted": true }));
    } else {
        eprintln!("face-enroll lib: deleted library {lib_id}, its entities and their samples");
    }
    Ok(())
}

async fn entities(args: EntitiesArgs) -> Outcome {
    let session = connect(&args.connection, args.algorithm).await?;
    let found = session.entities(&args.lib_id).await.map_err(refused)?;
    show_entities(&args.connection, &found);
    Ok(())
}

async fn samples(args: SamplesArgs) -> Outcome {
    let session = connect(&args.connection, args.algorithm).await?;
    let entity_id = args.entity_id.as_deref().unwrap_or("ANY");
    let found = session
        .samples(&args.lib_id, entity_id, args.entity_name.as_deref())
        .await
        .map_err(refused)?;
    show_samples(&args.connection, &found);
    Ok(())
}

/// Tab-separated lines under a header, or a JSON array with the service's field names.
fn show(connection: &Connection, header: &str, rows: Vec<[(&str, Option<&str>); 3]>) {
    if connection.json {
        let items = rows
            .iter()
            .map(|row| Value::Object(row.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()))
            .collect();
        return print_json(&Value::Array(items));
    }
    let mut text = format!("{header}\n");
    for row in rows {
        let cells: Vec<&str> = row.iter().map(|(_, v)| v.unwrap_or_default()).collect();
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    print(&text);
}

fn show_libs(connection: &Connection, libs: &[Lib]) {
    let rows = libs
        .iter()
        .map(|l| {
            [
                ("LibId", Some(l.lib_id.as_str())),
                ("LibName", l.lib_name.as_deref()),
                ("LibDescription", l.lib_description.as_deref()),
            ]
        })
        .collect();
    show(connection, "LIB_ID\tNAME\tDESCRIPTION", rows);
}

fn show_entities(connection: &Connection, entities: &[Entity]) {
    let rows = entities
        .iter()
        .map(|e| {
            [
                ("EntityId", Some(e.entity_id.as_str())),
                ("EntityName", e.entity_name.as_deref()),
                ("EntityInfo", e.entity_info.as_deref()),
            ]
        })
        .collect();
    show(connection, "ENTITY_ID\tNAME\tINFO", rows);
}

fn show_samples(connection: &Connection, samples: &[Sample]) {
    let rows = samples
        .iter()
        .map(|s| {
            [
                ("SampleId", Some(s.sample_id.as_str())),
                ("EntityId", s.entity_id.as_deref()),
                ("ImageUrl", s.image_url.as_deref()),
            ]
        })
        .collect();
    show(connection, "SAMPLE_ID\tENTITY_ID\tIMAGE_URL", rows);
}
