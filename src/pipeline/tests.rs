//! The worker against an in-memory fake service behind the target seam, in virtual time: the
//! exactly-once rules (look-up after an unknown outcome, settling `pending` left by a crash,
//! waiting out an unanswered attempt) without a subprocess or a socket.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::{ApiError, ErrorClass};
use crate::caller::{Caller, Halt, Pace};
use crate::ledger::{self, Appender, Entry, ImageRecord, Status, View};
use crate::pacer::Scope;
use crate::pipeline::recorder;
use crate::pipeline::worker::{Context, process};
use crate::plan::{ImageWork, PersonJob};
use crate::report::ProgressMode;
use crate::stop::Stop;
use crate::target::{Held, Library, Made, Person, Placed, Target, TargetKind, Tidied};

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

impl Target for Fake {
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

    async fn remove(&self, _place: &Self::Place, _id: &str) -> Result<(), ApiError> {
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
                image_url: url.to_string(),
                image_key: None,
                key: 0,
                unsettled: needs_lookup,
            })
            .collect(),
    }
}

/// Runs one person's job through the worker against `fake`; returns the ledger's records.
async fn run(fake: &Fake, job: PersonJob) -> Vec<(Status, Option<String>, bool)> {
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
    let context = Context {
        target: fake.clone(),
        caller,
        events: events.clone(),
        run_id: "r".into(),
        libraries: Default::default(),
    };
    process(&context, job).await;
    drop(context);
    let (_, _, failure) = recorder.finish(events);
    assert!(failure.is_none());
    let mut out = Vec::new();
    ledger::scan(&path, false, |entry| {
        if let Entry::Image(image) = entry {
            out.push((
                image.status,
                image.face_id().map(str::to_string),
                image.view.recovered == Some(true),
            ));
        }
    })
    .unwrap();
    out
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
