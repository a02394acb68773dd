//! The recorder: the one writer of the ledger, owner of the counters and the progress display.
//!
//! Workers send events over a channel. The recorder writes whatever has queued up as one batch,
//! syncs it once (group commit), and only then answers the workers waiting on a `pending` record
//! and counts outcomes as done. Interleaved writes are impossible by construction.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::ledger::{Appender, ImageRecord, LedgerError, RunRecord, Status, encode};
use crate::report::{Figures, Progress, ProgressMode};

/// The largest batch written and synced at once.
const MAX_BATCH: usize = 4096;
const TICK: Duration = Duration::from_millis(500);

pub(crate) enum Event {
    /// Must be durable before the request is sent: the worker waits for the answer.
    Pending {
        record: ImageRecord,
        durable: oneshot::Sender<bool>,
    },
    /// A final word on an image (registered, failed, invalid, skipped).
    Outcome(ImageRecord),
    Run(RunRecord),
    Retry,
    Throttled,
    Lookup,
    /// Images that will not be finished in this run.
    Left(u64),
}

#[derive(Clone)]
pub(crate) struct Events(Sender<Event>);

impl Events {
    pub(crate) fn send(&self, event: Event) {
        // A send fails only once the recorder has stopped, after the run's end: nothing to do.
        let _ = self.0.send(event);
    }

    /// Records `pending` and waits until it is on stable storage. False: the ledger cannot be
    /// written, so the request must not be sent.
    pub(crate) async fn pending(&self, record: ImageRecord) -> bool {
        let (tx, rx) = oneshot::channel();
        if self
            .0
            .send(Event::Pending {
                record,
                durable: tx,
            })
            .is_err()
        {
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
    on_failure: impl Fn() + Send + 'static,
) -> (Events, Recorder) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("ledger-recorder".into())
        .spawn(move || {
            let mut progress = Progress::new(mode, total);
            let figures = Figures {
                total,
                ..Figures::default()
            };
            let result = record(rx, appender, figures, &mut progress, on_failure);
            progress.finish();
            result
        })
        .expect("spawning the recorder thread");
    (Events(tx), Recorder { handle })
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

fn record(
    rx: Receiver<Event>,
    mut appender: Appender,
    mut figures: Figures,
    progress: &mut Progress,
    on_failure: impl Fn(),
) -> (Figures, Appender, Option<LedgerError>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut waiting: Vec<oneshot::Sender<bool>> = Vec::new();
    let mut done_in_batch: Vec<Counted> = Vec::new();
    let mut failure: Option<LedgerError> = None;
    loop {
        let first = match rx.recv_timeout(TICK) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                progress.update(&figures);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        buf.clear();
        for event in std::iter::once(first).chain(rx.try_iter().take(MAX_BATCH)) {
            match event {
                Event::Pending { record, durable } => {
                    encode(&record, &mut buf);
                    waiting.push(durable);
                }
                Event::Outcome(record) => {
                    encode(&record, &mut buf);
                    done_in_batch.push(Counted::of(&record));
                }
                Event::Run(record) => encode(&record, &mut buf),
                Event::Retry => figures.retries += 1,
                Event::Throttled => figures.throttled += 1,
                Event::Lookup => figures.lookups += 1,
                Event::Left(n) => figures.left += n,
            }
        }
        let written = failure.is_none() && write_batch(&mut appender, &buf, &mut failure);
        if !written && failure.is_some() && !buf.is_empty() {
            on_failure();
        }
        for tx in waiting.drain(..) {
            let _ = tx.send(written);
        }
        if written {
            for counted in done_in_batch.drain(..) {
                counted.add_to(&mut figures);
            }
        } else {
            done_in_batch.clear();
        }
        progress.update(&figures);
    }
    (figures, appender, failure)
}

/// How a final record counts in the figures.
enum Counted {
    Registered,
    Recovered,
    Failed,
    /// Invalid and skipped rows are counted by the plan; a retryable failure by `Event::Left`.
    Elsewhere,
}

impl Counted {
    fn of(record: &ImageRecord) -> Counted {
        match record.status {
            Some(Status::Registered) if record.recovered == Some(true) => Counted::Recovered,
            Some(Status::Registered) => Counted::Registered,
            Some(Status::Failed) if record.retryable != Some(true) => Counted::Failed,
            _ => Counted::Elsewhere,
        }
    }

    fn add_to(self, figures: &mut Figures) {
        match self {
            Counted::Registered => figures.registered_now += 1,
            Counted::Recovered => figures.recovered += 1,
            Counted::Failed => figures.failed_now += 1,
            Counted::Elsewhere => {}
        }
    }
}

fn write_batch(appender: &mut Appender, buf: &[u8], failure: &mut Option<LedgerError>) -> bool {
    if buf.is_empty() {
        return true;
    }
    match appender.append(buf).and_then(|()| appender.sync()) {
        Ok(()) => true,
        Err(e) => {
            *failure = Some(e);
            false
        }
    }
}
