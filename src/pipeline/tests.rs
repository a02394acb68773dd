//! The worker against an in-memory fake service behind the target seam, in virtual time: the
//! exactly-once rules (look-up after an unknown outcome, settling `pending` left by a crash,
//! waiting out an unanswered attempt) without a subprocess or a socket.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::{ApiError, ErrorClass};
use crate::backend::{Backend, Held, Library, Made, Person, Placed, TargetKind, Tidied};
use crate::caller::{Caller, Halt, Pace};
use crate::ledger::{self, Appender, Entry, ImageRecord, Status, View};
use crate::pacer::Scope;
use crate::pipeline::recorder;
use crate::pipeline::worker::{Context, process};
use crate::plan::{ImageWork, PersonJob};
use crate::report::ProgressMode;
use crate::stop::Stop;

/// What the fake does with the next create.
#[derive(Clone, Copy, Debug)]
enum Next {
    /// Applies it, then the answer is lost (a timeout: no status).
    LoseAnswer,
    /// Holds it for this long, applies it, and never answers (a stall past the timeout).
    ApplyLate(Duration),
    /// A 500 with nothing applied.
    FailBefore,
}

#[derive(Default)]
struct Service {
    /// (category, person) → (id, url) in creation order.
    persons: HashMap<(String, String), Vec<(String, String)>>,
    next_id: u32,
    script: VecDeque<Next>,
    creates: u32,
    reads: u32,
    removes: u32,
}

impl Service {
    fn apply(&mut self, place: &(String, String), url: &str) -> String {
        self.next_id += 1;
        let id = format!("id-{}", self.next_id);
        self.persons
            .entry(place.clone())
            .or_default()
            .push((id.clone(), url.to_string()));
        id
    }

    fn copies(&self, url: &str) -> usize {
        self.persons
            .values()
            .flatten()
            .filter(|(_, u)| u == url)
            .count()
    }
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Service>>);

impl Fake {
    fn lock(&self) -> std::sync::MutexGuard<'_, Service> {
        self.0.lock().unwrap()
    }
}

fn timeout() -> ApiError {
    ApiError::with_class(ErrorClass::OutcomeUnknown, None, "Timeout", "no answer")
}

impl Backend for Fake {
    type Place = (String, String);

    const CREATE: &'static str = "FakeCreate";
    const REMOVE: &'static str = "FakeRemove";
    const NOUN: &'static str = "images";
    const VERB: &'static str = "remove";
    const ID: &'static str = "Id";

    fn kind(&self) -> TargetKind {
        TargetKind::Mts
    }

    async fn place(
        &self,
        _caller: &Caller,
        person: Person<'_>,
        _create: bool,
    ) -> Result<Option<Placed<Self::Place>>, Halt> {
        let place = (person.category_id.to_string(), person.person_id.to_string());
        Ok(Some(Placed {
            place,
            made: Vec::new(),
        }))
    }

    fn is_fresh(_place: &Self::Place) -> bool {
        false
    }

    fn place_at(person: Person<'_>, _: Option<&str>, _: Option<&str>) -> Option<Self::Place> {
        Some((person.category_id.to_string(), person.person_id.to_string()))
    }

    fn same_place(a: &Self::Place, b: &Self::Place) -> bool {
        a == b
    }

    fn place_of(view: &View<'_>) -> Option<Self::Place> {
        Some((
            view.category_id.as_deref()?.to_string(),
            view.person_id.as_deref()?.to_string(),
        ))
    }

    async fn held(&self, caller: &Caller, place: &Self::Place) -> Result<Vec<Held>, Halt> {
        caller
            .read("FakeList", || async {
                let mut s = self.lock();
                s.reads += 1;
                Ok(s.persons
                    .get(place)
                    .into_iter()
                    .flatten()
                    .map(|(id, url)| Held {
                        id: id.clone(),
                        image_url: Some(url.clone()),
                    })
                    .collect())
            })
            .await
    }

    async fn library(&self, _caller: &Caller, _name: &str) -> Result<Library<Self::Place>, Halt> {
        Ok(Library::default())
    }

    async fn create(
        &self,
        place: &Self::Place,
        _person: Person<'_>,
        image_url: &str,
    ) -> Result<String, ApiError> {
        let next = {
            let mut s = self.lock();
            s.creates += 1;
            s.script.pop_front()
        };
        match next {
            None => Ok(self.lock().apply(place, image_url)),
            Some(Next::FailBefore) => Err(ApiError::new(Some(500), "InternalError", "x")),
            Some(Next::LoseAnswer) => {
                self.lock().apply(place, image_url);
                Err(timeout())
            }
            Some(Next::ApplyLate(after)) => {
                let (fake, place, url) = (self.clone(), place.clone(), image_url.to_string());
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    fake.lock().apply(&place, &url);
                });
                // The client gives up at its timeout (10 s) without an answer.
                tokio::time::sleep(Duration::from_secs(10)).await;
                Err(timeout())
            }
        }
    }

    async fn remove(&self, place: &Self::Place, id: &str) -> Result<(), ApiError> {
        let mut s = self.lock();
        s.removes += 1;
        let images = s.persons.entry(place.clone()).or_default();
        let before = images.len();
        images.retain(|(i, _)| i != id);
        if images.len() == before {
            return Err(ApiError::new(Some(400), "InvalidParameter", "not found"));
        }
        Ok(())
    }

    async fn probe(&self, _caller: &Caller) -> Result<(), Halt> {
        Ok(())
    }

    async fn tidy(&self, _caller: &Caller, _made: &[Made]) -> Result<Tidied, Halt> {
        Ok(Tidied::default())
    }

    fn stamp(&self, _record: &mut ImageRecord, _place: Option<&Self::Place>) {}

    fn set_id(record: &mut ImageRecord, id: String) {
        record.face_id = Some(id);
    }
}

fn job(images: &[&str], needs_lookup: bool) -> PersonJob {
    PersonJob {
        category_id: "lib".into(),
        person_id: "alice".into(),
        person_name: None,
        needs_lookup,
        reconcile: false,
        read_library: false,
        pending_since: 0,
        images: images
            .iter()
            .enumerate()
            .map(|(i, url)| ImageWork {
                line: i as u64 + 2,
                image: crate::image::Image::at(url.to_string()),
                key: 0,
                unsettled: needs_lookup,
                sha256: None,
                was_invalid: false,
                was_reported: false,
            })
            .collect(),
        drops: Vec::new(),
        held: 0,
        recheck: None,
    }
}

/// Runs one person's job through the worker against `fake`; returns the ledger's records.
async fn run(fake: &Fake, job: PersonJob) -> Vec<(Status, Option<String>, bool)> {
    run_then(fake, job, Duration::ZERO).await.0
}

/// Runs the job, then (after `later`) the persons it left owing a late-copy check, as a run
/// does; the image records, and every line's `kind`.
async fn run_then(
    fake: &Fake,
    job: PersonJob,
    later: Duration,
) -> (Vec<(Status, Option<String>, bool)>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.jsonl");
    let stop = Arc::new(Stop::default());
    let pace = Pace {
        qps: 100,
        read_qps: 100,
        remove_qps: 100,
        scope: Scope::Action,
        max_attempts: 8,
        seed: Some(3),
        settle_after: Duration::from_secs(11),
    };
    let caller = Caller::new(pace, stop.clone());
    let appender = Appender::open(&path, 0).unwrap();
    let (events, recorder) = recorder::start(
        appender,
        ProgressMode::Off,
        job.images.len() as u64,
        caller.tally().clone(),
        || {},
    );
    let context = Context::new(fake.clone(), caller, events.clone(), "r".into());
    process(&context, job).await;
    if !later.is_zero() {
        tokio::time::sleep(later).await;
        let owed = std::mem::take(&mut *context.owed.lock().unwrap());
        for (_, job) in owed {
            process(&context, job).await;
        }
    }
    drop(context);
    let (_, _, failure) = recorder.finish(events);
    assert!(failure.is_none());
    let (mut out, mut kinds) = (Vec::new(), Vec::new());
    ledger::scan(&path, false, |entry| match entry {
        Entry::Image(image) => {
            kinds.push("image".to_string());
            out.push((
                image.status,
                image.face_id().map(str::to_string),
                image.view.recovered == Some(true),
            ));
        }
        Entry::Person(view) => kinds.push(format!(
            "{:?}:{}",
            view.kind,
            view.status.map(|s| s.as_str()).unwrap_or_default()
        )),
        _ => {}
    })
    .unwrap();
    (out, kinds)
}

#[tokio::test(start_paused = true)]
async fn an_answer_lost_after_the_create_is_settled_by_a_look_up_and_never_sent_twice() {
    let fake = Fake::default();
    fake.lock().script.push_back(Next::LoseAnswer);
    let records = run(&fake, job(&["u1"], false)).await;
    assert_eq!(fake.lock().copies("u1"), 1);
    assert_eq!(
        fake.lock().creates,
        1,
        "sent again after the look-up found it"
    );
    let last = records.last().unwrap();
    assert_eq!(
        (last.0, last.1.as_deref(), last.2),
        (Status::Registered, Some("id-1"), true)
    );
    assert_eq!(
        records[0].0,
        Status::Pending,
        "pending is written before the send"
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_error_with_nothing_applied_is_looked_up_then_sent_once_more() {
    let fake = Fake::default();
    fake.lock().script.push_back(Next::FailBefore);
    let records = run(&fake, job(&["u1", "u2"], false)).await;
    let s = fake.lock();
    assert_eq!((s.copies("u1"), s.copies("u2"), s.creates), (1, 1, 3));
    assert!(s.reads >= 1, "the unknown outcome was looked up");
    let registered = records.iter().filter(|r| r.0 == Status::Registered).count();
    assert_eq!(registered, 2);
}

#[tokio::test(start_paused = true)]
async fn a_pending_record_left_by_a_crash_is_settled_by_reading_the_person_not_by_sending() {
    let fake = Fake::default();
    let place = ("lib".to_string(), "alice".to_string());
    fake.lock().apply(&place, "u1");
    let records = run(&fake, job(&["u1", "u2"], true)).await;
    let s = fake.lock();
    assert_eq!((s.copies("u1"), s.copies("u2")), (1, 1));
    assert_eq!(s.creates, 1, "only the image the server lacked was sent");
    assert!(records.contains(&(Status::Registered, Some("id-1".into()), true)));
}

#[tokio::test(start_paused = true)]
async fn a_create_applied_late_is_found_because_the_look_up_waits_out_the_attempt() {
    let fake = Fake::default();
    // Applied 10.5 s after it was sent, after the client's 10 s timeout: a look-up at once
    // would find nothing and send a second copy.
    fake.lock()
        .script
        .push_back(Next::ApplyLate(Duration::from_millis(10_500)));
    let records = run(&fake, job(&["u1"], false)).await;
    let s = fake.lock();
    assert_eq!(s.copies("u1"), 1, "a second copy was sent");
    assert_eq!(s.creates, 1);
    assert!(records.last().unwrap().2, "recovered by the look-up");
}

#[tokio::test(start_paused = true)]
async fn a_create_that_lands_after_the_look_up_leaves_a_late_copy_that_the_run_removes() {
    let fake = Fake::default();
    // Applied 15 s after it was sent: later than the look-up (11 s), so the image is sent
    // again and the first attempt lands as a second copy.
    fake.lock()
        .script
        .push_back(Next::ApplyLate(Duration::from_secs(15)));
    let (records, kinds) = run_then(&fake, job(&["u1"], false), Duration::from_secs(30)).await;
    let s = fake.lock();
    assert_eq!(s.creates, 2, "the fault did not make the worker send again");
    assert_eq!(s.copies("u1"), 1, "the late copy was not removed");
    assert_eq!(s.removes, 1, "only the copy is removed");
    let kept = records
        .iter()
        .rev()
        .find(|r| r.0 == Status::Registered)
        .unwrap();
    let server: Vec<&String> = s.persons.values().flatten().map(|(id, _)| id).collect();
    assert_eq!(
        server,
        vec![kept.1.as_ref().unwrap()],
        "the ledger's id stays"
    );
    assert!(
        kinds.contains(&"Some(Copy):removing".to_string())
            && kinds.contains(&"Some(Copy):removed".to_string()),
        "{kinds:?}"
    );
    assert!(
        records.iter().all(|r| r.0 != Status::Removed),
        "a copy's removal never changes the image's own state"
    );
}

#[tokio::test(start_paused = true)]
async fn a_person_without_late_copies_is_read_again_and_nothing_is_removed() {
    let fake = Fake::default();
    fake.lock().script.push_back(Next::LoseAnswer);
    let (_, kinds) = run_then(&fake, job(&["u1", "u2"], false), Duration::from_secs(30)).await;
    let s = fake.lock();
    assert_eq!((s.copies("u1"), s.copies("u2"), s.removes), (1, 1, 0));
    assert!(kinds.iter().all(|k| k == "image"), "{kinds:?}");
}

fn drop_work(id: &str, url: &str, status: Status, remove: bool) -> crate::plan::DropWork {
    crate::plan::DropWork {
        image: crate::image::Image::at(url),
        key: 0,
        id: Some(id.into()),
        lib_id: None,
        entity_id: None,
        status,
        remove,
        why: if status == Status::Registered {
            crate::plan::Why::Dropped
        } else {
            crate::plan::Why::Settle
        },
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_person_makes_room_with_one_removal_before_each_addition() {
    let fake = Fake::default();
    let place = ("lib".to_string(), "alice".to_string());
    for i in 0..10 {
        fake.lock().apply(&place, &format!("old{i}"));
    }
    let mut job = job(&["new0", "new1"], false);
    job.held = 10;
    job.drops = vec![
        drop_work("id-1", "old0", Status::Registered, true),
        drop_work("id-2", "old1", Status::Registered, true),
        drop_work("id-3", "old2", Status::Registered, true),
    ];
    let records = run(&fake, job).await;
    let s = fake.lock();
    assert_eq!(s.persons[&place].len(), 9, "10 - 3 removed + 2 added");
    assert_eq!((s.copies("new0"), s.copies("new1")), (1, 1));
    assert_eq!(s.removes, 3);
    let order: Vec<Status> = records
        .iter()
        .map(|r| r.0)
        .filter(|s| matches!(s, Status::Registered | Status::Removed))
        .collect();
    assert_eq!(
        order,
        [
            Status::Removed,
            Status::Registered,
            Status::Removed,
            Status::Registered,
            Status::Removed
        ],
        "the person never went over 10 nor lost a photo it did not need to"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unsettled_image_that_left_the_manifest_is_read_back_and_recorded_as_it_is() {
    let fake = Fake::default();
    let place = ("lib".to_string(), "alice".to_string());
    fake.lock().apply(&place, "landed");
    let mut job = crate::plan::PersonJob::without_images("lib".into(), "alice".into());
    let mut landed = drop_work("", "landed", Status::Pending, false);
    landed.id = None;
    let mut lost = drop_work("", "lost", Status::Pending, false);
    lost.id = None;
    job.drops = vec![landed, lost];
    let records = run(&fake, job).await;
    assert_eq!(
        fake.lock().creates,
        0,
        "nothing is sent for a row that left"
    );
    assert!(records.contains(&(Status::Registered, Some("id-1".into()), true)));
    assert!(
        records
            .iter()
            .any(|r| r.0 == Status::Removed && r.1.is_none())
    );
}

#[tokio::test(start_paused = true)]
async fn a_removal_left_unanswered_by_a_crash_is_settled_by_what_the_server_holds() {
    let fake = Fake::default();
    let place = ("lib".to_string(), "alice".to_string());
    let still_there = fake.lock().apply(&place, "kept");
    let mut job = crate::plan::PersonJob::without_images("lib".into(), "alice".into());
    // One whose removal never landed (no sync now: it stays), one whose removal did.
    job.drops = vec![
        drop_work(&still_there, "kept", Status::Removing, false),
        drop_work("id-99", "gone", Status::Removing, false),
    ];
    let records = run(&fake, job).await;
    let s = fake.lock();
    assert_eq!(
        (s.removes, s.copies("kept")),
        (0, 1),
        "nothing is sent to settle"
    );
    assert!(records.contains(&(Status::Registered, Some(still_there.clone()), true)));
    assert!(records.contains(&(Status::Removed, Some("id-99".into()), false)));
}

#[tokio::test(start_paused = true)]
async fn a_sync_resumed_after_a_crash_removes_what_is_still_there_by_its_id() {
    let fake = Fake::default();
    let place = ("lib".to_string(), "alice".to_string());
    let id = fake.lock().apply(&place, "dropped");
    let mut job = crate::plan::PersonJob::without_images("lib".into(), "alice".into());
    job.drops = vec![drop_work(&id, "dropped", Status::Removing, true)];
    let records = run(&fake, job).await;
    let s = fake.lock();
    assert_eq!((s.removes, s.copies("dropped")), (1, 0));
    let statuses: Vec<Status> = records.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [Status::Removing, Status::Removed]);
}

#[tokio::test(start_paused = true)]
async fn a_pending_left_by_a_run_that_sent_twice_is_recovered_and_its_second_copy_removed() {
    let fake = Fake::default();
    let place = ("lib".to_string(), "alice".to_string());
    // The killed run sent u1, its look-up found nothing, it sent u1 again: both landed.
    fake.lock().apply(&place, "u1");
    fake.lock().apply(&place, "u1");
    let (records, kinds) = run_then(&fake, job(&["u1"], true), Duration::from_secs(30)).await;
    let s = fake.lock();
    assert_eq!(s.creates, 0, "nothing is sent: the image is there");
    assert_eq!(s.copies("u1"), 1, "the second copy stays");
    assert!(records.contains(&(Status::Registered, Some("id-1".into()), true)));
    assert!(
        kinds.contains(&"Some(Copy):removed".to_string()),
        "{kinds:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_one_removal_refuses_a_wildcard_or_list_id_without_sending_and_removes_a_plain_one() {
    let fake = Fake::default();
    let place = ("lib".to_string(), "alice".to_string());
    let id = fake.lock().apply(&place, "http://x/a.jpg");
    let pace = Pace {
        qps: 100,
        read_qps: 100,
        remove_qps: 100,
        scope: Scope::Action,
        max_attempts: 3,
        seed: Some(3),
        settle_after: Duration::from_secs(11),
    };
    let caller = Caller::new(pace, Arc::new(Stop::default()));
    for bad in ["ALL", " all ", "a,b", ""] {
        let refused = crate::backend::remove_by_id(&fake, &caller, &place, bad).await;
        assert!(
            matches!(&refused, Err(Halt::Refused(e)) if e.code() == "UnsafeId"),
            "{bad:?}"
        );
    }
    assert_eq!(fake.lock().removes, 0, "nothing is sent for an unsafe id");
    let removed = crate::backend::remove_by_id(&fake, &caller, &place, &id).await;
    assert!(matches!(removed, Ok(crate::caller::Removal::Removed)));
    assert_eq!(fake.lock().removes, 1);
    assert_eq!(fake.lock().copies("http://x/a.jpg"), 0);
}

fn work(url: &str) -> ImageWork {
    ImageWork {
        line: 2,
        image: crate::image::Image::at(url.to_string()),
        key: 0,
        unsettled: false,
        sha256: None,
        was_invalid: false,
        was_reported: false,
    }
}

fn held(id: &str, url: &str) -> Held {
    Held {
        id: id.to_string(),
        image_url: Some(url.to_string()),
    }
}

#[test]
fn what_a_place_was_read_to_hold_is_kept_per_place_known_by_locator_and_replaced_by_a_new_read() {
    use crate::pipeline::removal::Reads;
    let alice = ("lib".to_string(), "alice".to_string());
    let bob = ("lib".to_string(), "bob".to_string());
    let mut reads: Reads<(String, String)> = Reads::default();
    assert_eq!(reads.count::<Fake>(&alice), None, "not read yet");
    reads.put::<Fake>(
        &alice,
        vec![
            held("f1", "http://x/a.jpg?Signature=s"),
            held("f2", "http://x/b.jpg"),
        ],
    );
    assert_eq!(reads.count::<Fake>(&alice), Some(2));
    assert_eq!(reads.count::<Fake>(&bob), None);
    // Known by locator: a listed link's signature does not make another image.
    assert_eq!(
        reads
            .known::<Fake>(&alice)
            .get("http://x/a.jpg")
            .map(String::as_str),
        Some("f1")
    );
    reads.put::<Fake>(&alice, vec![held("f2", "http://x/b.jpg")]);
    assert_eq!(
        reads.count::<Fake>(&alice),
        Some(1),
        "a second read replaces the first"
    );
}

#[test]
fn an_image_whose_recorded_id_left_the_server_after_a_late_removal_is_sent_again() {
    use crate::pipeline::removal::{Reads, vanished};
    let place = ("lib".to_string(), "alice".to_string());
    let recheck = crate::plan::Recheck {
        keep: vec![
            crate::plan::Kept::of(crate::image::Image::at("http://x/a.jpg"), "f1"),
            crate::plan::Kept::of(crate::image::Image::at("http://x/b.jpg"), "f2"),
        ],
        settles: true,
        converge_only: false,
        restore: vec![work("http://x/a.jpg"), work("http://x/b.jpg")],
    };
    let mut reads: Reads<(String, String)> = Reads::default();
    assert!(
        vanished::<Fake>(&recheck, &reads, &place).is_empty(),
        "a place not read decides nothing"
    );
    // f2 is gone (a removal with an unknown outcome landed late); f1 is still there.
    reads.put::<Fake>(&place, vec![held("f1", "http://x/a.jpg")]);
    let again = vanished::<Fake>(&recheck, &reads, &place);
    assert_eq!(again, [work("http://x/b.jpg")]);
}

#[test]
fn a_refusal_for_a_full_person_is_told_apart_from_other_refusals() {
    use crate::pipeline::removal::is_full;
    assert!(is_full(&ApiError::new(
        Some(400),
        "FaceLimitExceeded",
        "the person holds 10 faces"
    )));
    assert!(!is_full(&ApiError::new(
        Some(400),
        "InvalidParameter.ImageUrl",
        "no face"
    )));
}
