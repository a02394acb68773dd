use super::*;
use crate::image::{ImageId, person_key};
use std::os::unix::fs::PermissionsExt;

#[test]
fn a_ledger_failure_maps_to_locked_ledger_failed_or_usage_by_what_went_wrong() {
    use crate::exit::Exit;
    let path = PathBuf::from("l.jsonl");
    let io = || std::io::Error::other("x");
    let exits: Vec<i32> = [
        LedgerError::Locked {
            path: path.clone(),
            holder: "pid 1".into(),
        },
        LedgerError::Write {
            path: path.clone(),
            source: io(),
        },
        LedgerError::Replaced {
            path: path.clone(),
            recovery: Err("x".into()),
        },
        LedgerError::Open {
            path: path.clone(),
            source: io(),
        },
        LedgerError::Read {
            path: path.clone(),
            source: io(),
        },
        LedgerError::Corrupt {
            path: path.clone(),
            line: 2,
            column: 1,
            problem: "x".into(),
        },
        LedgerError::TooNew {
            path: path.clone(),
            line: 1,
            version: 9,
        },
        LedgerError::NotAFile { path },
    ]
    .iter()
    .map(|e| Exit::from(e).code())
    .collect();
    assert_eq!(exits, [4, 7, 7, 2, 2, 2, 2, 2]);
}

fn record(status: Status, url: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut r = ImageRecord::new("run-1", status, "Lib", "Alice", url);
    if status == Status::Registered {
        r.face_id = Some("face-1".into());
    }
    encode(&Record::Image(r), &mut out);
    out
}

fn replay_bytes(bytes: &[u8]) -> Result<Replay, LedgerError> {
    replay_from(Path::new("test.ledger.jsonl"), bytes)
}

#[test]
fn a_ledger_of_many_blocks_replays_over_threads_as_on_one() {
    // Some 8 MiB: several blocks for each decoding thread, records of every state, a
    // `recheck` settled later and one not, run records, and a torn tail.
    let mut bytes = Vec::new();
    let statuses = [
        Status::Pending,
        Status::Registered,
        Status::Failed,
        Status::Removed,
    ];
    for i in 0..48_000u32 {
        // 6,000 images of 600 persons, eight records each, ending in every state.
        let url = format!("http://x/{}.jpg", i % 6_000);
        let status = statuses[((i / 6_000 + i) % 4) as usize];
        let person = format!("p{}", i % 600);
        let mut r = ImageRecord::new("run-1", status, "Lib", &person, &url);
        r.recheck = (i % 1_001 == 0 || i == 601).then_some(true);
        encode(&Record::Image(r), &mut bytes);
        if i % 5_000 == 0 {
            let run = RunRecord {
                run: format!("run-{i}"),
                ..RunRecord::default()
            };
            encode(&Record::RunStart(run), &mut bytes);
        }
    }
    let settled = record::PersonRecord {
        ts: "2026-12-01T00:00:00Z".into(),
        run: "run-2".into(),
        category_id: "Lib".into(),
        person_id: "p1".into(),
        copies_removed: None,
        target: None,
    };
    encode(&Record::Settled(settled), &mut bytes);
    bytes.extend_from_slice(b"{\"v\":1,\"ki");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.ledger.jsonl");
    std::fs::write(&path, &bytes).unwrap();
    assert!(bytes.len() > 6 * read::tests_block_bytes());
    let threads = replay(&path).unwrap();
    let one = replay_bytes(&bytes).unwrap();
    assert_eq!(
        (threads.lines, threads.torn_tail),
        (one.lines, one.torn_tail)
    );
    assert_eq!((one.lines, one.torn_tail), (48_011, 10));
    assert_eq!(threads.images.len(), 6_000);
    for (key, slot) in &one.images {
        assert_eq!(threads.state(*key), Some(slot.state));
    }
    assert_eq!(threads.registered, one.registered);
    assert_eq!(threads.persons, one.persons);
    let mut a: Vec<_> = threads.recheck.keys().collect();
    let mut b: Vec<_> = one.recheck.keys().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert!(!b.is_empty());
    assert!(
        !b.contains(&&(person_key("lib", "p1") as u64)),
        "p1 was settled"
    );
    assert_eq!(
        threads.last_run_start.map(|r| r.run),
        Some("run-45000".to_string())
    );
}

#[test]
fn the_last_record_for_an_image_wins() {
    let mut bytes = record(Status::Pending, "http://x/a.jpg");
    bytes.extend(record(Status::Registered, "http://x/a.jpg"));
    bytes.extend(record(Status::Pending, "http://x/b.jpg"));
    let replay = replay_bytes(&bytes).unwrap();
    let a = replay
        .state(ImageId::new("http://x/a.jpg", None).key("lib", "alice"))
        .unwrap();
    assert_eq!(a.status, Status::Registered);
    let b = replay
        .state(ImageId::new("http://x/b.jpg", None).key("LIB", "ALICE"))
        .unwrap();
    assert_eq!(b.status, Status::Pending);
    assert_eq!(
        replay.registered_per_person()[&(person_key("lib", "alice") as u64)],
        1
    );
    assert_eq!(replay.lines, 3);
}

#[test]
fn per_person_counts_follow_each_image_s_last_record() {
    let mut bytes = record(Status::Registered, "http://x/a.jpg");
    bytes.extend(record(Status::Registered, "http://x/b.jpg"));
    bytes.extend(record(Status::Removed, "http://x/a.jpg"));
    bytes.extend(record(Status::Registered, "http://x/b.jpg"));
    let alice = person_key("lib", "alice") as u64;
    let replay = replay_bytes(&bytes).unwrap();
    assert_eq!(replay.registered_per_person()[&alice], 1);
    bytes.extend(record(Status::Failed, "http://x/b.jpg"));
    let replay = replay_bytes(&bytes).unwrap();
    assert!(!replay.registered_per_person().contains_key(&alice));
    assert!(replay.persons().contains(&alice));
    assert_eq!(replay.persons().len(), 1);
}

#[test]
fn a_torn_last_line_is_tolerated_at_every_cut_and_no_complete_line_is_lost() {
    let mut bytes = record(Status::Pending, "http://x/a.jpg");
    bytes.extend(record(Status::Registered, "http://x/a.jpg"));
    let first_len = record(Status::Pending, "http://x/a.jpg").len();
    for cut in 0..bytes.len() {
        let replay = replay_bytes(&bytes[..cut]).unwrap();
        let complete = if cut >= first_len { 1 } else { 0 };
        assert_eq!(replay.lines, complete, "cut at {cut}");
        let expect_torn = (cut - if complete == 1 { first_len } else { 0 }) as u64;
        assert_eq!(replay.torn_tail, expect_torn, "cut at {cut}");
    }
    assert_eq!(replay_bytes(&bytes).unwrap().torn_tail, 0);
}

#[test]
fn a_damaged_line_in_the_middle_names_file_line_and_column() {
    let mut bytes = record(Status::Pending, "http://x/a.jpg");
    bytes.extend(b"{\"v\":1,\"kind\":\"image\",oops}\n");
    bytes.extend(record(Status::Registered, "http://x/a.jpg"));
    match replay_bytes(&bytes) {
        Err(LedgerError::Corrupt { line, column, .. }) => {
            assert_eq!(line, 2);
            assert!(column > 1);
        }
        other => panic!("expected Corrupt, got {:?}", other.err()),
    }
}

#[test]
fn records_from_a_newer_schema_are_refused_with_advice() {
    let bytes = b"{\"v\":99,\"kind\":\"image\"}\n";
    let err = replay_bytes(bytes).err().unwrap();
    assert!(matches!(err, LedgerError::TooNew { version: 99, .. }));
    assert!(err.to_string().contains("Upgrade"));
}

#[test]
fn run_records_carry_no_image_and_are_remembered() {
    let mut bytes = Vec::new();
    let start = RunRecord {
        ts: "t".into(),
        run: "r1".into(),
        ..RunRecord::default()
    };
    encode(&Record::RunStart(start.clone()), &mut bytes);
    let end = RunRecord {
        exit_code: Some(0),
        ..start.clone()
    };
    encode(&Record::RunEnd(end), &mut bytes);
    let replay = replay_bytes(&bytes).unwrap();
    assert_eq!(replay.last_run_start.unwrap().run, "r1");
    assert_eq!(replay.last_run_end.unwrap().exit_code, Some(0));
    assert!(replay.images.is_empty());
    assert!(!String::from_utf8(bytes).unwrap().contains("image_url"));
}

#[test]
fn appending_after_a_torn_tail_cuts_it_off_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.jsonl");
    let mut bytes = record(Status::Pending, "http://x/a.jpg");
    bytes.extend(b"{\"v\":1,\"kind\":\"ima");
    std::fs::write(&path, &bytes).unwrap();
    let replay = replay(&path).unwrap();
    assert!(replay.torn_tail > 0);
    let mut appender = Appender::open(&path, replay.torn_tail).unwrap();
    appender
        .append(&record(Status::Registered, "http://x/a.jpg"))
        .unwrap();
    appender.sync().unwrap();
    let again = super::replay(&path).unwrap();
    assert_eq!(again.lines, 2);
    assert_eq!(again.torn_tail, 0);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn ledgers_written_by_release_0_1_0_replay_and_every_line_reads_and_writes_back_unchanged() {
    for (name, text) in [
        (
            "mts",
            include_str!("../../tests/data/ledger-0.1.0-mts.jsonl"),
        ),
        (
            "ice",
            include_str!("../../tests/data/ledger-0.1.0-ice.jsonl"),
        ),
    ] {
        let replay = replay_bytes(text.as_bytes()).unwrap();
        assert_eq!(replay.lines as usize, text.lines().count(), "{name}");
        assert_eq!(replay.torn_tail, 0);
        for line in text.lines() {
            let record: Record = serde_json::from_str(line).unwrap();
            let mut out = Vec::new();
            encode(&record, &mut out);
            let again: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let original: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(again, original, "{name}: {line}");
        }
    }
    let mts = replay_bytes(include_bytes!("../../tests/data/ledger-0.1.0-mts.jsonl")).unwrap();
    let count = |status| {
        mts.images
            .values()
            .filter(|s| s.state.status == status)
            .count()
    };
    assert_eq!(count(Status::Registered), 37);
    assert_eq!(count(Status::Invalid), 1);
    assert_eq!(count(Status::Skipped), 2);
}

#[test]
fn the_lock_belongs_to_the_ledger_file_whatever_the_path_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.jsonl");
    let _first = Lock::acquire(&path).unwrap();
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert!(matches!(
        Lock::acquire(&link),
        Err(LedgerError::Locked { .. })
    ));
    std::fs::remove_file(lock_path(&path)).unwrap();
    assert!(
        matches!(Lock::acquire(&path), Err(LedgerError::Locked { .. })),
        "deleting the .lock file must not split the ledger"
    );
    assert!(matches!(
        Lock::acquire(Path::new("/dev/null")),
        Err(LedgerError::NotAFile { .. })
    ));
}

#[test]
fn a_ledger_replaced_during_a_run_is_noticed_at_the_next_sync_and_its_lines_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.jsonl");
    let mut appender = Appender::open(&path, 0).unwrap();
    let line = record(Status::Pending, "http://x/a.jpg");
    appender.append(&line).unwrap();
    appender.sync().unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"").unwrap();
    appender.append(&line).unwrap();
    match appender.sync() {
        Err(LedgerError::Replaced {
            recovery: Ok(saved),
            ..
        }) => {
            let mut both = line.clone();
            both.extend(&line);
            assert_eq!(std::fs::read(saved).unwrap(), both);
        }
        other => panic!("expected Replaced, got {other:?}"),
    }
}
