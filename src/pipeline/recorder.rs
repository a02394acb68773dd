//! The recorder: the one writer of the ledger, owner of the counters and the progress display.
//!
//! Workers send events over a channel. The recorder writes whatever has queued up as one batch,
//! syncs it once (group commit), and only then answers the workers waiting on a `pending` record
//! and counts outcomes as done. Interleaved writes are impossible by construction.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::caller::Tally;
use crate::image::Image;
use crate::ledger::{Appender, ImageRecord, LedgerError, Record, Status, encode};
use crate::plan::Rejected;
use crate::report::{Figures, Progress, ProgressMode};

/// The largest batch written and synced at once.
const MAX_BATCH: usize = 4096;
/// How often the recorder looks at the queue when nothing wakes it.
const BEAT: Duration = Duration::from_millis(100);
/// How long outcome lines may wait for a sync that a `pending` line would have brought anyway.
const SYNC_OUTCOMES_WITHIN: Duration = Duration::from_millis(100);

pub(crate) enum Event {
    /// Must be durable before any of these requests is sent: the worker waits for the answer.
    Pending {
        records: Vec<Record>,
        durable: oneshot::Sender<bool>,
    },
    /// A final word on an image (registered, failed, invalid, skipped, removed).
    Outcome(ImageRecord),
    /// Any other line: a run's start, an ICE library or entity created or deleted.
    Record(Record),
    /// A line that counts in the figures in its own way (see [`Note`]).
    Noted(Record, Note),
    /// Images that will not be finished in this run.
    Left(u64),
    /// Removals (a sync's drops, unsettled images) that will not be finished in this run.
    RemovalsLeft(u64),
}

/// The workers' side. Outcomes and counters go into a shared queue that the recorder drains on
/// its own beat (at least every `BEAT`); only `pending`, which a worker waits on, wakes it. One
/// wake-up per person instead of one per image.
#[derive(Clone)]
pub(crate) struct Events {
    urgent: Sender<Event>,
    queued: Arc<Mutex<Vec<Event>>>,
}

impl Events {
    pub(crate) fn send(&self, event: Event) {
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    /// Records `pending` for `records` and waits until they are on stable storage. False: the
    /// ledger cannot be written, so none of these requests may be sent.
    pub(crate) async fn pending(&self, records: Vec<ImageRecord>) -> bool {
        self.durable(records.into_iter().map(Record::Image).collect())
            .await
    }

    /// Writes `records` and waits until they are on stable storage (a `removing` record before
    /// its removal is sent). False: the ledger cannot be written.
    pub(crate) async fn durable(&self, records: Vec<Record>) -> bool {
        let (tx, rx) = oneshot::channel();
        let event = Event::Pending {
            records,
            durable: tx,
        };
        // A send fails only once the recorder has stopped, after the run's end.
        if self.urgent.send(event).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

pub(crate) struct Recorder {
    handle: JoinHandle<(Figures, Appender, Option<LedgerError>)>,
}

pub(crate) fn start(
    appender: Appender,
    mode: ProgressMode,
    total: u64,
    tally: Arc<Tally>,
    on_failure: impl Fn() + Send + 'static,
) -> (Events, Recorder) {
    let (tx, rx) = std::sync::mpsc::channel();
    let queued = Arc::new(Mutex::new(Vec::new()));
    let shared = queued.clone();
    let handle = std::thread::Builder::new()
        .name("ledger-recorder".into())
        .spawn(move || {
            let mut progress = Progress::new(mode, total);
            let figures = Figures {
                total,
                ..Figures::default()
            };
            let result = record(
                rx,
                &shared,
                appender,
                figures,
                &tally,
                &mut progress,
                on_failure,
            );
            progress.finish();
            result
        })
        .expect("spawning the recorder thread");
    (Events { urgent: tx, queued }, Recorder { handle })
}

impl Recorder {
    /// Waits until every sender is gone and everything is written; returns the figures and
    /// the ledger's handle, for the run's closing record.
    pub(crate) fn finish(self, events: Events) -> (Figures, Appender, Option<LedgerError>) {
        drop(events);
        match self.handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Lines waiting to be synced, and what they count for once they are.
#[derive(Default)]
struct Unsynced {
    waiting: Vec<oneshot::Sender<bool>>,
    counted: Vec<Counted>,
    since: Option<Instant>,
}

fn record(
    rx: Receiver<Event>,
    queued: &Mutex<Vec<Event>>,
    mut appender: Appender,
    mut figures: Figures,
    tally: &Tally,
    progress: &mut Progress,
    on_failure: impl Fn(),
) -> (Figures, Appender, Option<LedgerError>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut unsynced = Unsynced::default();
    let mut failure: Option<LedgerError> = None;
    let mut urgent = Vec::new();
    let mut open = true;
    while open {
        let timeout = match unsynced.since {
            Some(since) => BEAT.min(SYNC_OUTCOMES_WITHIN.saturating_sub(since.elapsed())),
            None => BEAT,
        };
        buf.clear();
        match rx.recv_timeout(timeout) {
            Ok(first) => urgent.extend(std::iter::once(first).chain(rx.try_iter().take(MAX_BATCH))),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        // Queued events first: nothing urgent can depend on an event queued after it.
        let drained = std::mem::take(&mut *queued.lock().unwrap_or_else(|p| p.into_inner()));
        for event in drained.into_iter().chain(urgent.drain(..)) {
            take(event, &mut buf, &mut unsynced, &mut figures);
        }
        if failure.is_none() && !buf.is_empty() {
            unsynced.since.get_or_insert_with(crate::clock::monotonic);
            if let Err(e) = appender.append(&buf) {
                failure = Some(e);
            }
        }
        // A worker waiting on `pending` is synced at once; outcomes alone may wait a moment and
        // share the sync (a lost `registered` line leaves its `pending`, found by a look-up).
        let due = unsynced
            .since
            .is_some_and(|s| s.elapsed() >= SYNC_OUTCOMES_WITHIN);
        if !unsynced.waiting.is_empty() || due || !open || failure.is_some() {
            sync(
                &mut appender,
                &mut unsynced,
                &mut figures,
                &mut failure,
                &on_failure,
            );
        }
        figures.retries = Tally::get(&tally.retries);
        figures.throttled = Tally::get(&tally.throttled);
        figures.lookups = Tally::get(&tally.lookups);
        progress.update(&figures);
    }
    (figures, appender, failure)
}

fn take(event: Event, buf: &mut Vec<u8>, unsynced: &mut Unsynced, figures: &mut Figures) {
    match event {
        Event::Pending { records, durable } => {
            for record in records {
                encode(&record, buf);
            }
            unsynced.waiting.push(durable);
        }
        Event::Outcome(record) => {
            unsynced.counted.push(Counted::of(&record));
            encode(&Record::Image(record), buf);
        }
        Event::Record(record) => encode(&record, buf),
        Event::Noted(record, note) => {
            unsynced.counted.push(Counted::Noted(note));
            encode(&record, buf);
        }
        Event::Left(n) => figures.left += n,
        Event::RemovalsLeft(n) => figures.removals_left += n,
    }
}

/// Syncs what was appended; answers the waiting workers and counts the outcomes as done.
fn sync(
    appender: &mut Appender,
    unsynced: &mut Unsynced,
    figures: &mut Figures,
    failure: &mut Option<LedgerError>,
    on_failure: &impl Fn(),
) {
    if unsynced.since.is_none() && unsynced.waiting.is_empty() {
        return;
    }
    if failure.is_none()
        && let Err(e) = appender.sync()
    {
        *failure = Some(e);
    }
    let durable = failure.is_none();
    if !durable {
        on_failure();
    }
    for tx in unsynced.waiting.drain(..) {
        let _ = tx.send(durable);
    }
    for counted in unsynced.counted.drain(..) {
        if durable {
            counted.add_to(figures);
        }
    }
    unsynced.since = None;
}

/// How a final record counts in the figures.
enum Counted {
    Registered,
    Recovered,
    Adopted,
    Removed,
    /// Refused for good: counted by its code, and kept for the rejects file; `true` when the
    /// service could not download the image through a link the user signed.
    Failed(Box<Rejected>, String, bool),
    /// Retries ran out (left for the next run, counted by `Event::Left`): its last code.
    Exhausted(String),
    Noted(Note),
    /// Invalid and skipped rows are counted by the plan; a retryable failure by `Event::Left`.
    Elsewhere,
}

/// How a line sent with [`Event::Noted`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// A late copy of an image removed.
    CopyRemoved,
    /// A removal the service refused while the image is still there.
    RemovalFailed,
    /// An image whose outcome was unknown, no longer in the manifest, settled by a read.
    Settled,
    /// A removal the service refused as not found, and a read agreed: gone before this run
    /// (by hand, another tool), so not counted as removed.
    AlreadyGone,
    /// An ICE entity a sync emptied, deleted (its `deleted` record).
    EntityDeleted,
}

impl Counted {
    fn of(record: &ImageRecord) -> Counted {
        match record.status {
            Status::Registered if record.recovered == Some(true) => Counted::Recovered,
            Status::Registered if record.adopted == Some(true) => Counted::Adopted,
            Status::Registered => Counted::Registered,
            Status::Removed => Counted::Removed,
            Status::Failed if record.retryable == Some(true) => {
                Counted::Exhausted(record.error_code.clone().unwrap_or_default())
            }
            Status::Failed => Counted::Failed(
                Box::new(Rejected {
                    line: record.line.unwrap_or(0),
                    category_id: record.category_id.clone(),
                    person_id: record.person_id.clone(),
                    image: Image::new(record.image_url.clone(), record.image_key.clone()),
                    status: Status::Failed,
                    reason: format!(
                        "{}: {}",
                        record.error_code.as_deref().unwrap_or("Failed"),
                        record.message.as_deref().unwrap_or("")
                    ),
                    already_recorded: true,
                    reported: true,
                }),
                record.error_code.clone().unwrap_or_else(|| "Failed".into()),
                record.link_fingerprint.is_some()
                    && crate::api::is_download_refusal(
                        record.error_code.as_deref().unwrap_or(""),
                        record.message.as_deref().unwrap_or(""),
                    ),
            ),
            _ => Counted::Elsewhere,
        }
    }

    fn add_to(self, figures: &mut Figures) {
        match self {
            Counted::Registered => figures.registered_now += 1,
            Counted::Recovered => figures.recovered += 1,
            Counted::Adopted => figures.adopted += 1,
            Counted::Removed => figures.removed_now += 1,
            Counted::Failed(row, code, signed_link) => {
                figures.failed_now += 1;
                figures.signed_links_refused += u64::from(signed_link);
                figures.failed_rows.push(*row);
                *figures.refused_codes.entry(code).or_insert(0) += 1;
            }
            Counted::Exhausted(code) => *figures.exhausted_codes.entry(code).or_insert(0) += 1,
            Counted::Noted(Note::CopyRemoved) => figures.copies_removed += 1,
            Counted::Noted(Note::RemovalFailed) => figures.removal_failed += 1,
            Counted::Noted(Note::Settled) => figures.settled += 1,
            Counted::Noted(Note::AlreadyGone) => figures.already_gone += 1,
            Counted::Noted(Note::EntityDeleted) => figures.entities_deleted += 1,
            Counted::Elsewhere => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(status: Status, url: &str) -> ImageRecord {
        let mut r = ImageRecord::new("run-1", status, "lib", "alice", url);
        if status == Status::Registered {
            r.face_id = Some(format!("id-{url}"));
        }
        if status == Status::Failed {
            r.error_code = Some("InvalidParameter".into());
        }
        r
    }

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_pending_line_is_on_disk_before_the_worker_hears_it_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let appender = Appender::open(&path, 0).unwrap();
        let (events, recorder) = start(appender, ProgressMode::Off, 1, Arc::default(), || {});
        assert!(events.pending(vec![image(Status::Pending, "u1")]).await);
        // Answered: the line is in the file already, before the run ends.
        let written = lines(&path);
        assert_eq!(written.len(), 1);
        assert_eq!(written[0]["status"], "pending");
        let (figures, _, failure) = recorder.finish(events);
        assert!(failure.is_none());
        assert_eq!(figures.registered_now, 0);
    }

    #[tokio::test]
    async fn outcomes_from_many_workers_are_written_whole_in_order_and_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let appender = Appender::open(&path, 0).unwrap();
        let (events, recorder) = start(appender, ProgressMode::Off, 5, Arc::default(), || {});
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let events = events.clone();
                std::thread::spawn(move || {
                    events.send(Event::Outcome(image(Status::Registered, &format!("r{w}"))));
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        events.send(Event::Outcome(image(Status::Failed, "f1")));
        events.send(Event::Left(2));
        let (figures, _, failure) = recorder.finish(events);
        assert!(failure.is_none());
        assert_eq!(figures.registered_now, 4);
        assert_eq!(figures.failed_now, 1);
        let written = lines(&path);
        assert_eq!(written.len(), 5, "every outcome once, each line whole");
        assert_eq!(
            written[4]["status"], "failed",
            "one worker's lines keep their order"
        );
    }
}
