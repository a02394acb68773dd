//! `verify --repair` and `--prune-duplicates`, for either target: what to change so the ledger
//! agrees with the server, and changing it — records appended through the one writer under the
//! lock, extra copies removed by id (never a wildcard).
//!
//! Adopting an orphan appends `registered` with `"recovered":true`; a vanished id gets
//! `removed` with reason `vanished from the server`, which `plan` treats as not registered, so the
//! next `run` registers the image again. Pruned copies were never in the ledger; they are listed
//! in the `run_end` record's summary.

use std::collections::HashMap;

use serde::Serialize;

use crate::backend::Backend;
use crate::caller::{Caller, Halt};
use crate::commands::drift::{Drift, Inputs};
use crate::exit::Exit;
use crate::image::{Image, ImageId};
use crate::ledger::{ImageRecord, KeyMap, LedgerError, Status};
use crate::pipeline::journal::{Begun, Journal};
use crate::pipeline::recorder::Event;
use crate::report::ProgressMode;

pub const VANISHED_REASON: &str = "vanished from the server";
pub const ADOPTED_REASON: &str = "on the server but not in the ledger: adopted by verify --repair";

#[derive(Clone, Debug, Default, Serialize)]
pub struct Adopt {
    pub line: u64,
    pub category_id: String,
    pub person_id: String,
    pub person_name: Option<String>,
    /// The image (written as its source, `image_url`).
    #[serde(rename = "image_url", serialize_with = "crate::image::as_shown")]
    pub image: Image,
    pub face_id: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MarkRemoved {
    pub category_id: String,
    pub person_id: String,
    /// The image as recorded (written as its source, `image_url`).
    #[serde(rename = "image_url", serialize_with = "crate::image::as_shown")]
    pub image: Image,
    pub face_id: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Prune {
    pub category_id: String,
    pub person_id: String,
    pub image_url: String,
    pub face_id: String,
}

/// What the repair will do (and, once applied, what it did).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairPlan {
    pub adopt: Vec<Adopt>,
    pub mark_removed: Vec<MarkRemoved>,
    pub prune: Vec<Prune>,
    pub applied: bool,
    pub pruned: u64,
    pub prune_failed: u64,
}

impl RepairPlan {
    /// Nothing to adopt, mark or prune.
    pub fn is_empty(&self) -> bool {
        self.adopt.is_empty() && self.mark_removed.is_empty() && self.prune.is_empty()
    }
}

/// The repair that makes the ledger agree with what the server showed.
pub fn plan(drifts: &[Drift], inputs: &Inputs, prune: bool) -> RepairPlan {
    let mut plan = RepairPlan::default();
    for (drift, library) in drifts.iter().zip(&inputs.libraries) {
        if drift.error.is_some() {
            continue;
        }
        let mut adopted: KeyMap<()> = KeyMap::default();
        for orphan in &drift.orphans {
            let Some(url) = &orphan.image_url else {
                continue;
            };
            // An orphan has a line when it is a manifest image of this library.
            let Some(e) = orphan.line.and_then(|line| inputs.rows.get(&line)) else {
                continue;
            };
            adopted.insert(
                ImageId::listed(url).key(&library.name, &orphan.person_id),
                (),
            );
            plan.adopt.push(Adopt {
                line: e.line,
                category_id: e.category_id.clone(),
                person_id: e.person_id.clone(),
                person_name: e.person_name.clone(),
                image: e.image.clone(),
                face_id: orphan.id.as_str().to_string(),
            });
        }
        for vanished in &drift.vanished {
            let Some((key, face)) = inputs.vanished.get(vanished.id.as_str()) else {
                continue;
            };
            // Adopting the image's other copy already supersedes the vanished FaceId.
            if adopted.contains_key(key) {
                continue;
            }
            plan.mark_removed.push(MarkRemoved {
                category_id: face.category_id.clone(),
                person_id: face.person_id.clone(),
                image: face.image.clone(),
                face_id: face.id.clone(),
            });
        }
        if prune {
            for dup in &drift.duplicates {
                plan.prune.extend(dup.extra.iter().map(|face_id| Prune {
                    category_id: library.name.clone(),
                    person_id: dup.person_id.clone(),
                    image_url: dup.image_url.clone(),
                    face_id: face_id.clone(),
                }));
            }
        }
    }
    plan
}

/// Where and how the repair is recorded.
pub struct Context<'a, P> {
    pub endpoint: &'a str,
    /// What `verify` found, recorded in the `run_end` record.
    pub exit: Exit,
    /// Where each server id lives (the person's place), from the listing.
    pub places: &'a HashMap<String, P>,
}

/// Appends the ledger records, then removes the extra copies one by one. Returns the exit
/// code: what `verify` found, unless it was stopped meanwhile.
pub(crate) async fn apply<T: Backend>(
    begun: Begun,
    ctx: Context<'_, T::Place>,
    plan: &mut RepairPlan,
    caller: &Caller,
    target: &T,
) -> Result<Exit, LedgerError> {
    let start = Journal::start_record("verify", ctx.endpoint, target.kind());
    let journal = begun.open(
        start,
        ProgressMode::Off,
        0,
        caller.tally().clone(),
        caller.stop().clone(),
    )?;
    let record = |status, category_id: &str, person_id: &str, image: &Image, id: &str| {
        let mut r = ImageRecord::of(&journal.run_id, status, category_id, person_id, image);
        target.stamp(&mut r, ctx.places.get(id));
        T::set_id(&mut r, id.to_string());
        r
    };
    for a in &plan.adopt {
        let mut r = record(
            Status::Registered,
            &a.category_id,
            &a.person_id,
            &a.image,
            &a.face_id,
        );
        r.recovered = Some(true);
        r.person_name = a.person_name.clone();
        r.line = Some(a.line);
        r.reason = Some(ADOPTED_REASON.into());
        journal.events.send(Event::Outcome(r));
    }
    for m in &plan.mark_removed {
        let mut r = record(
            Status::Removed,
            &m.category_id,
            &m.person_id,
            &m.image,
            &m.face_id,
        );
        r.reason = Some(VANISHED_REASON.into());
        journal.events.send(Event::Outcome(r));
    }
    let pruned_ids = prune(plan, ctx.places, caller, target).await;
    plan.pruned = pruned_ids.len() as u64;
    plan.applied = true;
    let exit = match caller.stop().reason() {
        Some(_) => caller.stop().exit().unwrap_or(Exit::Interrupted),
        None => ctx.exit,
    };
    let summary = serde_json::json!({
        "adopted": plan.adopt.len(),
        "marked_removed": plan.mark_removed.len(),
        "pruned": plan.pruned,
        "prune_failed": plan.prune_failed,
        "pruned_face_ids": pruned_ids,
    });
    let outcome = if exit == ctx.exit {
        "verify repair applied"
    } else {
        "verify repair stopped before every extra copy was removed"
    };
    journal.finish(outcome, exit, summary)?;
    Ok(exit)
}

/// Removes the extra copies one by one, until the caller stops; returns the ids removed and
/// counts the ones the service refused in `plan`.
async fn prune<T: Backend>(
    plan: &mut RepairPlan,
    places: &HashMap<String, T::Place>,
    caller: &Caller,
    target: &T,
) -> Vec<String> {
    let mut pruned_ids = Vec::new();
    for p in &plan.prune {
        let Some(place) = places.get(&p.face_id) else {
            continue;
        };
        let id = p.face_id.as_str();
        let removed = crate::backend::remove_by_id(target, caller, place, id).await;
        match removed {
            Ok(removal) => {
                tracing::info!(id, how = removal.reason(), "extra copy removed");
                pruned_ids.push(p.face_id.clone());
            }
            Err(Halt::Fatal | Halt::Stopped) => break,
            Err(Halt::Refused(e) | Halt::Exhausted(e)) => {
                crate::say!(
                    "face-enroll: cannot remove the extra copy {} of {} / {}: {e}",
                    p.face_id,
                    p.person_id,
                    p.image_url
                );
                plan.prune_failed += 1;
            }
        }
    }
    pruned_ids
}

/// One line on what was changed.
pub fn render_applied(plan: &RepairPlan) -> String {
    let mut text = format!(
        "face-enroll: repair applied: adopted {} orphan(s), marked {} vanished FaceId(s) removed",
        plan.adopt.len(),
        plan.mark_removed.len()
    );
    if !plan.prune.is_empty() {
        text.push_str(&format!(
            ", unregistered {} extra copy(ies) ({} failed)",
            plan.pruned, plan.prune_failed
        ));
    }
    if !plan.mark_removed.is_empty() {
        text.push_str("; run the import again to register the vanished images anew");
    }
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::ledger::{self, ImageRecord, Status};
    use crate::manifest::Reader;
    use crate::plan;

    const MANIFEST: &str =
        "category_id,person_id,image_url\nlib,alice,https://x.example.com/a.jpg\n";

    #[test]
    fn a_repair_plan_shows_each_image_by_its_source_and_keeps_its_key_out_of_the_json() {
        let adopt = super::Adopt {
            line: 2,
            category_id: "lib".into(),
            person_id: "alice".into(),
            person_name: None,
            image: crate::image::Image::new("https://x.example.com/a.jpg", Some("badge-7".into())),
            face_id: "f1".into(),
        };
        assert_eq!(
            serde_json::to_value(&adopt).unwrap(),
            serde_json::json!({
                "line": 2, "category_id": "lib", "person_id": "alice", "person_name": null,
                "image_url": "https://x.example.com/a.jpg", "face_id": "f1"
            })
        );
        // In the order the plan has always printed its fields.
        assert_eq!(
            serde_json::to_string(&adopt).unwrap(),
            r#"{"line":2,"category_id":"lib","person_id":"alice","person_name":null,"image_url":"https://x.example.com/a.jpg","face_id":"f1"}"#
        );
    }

    #[test]
    fn a_repair_plan_never_shows_a_signed_links_signature() {
        let signed =
            "https://bkt.oss-cn-shanghai.aliyuncs.com/p/1.jpg?x-oss-date=d&x-oss-signature=secret";
        let mark = super::MarkRemoved {
            category_id: "lib".into(),
            person_id: "alice".into(),
            image: crate::image::Image::at(signed),
            face_id: "f1".into(),
        };
        let json = serde_json::to_string(&mark).unwrap();
        assert!(!json.contains("secret"), "{json}");
        assert!(
            json.contains(r#""image_url":"oss://bkt/p/1.jpg""#),
            "{json}"
        );
    }

    fn to_send(ledger_bytes: &[u8]) -> (u64, bool) {
        let replay = ledger::replay_from(Path::new("l"), ledger_bytes).unwrap();
        let reader = Reader::from_reader(Path::new("m.csv"), MANIFEST.as_bytes()).unwrap();
        let options = plan::Options {
            retry_failed: false,
            keep_work: true,
            reconcile: Default::default(),
            sync: false,
        };
        let plan = plan::plan(reader, &replay, options).unwrap();
        let lookup = plan.jobs.iter().any(|j| j.needs_lookup);
        (plan.counts.to_send, lookup)
    }

    #[test]
    fn plan_sends_again_an_image_whose_last_record_is_removed() {
        let url = "https://x.example.com/a.jpg";
        let mut bytes = Vec::new();
        let mut registered = ImageRecord::new("r1", Status::Registered, "lib", "alice", url);
        registered.face_id = Some("f1".into());
        ledger::encode(&ledger::Record::Image(registered), &mut bytes);
        assert_eq!(to_send(&bytes), (0, false));
        let mut removed = ImageRecord::new("r2", Status::Removed, "LIB", "Alice", url);
        removed.face_id = Some("f1".into());
        removed.reason = Some(super::VANISHED_REASON.into());
        ledger::encode(&ledger::Record::Image(removed), &mut bytes);
        assert_eq!(
            to_send(&bytes),
            (1, false),
            "removed is not registered, and settled: no look-up first"
        );
    }
}
