use super::*;
use crate::image::person_key;
use crate::ledger::{ImageRecord, encode, replay_from};
use std::path::Path;

fn row(line: u64, cat: &str, person: &str, url: &str) -> Result<Entry, ManifestError> {
    Ok(Entry::Valid(Row {
        line,
        category_id: cat.into(),
        person_id: person.into(),
        person_name: None,
        image: Image::at(url),
    }))
}

fn ledger(records: &[(Status, &str, &str, &str, bool)]) -> Replay {
    let mut bytes = Vec::new();
    for (status, cat, person, url, retryable) in records {
        let mut r = ImageRecord::new("r", *status, cat, person, url);
        r.retryable = retryable.then_some(true);
        encode(&crate::ledger::Record::Image(r), &mut bytes);
    }
    replay_from(Path::new("l"), &bytes[..]).unwrap()
}

fn run_options() -> Options {
    Options {
        retry_failed: false,
        keep_work: true,
        reconcile: Default::default(),
        sync: false,
    }
}

#[test]
fn rows_group_by_person_case_insensitively_in_manifest_order() {
    let rows = vec![
        row(2, "Lib", "Alice", "http://x/1"),
        row(3, "lib", "Bob", "http://x/2"),
        row(4, "LIB", "alice", "http://x/3"),
    ];
    let plan = plan(rows.into_iter(), &Replay::default(), run_options()).unwrap();
    assert_eq!(plan.jobs.len(), 2);
    let lines: Vec<u64> = plan.jobs[0].images.iter().map(|i| i.line).collect();
    assert_eq!(lines, vec![2, 4]);
    assert_eq!(plan.counts.persons, 2);
    assert_eq!(plan.counts.libraries, 1);
    assert_eq!(plan.counts.to_send, 3);
}

#[test]
fn the_same_image_twice_for_one_person_is_planned_once() {
    let rows = vec![
        row(2, "l", "a", "http://x/1"),
        row(3, "L", "A", "http://x/1"),
    ];
    let plan = plan(rows.into_iter(), &Replay::default(), run_options()).unwrap();
    assert_eq!(plan.counts.to_send, 1);
    assert_eq!(plan.counts.duplicates, 1);
}

#[test]
fn the_eleventh_image_is_skipped_and_registered_ones_count_toward_the_limit() {
    let done = ledger(&[
        (Status::Registered, "l", "a", "http://x/old1", false),
        (Status::Registered, "l", "a", "http://x/old2", false),
    ]);
    let rows = (0..10).map(|i| row(i + 2, "l", "a", &format!("http://x/new{i}")));
    let plan = plan(rows, &done, run_options()).unwrap();
    assert_eq!(plan.counts.to_send, 8);
    assert_eq!(plan.counts.over_limit, 2);
    assert_eq!(plan.counts.over_limit_persons, 1);
    let skipped: Vec<u64> = plan.rejected.iter().map(|r| r.line).collect();
    assert_eq!(
        skipped,
        vec![10, 11],
        "the first rows in manifest order win"
    );
    assert!(plan.rejected.iter().all(|r| r.status == Status::Skipped));
}

#[test]
fn registered_images_are_not_sent_again_and_pending_ones_need_a_lookup() {
    let done = ledger(&[
        (Status::Registered, "l", "a", "http://x/1", false),
        (Status::Pending, "l", "b", "http://x/2", false),
        (Status::Failed, "l", "c", "http://x/3", true),
    ]);
    let rows = vec![
        row(2, "l", "a", "http://x/1"),
        row(3, "l", "b", "http://x/2"),
        row(4, "l", "c", "http://x/3"),
    ];
    let plan = plan(rows.into_iter(), &done, run_options()).unwrap();
    assert_eq!(plan.counts.already_registered, 1);
    assert_eq!(plan.counts.to_send, 2);
    assert_eq!(plan.counts.to_look_up, 2);
    assert!(plan.jobs.iter().all(|j| j.needs_lookup));
}

#[test]
fn rows_that_failed_for_good_wait_for_retry_failed() {
    let done = ledger(&[(Status::Failed, "l", "a", "http://x/1", false)]);
    let rows = || vec![row(2, "l", "a", "http://x/1")].into_iter();
    let plain = plan(rows(), &done, run_options()).unwrap();
    assert_eq!(
        (plain.counts.to_send, plain.counts.previously_failed),
        (0, 1)
    );
    let again = plan(
        rows(),
        &done,
        Options {
            retry_failed: true,
            keep_work: true,
            reconcile: Default::default(),
            sync: false,
        },
    )
    .unwrap();
    assert_eq!(
        (again.counts.to_send, again.counts.previously_failed),
        (1, 0)
    );
    assert!(
        again.jobs[0].needs_lookup,
        "an earlier attempt may have landed before the refusal: read the person first"
    );
}

#[test]
fn invalid_rows_are_rejected_and_not_rewritten_when_the_ledger_has_them() {
    let bad = InvalidRow {
        line: 7,
        column: Some("image_url"),
        reason: "not an http(s) URL".into(),
        category_id: "l".into(),
        person_id: "a".into(),
        image_url: "ftp://x".into(),
    };
    let fresh = plan(
        vec![Ok(Entry::Invalid(bad.clone()))].into_iter(),
        &Replay::default(),
        run_options(),
    )
    .unwrap();
    assert_eq!(fresh.counts.invalid, 1);
    assert!(!fresh.rejected[0].already_recorded);
    assert!(fresh.rejected[0].reason.starts_with("image_url: "));
    // Recorded by a run that ended with its summary (exit 1): known, not written again.
    let mut bytes = Vec::new();
    let record = ImageRecord::new("r", Status::Invalid, "l", "a", "ftp://x");
    encode(&crate::ledger::Record::Image(record), &mut bytes);
    let unfinished = replay_from(Path::new("l"), &bytes[..]).unwrap();
    let started = crate::ledger::Record::RunStart(crate::ledger::RunRecord::start("r", "run"));
    let mut with_start = Vec::new();
    encode(&started, &mut with_start);
    with_start.extend_from_slice(&bytes);
    bytes = with_start;
    let end = crate::ledger::RunRecord::end("r", "done", 1, serde_json::json!({}));
    encode(&crate::ledger::Record::RunEnd(end), &mut bytes);
    let known = replay_from(Path::new("l"), &bytes[..]).unwrap();
    let again = plan(
        vec![Ok(Entry::Invalid(bad.clone()))].into_iter(),
        &known,
        run_options(),
    )
    .unwrap();
    assert!(again.rejected[0].already_recorded && again.rejected[0].reported);
    // Recorded by a run that never ended (killed): not written again, but this run reports
    // it as new.
    let after_kill = plan(
        vec![Ok(Entry::Invalid(bad))].into_iter(),
        &unfinished,
        run_options(),
    )
    .unwrap();
    let after_kill = &after_kill.rejected[0];
    assert!(after_kill.already_recorded && !after_kill.reported);
}

#[test]
fn a_rejection_is_reported_only_by_a_later_run_that_finishes_with_exit_0_or_1() {
    use crate::ledger::{Record, RunRecord};
    let mut bytes = Vec::new();
    let mut add = |record: Record| encode(&record, &mut bytes);
    add(Record::RunStart(RunRecord::start("r1", "run")));
    add(Record::Image(ImageRecord::new(
        "r1",
        Status::Invalid,
        "l",
        "a",
        "ftp://x",
    )));
    let mut refused = ImageRecord::new("r1", Status::Failed, "l", "b", "http://x/b");
    refused.retryable = Some(false);
    add(Record::Image(refused));
    let ended = |run: &str, command: &str, exit: i32| {
        [
            Record::RunStart(RunRecord::start(run, command)),
            Record::RunEnd(RunRecord::end(run, "ended", exit, serde_json::json!({}))),
        ]
    };
    // Stopped early, a sync refused, a rollback and a verify that ended 0 or 1: none of
    // them is the report of a run that finished.
    for record in [
        ended("r1", "run", 5),
        ended("r2", "run", 8),
        ended("r3", "rollback", 0),
        ended("r4", "verify", 1),
    ]
    .into_iter()
    .flatten()
    {
        add(record);
    }
    let reported = |bytes: &[u8], person: &str, url: &str| {
        let replay = replay_from(Path::new("l"), bytes).unwrap();
        replay
            .state(Image::at(url.to_string()).key_in("l", person))
            .unwrap()
            .reported
    };
    assert!(!reported(&bytes, "a", "ftp://x"));
    assert!(!reported(&bytes, "b", "http://x/b"));
    for record in ended("r5", "run", 1) {
        encode(&record, &mut bytes);
    }
    assert!(reported(&bytes, "a", "ftp://x"));
    assert!(reported(&bytes, "b", "http://x/b"));
}

#[test]
fn counting_only_keeps_no_work_but_counts_the_same() {
    let rows =
        || (0..30).map(|i| row(i + 2, "l", &format!("p{}", i % 3), &format!("http://x/{i}")));
    let kept = plan(rows(), &Replay::default(), run_options()).unwrap();
    let counted = plan(rows(), &Replay::default(), Options::default()).unwrap();
    assert!(counted.jobs.is_empty());
    assert_eq!(kept.counts.to_send, counted.counts.to_send);
    assert_eq!(kept.counts.over_limit, counted.counts.over_limit);
    assert_eq!(kept.counts.persons, 3);
    assert_eq!(counted.counts.persons, 3);
}

#[test]
fn images_the_server_holds_count_against_a_sync_s_limit_before_new_rows_do() {
    let url = |name: &str| format!("http://x/{name}.jpg");
    let mut rows = vec![
        row(2, "l", "a", &url("new-a")),
        row(3, "l", "a", &url("new-b")),
    ];
    rows.extend((0..10).map(|i| row(i + 4, "l", "a", &url(&i.to_string()))));
    let on_server: OnServer = (0..10)
        .map(|i| (person_key("l", "a"), url(&i.to_string())))
        .collect();
    let options = Options {
        sync: true,
        ..run_options()
    };
    let plan = plan_knowing(
        rows.into_iter(),
        &Replay::default(),
        options,
        Rules::MTS,
        &on_server,
    )
    .unwrap();
    let skipped: Vec<u64> = plan.rejected.iter().map(|r| r.line).collect();
    assert_eq!(
        skipped,
        vec![2, 3],
        "the ten on the server are the person's"
    );
    assert_eq!(plan.jobs[0].images.len(), 10);
    assert!(plan.jobs[0].reconcile, "read first, to adopt them");
}

#[test]
fn a_row_given_an_image_key_is_the_image_its_url_was_recorded_as() {
    let done = ledger(&[(Status::Registered, "l", "a", "http://x/1", false)]);
    let keyed = Row {
        image: Image::new("http://x/1", Some("photo-1".into())),
        ..match row(2, "l", "a", "http://x/1").unwrap() {
            Entry::Valid(row) => row,
            Entry::Invalid(_) => unreachable!(),
        }
    };
    let options = Options {
        sync: true,
        ..run_options()
    };
    let plan = plan(vec![Ok(Entry::Valid(keyed))].into_iter(), &done, options).unwrap();
    assert_eq!(
        (plan.counts.already_registered, plan.counts.to_send),
        (1, 0)
    );
    assert_eq!(done.unseen(|_| true).count(), 0, "a sync would remove it");
}

fn short_names(row: &Row) -> Option<(&'static str, String)> {
    (row.person_id.len() > 3).then(|| ("person_id", "longer than 3 bytes".to_string()))
}

#[test]
fn a_target_without_a_limit_plans_every_image_of_a_person() {
    let rules = Rules {
        max_images_per_person: None,
        check_row: None,
    };
    let rows = (0..15).map(|i| row(i + 2, "l", "a", &format!("http://x/{i}")));
    let plan = plan_with(rows, &Replay::default(), run_options(), rules).unwrap();
    assert_eq!((plan.counts.to_send, plan.counts.over_limit), (15, 0));
    assert_eq!(plan.jobs[0].images.len(), 15);
}

#[test]
fn rows_a_target_check_refuses_are_invalid_with_the_column_named() {
    let rules = Rules {
        max_images_per_person: None,
        check_row: Some(short_names),
    };
    let rows = vec![
        row(2, "l", "abcd", "http://x/1"),
        row(3, "l", "ab", "http://x/2"),
    ];
    let plan = plan_with(rows.into_iter(), &Replay::default(), run_options(), rules).unwrap();
    assert_eq!((plan.counts.invalid, plan.counts.to_send), (1, 1));
    assert_eq!(plan.rejected[0].status, Status::Invalid);
    assert_eq!(plan.rejected[0].reason, "person_id: longer than 3 bytes");
}
