//! `face-enroll lib …`: ICE custom recognition libraries by hand. Everything is checked before
//! the first request; listings follow every page; `--json` prints what scripts need.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::api::{Algorithm, Client, Entity, Lib, Sample};
use crate::backend::IceBackend;
use crate::backend::ice::check_lib_fields;
use crate::caller::{Caller, Halt};
use crate::cli::library::{
    Connection, CreateArgs, DeleteArgs, EntitiesArgs, LibArgs, LibCommand, ListArgs, SamplesArgs,
};
use crate::exit::Exit;
use crate::stop::{Stop, watch_signals};

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
    crate::say!("face-enroll lib: {message}");
    Exit::Usage
}

/// Why the one operation of a `lib` command stopped, said once, with its exit.
fn halted(session: &Session, halt: Halt) -> Exit {
    let fatal = session.caller.stop().take_fatal();
    let unreached = session.caller.stop().unreached();
    let error = halt.error().or(fatal.as_ref()).or(unreached.as_ref());
    if let Some(error) = error {
        let endpoint = &session.endpoint;
        match (&fatal, &unreached) {
            (Some(_), _) => {
                crate::say!("face-enroll lib: the service at {endpoint} refused: {error}")
            }
            (None, Some(_)) => crate::say!(
                "face-enroll lib: the endpoint is unreachable, nothing answered (exit 6): {error}"
            ),
            _ => crate::say!("face-enroll lib: {error}"),
        }
        if let Some(hint) = error.hint() {
            crate::say!("  what to do: {hint}");
        }
    } else {
        crate::say!("face-enroll lib: stopped before an answer");
    }
    match halt {
        Halt::Stopped => session.caller.stop().exit().unwrap_or(Exit::Interrupted),
        _ => halt.exit(),
    }
}

/// The ICE target (its listings and deletes) and the one caller (pacing, retries, Ctrl-C).
struct Session {
    client: Client,
    /// Where requests go, for messages.
    endpoint: String,
    target: IceBackend,
    caller: Caller,
}

impl Session {
    async fn libs(&self) -> Result<Vec<Lib>, Halt> {
        self.target.all_libs(&self.caller).await
    }
}

/// Validates the connection flags and builds a session; nothing is sent here.
async fn connect(connection: &Connection, algorithm: Algorithm) -> Result<Session, Exit> {
    let settings = connection.connect.settings().map_err(usage)?;
    let target = crate::backend::TargetKind::Ice(algorithm);
    let connected = crate::connect::connect(&settings, target)
        .await
        .map_err(|e| {
            crate::say!("face-enroll lib: {e}");
            e.exit()
        })?;
    let stop = Arc::new(Stop::default());
    tokio::spawn(watch_signals(stop.clone()));
    Ok(Session {
        endpoint: connected.endpoint.clone(),
        client: connected.client.clone(),
        target: IceBackend::new(connected.client, algorithm),
        caller: Caller::new(settings.pace(target, crate::connect::SETTLE_MARGIN), stop),
    })
}

fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    super::print_out(format!("{text}\n"));
}

/// `lib create`: not idempotent, so an unknown outcome is settled by listing before resending:
/// a library with the name that was not there before is the one this call made.
async fn create(args: CreateArgs) -> Outcome {
    check_lib_fields(&args.name, args.description.as_deref()).map_err(usage)?;
    let session = connect(&args.connection, args.algorithm).await?;
    let before = session.libs().await.map_err(|h| halted(&session, h))?;
    let same_name: Vec<&str> = before
        .iter()
        .filter(|l| l.lib_name.as_deref() == Some(args.name.as_str()))
        .map(|l| l.lib_id.as_str())
        .collect();
    if !same_name.is_empty() {
        crate::say!(
            "face-enroll lib: note: a library named \"{}\" already exists ({}); creating another",
            args.name,
            same_name.join(", ")
        );
    }
    let (client, algorithm, name) = (&session.client, args.algorithm, args.name.as_str());
    let description = args.description.as_deref();
    let request_id = Mutex::new(None);
    let created = session
        .caller
        .create_once(
            "CreateRecognitionLib",
            || async {
                let made = client
                    .create_recognition_lib(algorithm, name, description)
                    .await?;
                *request_id.lock().unwrap_or_else(|p| p.into_inner()) = made.request_id;
                Ok(made.lib_id)
            },
            || async {
                let now = session.libs().await?;
                Ok(now
                    .into_iter()
                    .find(|l| {
                        l.lib_name.as_deref() == Some(name)
                            && !same_name.contains(&l.lib_id.as_str())
                    })
                    .map(|l| l.lib_id))
            },
        )
        .await
        .map_err(|h| halted(&session, h))?;
    let request_id = request_id.into_inner().unwrap_or_else(|p| p.into_inner());
    if args.connection.json {
        print_json(&json!({ "LibId": created.id, "RequestId": request_id }));
    } else {
        super::print_out(format!("{}\n", created.id));
    }
    Ok(())
}

async fn list(args: ListArgs) -> Outcome {
    let session = connect(&args.connection, args.algorithm).await?;
    let libs = session.libs().await.map_err(|h| halted(&session, h))?;
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
    let (algorithm, lib_id) = (args.algorithm, args.lib_id.as_str());
    let removal = session
        .target
        .delete_lib(&session.caller, lib_id)
        .await
        .map_err(|h| halted(&session, h))?;
    if removal == crate::caller::Removal::AlreadyGone {
        return Err(usage(format!(
            "there is no library {lib_id} for algorithm {algorithm} (`lib list` shows them)"
        )));
    }
    if args.connection.json {
        print_json(&json!({ "LibId": lib_id, "Deleted": true }));
    } else {
        crate::say!("face-enroll lib: deleted library {lib_id}, its entities and their samples");
    }
    Ok(())
}

async fn entities(args: EntitiesArgs) -> Outcome {
    let session = connect(&args.connection, args.algorithm).await?;
    let found = session
        .target
        .entities(&session.caller, &args.lib_id)
        .await
        .map_err(|h| halted(&session, h))?;
    show_entities(&args.connection, &found);
    Ok(())
}

async fn samples(args: SamplesArgs) -> Outcome {
    let session = connect(&args.connection, args.algorithm).await?;
    if let Some(name) = args.entity_name.as_deref() {
        // An empty listing would read as "no samples": say the name matched nothing instead.
        let entities = session
            .target
            .entities(&session.caller, &args.lib_id)
            .await
            .map_err(|h| halted(&session, h))?;
        let folded = crate::image::fold_id(name);
        let known = entities.iter().any(|e| {
            e.entity_name
                .as_deref()
                .is_some_and(|n| crate::image::fold_id(n) == folded)
        });
        if !known {
            return Err(usage(format!(
                "no entity named {name} in library {}; `face-enroll lib entities --lib-id {}` \
                 lists them",
                args.lib_id, args.lib_id
            )));
        }
    }
    let entity_id = args.entity_id.as_deref().unwrap_or("ANY");
    let found = session
        .target
        .samples_named(
            &session.caller,
            &args.lib_id,
            entity_id,
            args.entity_name.as_deref(),
        )
        .await
        .map_err(|h| halted(&session, h))?;
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
    super::print_out(&text);
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
