use super::*;
use crate::backend::mts::MtsBackend;
use crate::ledger::RunRecord;

/// A ledger of `lines`, written as a run would write them.
struct Ledger {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn ledger(lines: &[Record]) -> Ledger {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let mut bytes = Vec::new();
    for line in lines {
        ledger::encode(line, &mut bytes);
    }
    std::fs::write(&path, bytes).unwrap();
    Ledger { _dir: dir, path }
}

fn image(run: &str, status: Status, person: (&str, &str), url: &str, id: &str) -> Record {
    let mut record = ImageRecord::new(run, status, person.0, person.1, url);
    record.face_id = (!id.is_empty()).then(|| id.to_string());
    Record::Image(record)
}

fn start(run: &str) -> Record {
    Record::RunStart(RunRecord::start(run, "run"))
}

fn end(run: &str) -> Record {
    Record::RunEnd(RunRecord::end(run, "ok", 0, serde_json::json!({})))
}

fn planned(ledger: &Ledger, scope: Scope) -> Collected<<MtsBackend as Backend>::Place> {
    match collect::<MtsBackend>(&ledger.path, &scope, TargetName::Mts) {
        Ok(collected) => collected,
        Err(e) => panic!("{e}"),
    }
}

/// Each job's (person as first written, ids in ledger order).
fn jobs(c: &Collected<<MtsBackend as Backend>::Place>) -> Vec<(String, Vec<String>)> {
    c.jobs
        .iter()
        .map(|job| {
            let ids = job.items.iter().map(|i| i.id.clone()).collect();
            (job.items[0].person_id.clone(), ids)
        })
        .collect()
}

#[test]
fn the_plan_is_what_each_image_last_says_is_registered_grouped_by_person() {
    let l = ledger(&[
        start("r1"),
        image(
            "r1",
            Status::Registered,
            ("lib", "alice"),
            "https://h/1.jpg",
            "f1",
        ),
        image(
            "r1",
            Status::Registered,
            ("lib", "Bob"),
            "https://h/2.jpg",
            "f2",
        ),
        // The same person however its ids are written: one job, one library.
        image(
            "r1",
            Status::Registered,
            ("LIB", "ALICE"),
            "https://h/3.jpg",
            "f3",
        ),
        // Registered, then removed: nothing left to remove.
        image(
            "r1",
            Status::Registered,
            ("lib", "carol"),
            "https://h/4.jpg",
            "f4",
        ),
        image(
            "r1",
            Status::Removed,
            ("lib", "carol"),
            "https://h/4.jpg",
            "f4",
        ),
        // Never registered: no id to remove.
        image(
            "r1",
            Status::Failed,
            ("other", "dave"),
            "https://h/5.jpg",
            "",
        ),
        end("r1"),
    ]);
    let c = planned(&l, Scope::All);
    assert_eq!(
        jobs(&c),
        [
            (
                "alice".to_string(),
                vec!["f1".to_string(), "f3".to_string()]
            ),
            ("Bob".to_string(), vec!["f2".to_string()]),
        ]
    );
    assert_eq!(c.images, 3);
    assert_eq!(c.libraries, [("lib".to_string(), 3)]);
    assert!(c.unsafe_ids.is_empty() && !c.unfinished);
}

#[test]
fn a_run_scope_takes_the_images_whose_last_word_that_run_wrote() {
    let l = ledger(&[
        start("r1"),
        image(
            "r1",
            Status::Registered,
            ("lib", "alice"),
            "https://h/1.jpg",
            "f1",
        ),
        image(
            "r1",
            Status::Registered,
            ("lib", "bob"),
            "https://h/2.jpg",
            "f2",
        ),
        end("r1"),
        start("r2"),
        // bob's image sent again by r2 (its id had left the server): r2's now.
        image(
            "r2",
            Status::Registered,
            ("lib", "bob"),
            "https://h/2.jpg",
            "f2b",
        ),
        image(
            "r2",
            Status::Registered,
            ("lib", "carol"),
            "https://h/3.jpg",
            "f3",
        ),
    ]);
    let c = planned(&l, Scope::Run("r2".into()));
    assert_eq!(
        jobs(&c),
        [
            ("bob".to_string(), vec!["f2b".to_string()]),
            ("carol".to_string(), vec!["f3".to_string()]),
        ]
    );
    // r2 started and never ended: the rollback says the last run may still be going.
    assert!(c.unfinished);
    let everything = planned(&l, Scope::All);
    assert_eq!(everything.images, 3);
    match collect::<MtsBackend>(&l.path, &Scope::Run("r9".into()), TargetName::Mts) {
        Err(CollectError::NoSuchRun { run, .. }) => assert_eq!(run, "r9"),
        other => panic!("a run the ledger does not have: {:?}", other.err()),
    }
}

#[test]
fn an_id_that_may_not_be_sent_is_listed_apart_and_never_planned_for_removal() {
    let l = ledger(&[
        image(
            "r1",
            Status::Registered,
            ("lib", "alice"),
            "https://h/1.jpg",
            "ALL",
        ),
        image(
            "r1",
            Status::Registered,
            ("lib", "alice"),
            "https://h/2.jpg",
            "f2",
        ),
        image(
            "r1",
            Status::Registered,
            ("lib", "bob"),
            "https://h/3.jpg",
            " f3",
        ),
    ]);
    let c = planned(&l, Scope::All);
    assert_eq!(jobs(&c), [("alice".to_string(), vec!["f2".to_string()])]);
    assert_eq!(c.images, 1);
    assert_eq!(c.unsafe_ids.len(), 2, "{:?}", c.unsafe_ids);
    assert!(c.unsafe_ids[0].contains("https://h/1.jpg") && c.unsafe_ids[0].contains("\"ALL\""));
}
