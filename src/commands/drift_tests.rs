use super::*;
use crate::backend::{Held, Library, ServerPerson};

#[test]
fn over_limit_names_only_persons_still_over_it_sorted_by_id_with_their_faces() {
    let crowded: KeyMap<String> = [(1, "zoe"), (2, "adam"), (3, "mia")]
        .into_iter()
        .map(|(k, id)| (k, id.to_string()))
        .collect();
    let counts: KeyMap<u32> = [(1, 12), (2, 11), (3, 10)].into_iter().collect();
    let named: Vec<(String, u64)> = over_limit(crowded, &counts, 10)
        .into_iter()
        .map(|c| (c.person_id, c.faces))
        .collect();
    assert_eq!(named, [("adam".to_string(), 11), ("zoe".to_string(), 12)]);
}

const MTS: Rules = Rules {
    max_per_person: Some(10),
    samples: false,
};

fn listing(faces: &[(&str, &str, &str)]) -> Library<()> {
    let mut library = Library::default();
    for (person, url, id) in faces {
        let held = Held {
            id: id.to_string(),
            image_url: Some(url.to_string()),
        };
        match library.persons.last_mut() {
            Some(last) if last.person_id == *person => last.images.push(held),
            _ => library.persons.push(ServerPerson {
                person_id: person.to_string(),
                place: (),
                images: vec![held],
            }),
        }
    }
    library
}

fn inputs(expected: &[(&str, &str)], ledger: &[(&str, &str, &str)]) -> (LibraryInputs, Inputs) {
    let mut lib = LibraryInputs {
        name: "lib".into(),
        ..LibraryInputs::default()
    };
    let mut all = Inputs::default();
    for (i, (person, url)) in expected.iter().enumerate() {
        lib.expected.push(ExpectedRow::new(
            ImageId::new(url, None).key("lib", person),
            i as u64 + 2,
        ));
    }
    let rec = LedgerRec {
        status: Status::Registered,
        face: true,
        refused: false,
        library: 0,
    };
    let images = ledger
        .iter()
        .map(|(person, url, id)| (ImageId::new(url, None).key("lib", person), rec, id_hash(id)))
        .collect();
    all.ledger = LedgerIndex::build(images);
    lib.ledger_faces = all.ledger.face_images().map(|at| at as u32).collect();
    (lib, all)
}

fn compare(lib: &LibraryInputs, listing: &Library<()>, all: &Inputs, rules: Rules) -> Drift {
    super::compare(lib, listing, all, rules, None)
}

#[test]
fn a_server_that_holds_exactly_the_ledgers_faces_agrees() {
    let (lib, all) = inputs(&[("alice", "u1")], &[("alice", "u1", "f1")]);
    let drift = compare(&lib, &listing(&[("Alice", "u1", "f1")]), &all, MTS);
    assert!(drift.agrees(), "{drift:?}");
    assert_eq!(drift.server_faces, 1);
}

#[test]
fn each_kind_of_drift_is_told_apart() {
    let (lib, all) = inputs(
        &[
            ("alice", "u1"),
            ("bob", "u2"),
            ("carol", "u3"),
            ("erin", "u5"),
        ],
        &[("alice", "u1", "f1"), ("bob", "u2", "f2")],
    );
    let server = listing(&[
        ("alice", "u1", "x1"),
        ("alice", "u1", "f1"),
        ("carol", "u3", "f3"),
        ("dave", "u4", "f4"),
    ]);
    let drift = compare(&lib, &server, &all, MTS);
    // Bob's row vanished (registered, gone): once, as vanished, not also as missing.
    assert_eq!(drift.missing.len(), 1);
    assert_eq!(drift.missing[0].line, 5, "erin's row");
    assert_eq!(drift.missing[0].ledger_status, None);
    assert_eq!(drift.duplicates.len(), 1);
    assert_eq!(drift.duplicates[0].keep, "f1", "the ledger's copy is kept");
    assert_eq!(drift.duplicates[0].extra, ["x1"]);
    let orphans: Vec<_> = drift
        .orphans
        .iter()
        .map(|o| (o.id.as_str(), o.line))
        .collect();
    assert_eq!(orphans, [("f3", Some(4)), ("f4", None)]);
    let bob = all
        .ledger
        .find(ImageId::new("u2", None).key("lib", "bob"))
        .unwrap() as u32;
    assert_eq!(drift.vanished_at, [bob], "f2 is gone");
    assert!(!drift.agrees());
}

#[test]
fn duplicates_the_ledger_does_not_know_keep_the_first_copy_as_an_orphan() {
    let (lib, all) = inputs(&[("alice", "u1")], &[]);
    let drift = compare(
        &lib,
        &listing(&[("alice", "u1", "a"), ("alice", "u1", "b")]),
        &all,
        MTS,
    );
    assert_eq!(drift.duplicates[0].keep, "a");
    assert_eq!(drift.orphans.len(), 1);
    assert_eq!(drift.orphans[0].id.as_str(), "a");
}

#[test]
fn a_person_over_ten_faces_is_reported() {
    let (lib, all) = inputs(&[], &[]);
    let urls: Vec<String> = (0..11).map(|i| format!("u{i}")).collect();
    let ids: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
    let faces: Vec<(&str, &str, &str)> = (0..11)
        .map(|i| ("zoe", urls[i].as_str(), ids[i].as_str()))
        .collect();
    let drift = compare(&lib, &listing(&faces), &all, MTS);
    assert_eq!(drift.persons_over_limit[0].faces, 11);
}
