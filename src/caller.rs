//! The one caller: a paced, retried, classified attempt in three shapes — `read` (safe to
//! repeat), `create_once` (not idempotent: after an unknown outcome, a look-up decides before it
//! is sent again) and `remove_once` (a removal that may already have happened) — and the one
//! type that says why a call stopped ([`Halt`]). Every command that sends requests calls
//! through here: a permit before every attempt (retries and look-ups included), the retry
//! policy between attempts, the command's stop token around every wait.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::api::{ApiError, ErrorClass};
use crate::clock::{self, Jitter};
use crate::exit::Exit;

use crate::pacer::{Budgets, Pacer, Scope};
use crate::retry::{Policy, Verdict};
use crate::stop::Stop;

/// Why a call ended without succeeding.
#[derive(Debug)]
pub enum Halt {
    /// The command is stopping (signal, deadline, a run-fatal answer elsewhere).
    Stopped,
    /// A run-fatal answer; the stop keeps the error (`Stop::take_fatal`).
    Fatal,
    /// The service refused this call for a reason retrying cannot fix.
    Refused(ApiError),
    /// Attempts ran out.
    Exhausted(ApiError),
}

impl Halt {
    /// The exit of a command whose one operation ended this way.
    pub fn exit(&self) -> Exit {
        match self {
            Halt::Stopped => Exit::Interrupted,
            Halt::Fatal => Exit::ServiceFatal,
            Halt::Refused(_) => Exit::Usage,
            Halt::Exhausted(_) => Exit::StoppedEarly,
        }
    }

    /// The service's error, when there is one.
    pub fn error(&self) -> Option<&ApiError> {
        match self {
            Halt::Refused(e) | Halt::Exhausted(e) => Some(e),
            Halt::Stopped | Halt::Fatal => None,
        }
    }
}

/// The kinds of operation, each with its own budget (api-notes §9: limits are per operation).
pub use crate::pacer::ActionClass as Action;

/// What the caller counted, for progress, summaries and metrics.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: AtomicU64,
    pub creates: AtomicU64,
    pub reads: AtomicU64,
    pub removes: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub lookups: AtomicU64,
    /// Creates sent again with a newly signed image link after the service could not download
    /// the image through the one it was sent.
    pub relinked: AtomicU64,
}

impl Tally {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A create that succeeded, or was found applied after an unknown outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    /// Found by a look-up, not answered.
    pub recovered: bool,
    pub attempts: u32,
    /// An attempt got no answer, a look-up found nothing, and the image was sent again: the
    /// first attempt may still land later (a late copy).
    pub resent: bool,
}

/// How an object came to be gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// The service refused the removal (it does not know the object), no attempt of this call
    /// may have been applied, and a look-up agreed it is gone: removed before this call.
    AlreadyGone,
    /// An attempt of this call got no answer (or a 5xx) and a look-up showed the object gone:
    /// removed by this call, its answer lost.
    GoneAfterLookup,
}

impl Removal {
    pub fn reason(self) -> &'static str {
        match self {
            Removal::Removed => "unregistered",
            Removal::AlreadyGone => "not found on the server (already removed)",
            Removal::GoneAfterLookup => "gone from the server after an unknown outcome",
        }
    }
}

/// Consecutive attempts that got no answer, with nothing answered before, after which the
/// endpoint counts as unreachable and the command stops.
pub const UNREACHABLE_AFTER: u64 = 24;

/// An attempt that got no answer at all: it could not connect, or its connection timed out or
/// was reset before a status line came back (a body that broke off was an answer).
fn unanswered(error: &ApiError) -> bool {
    matches!(
        error.code(),
        "ConnectFailed" | "Timeout" | "ConnectionReset"
    ) && !error.got_an_answer()
}

/// How the caller paces and retries.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Budgets per second of creates, reads and removals (0 = unlimited).
    pub qps: u32,
    pub read_qps: u32,
    pub remove_qps: u32,
    /// `Action`: each operation has its own budget; `Account`: one budget for every call.
    pub scope: Scope,
    pub max_attempts: u32,
    pub seed: Option<u64>,
    /// How long after sending an attempt that got no answer it may still be in flight on our
    /// side: the client's timeout and a margin. A look-up deciding whether to send again waits
    /// until then.
    pub settle_after: Duration,
}

pub struct Caller {
    /// Which pacer each call takes its permit from.
    budgets: Budgets,
    policy: Policy,
    jitter: Jitter,
    stop: Arc<Stop>,
    tally: Arc<Tally>,
    settle_after: Duration,
    /// Attempts in a row that got no answer; `u64::MAX` once anything was answered.
    unconnected: AtomicU64,
}

impl Caller {
    pub fn new(pace: Pace, stop: Arc<Stop>) -> Caller {
        Caller {
            budgets: Budgets::new(pace.scope, pace.qps, pace.read_qps, pace.remove_qps),
            policy: Policy::new(pace.max_attempts.max(1)),
            jitter: Jitter::from_seed(pace.seed),
            stop,
            tally: Arc::new(Tally::default()),
            settle_after: pace.settle_after,
            unconnected: AtomicU64::new(0),
        }
    }

    /// A process that used the same budgets may have sent up to now (a run on the same ledger
    /// that was killed): every operation's first request waits until a window after now, so no
    /// sliding second holds its requests and ours together.
    pub fn assume_busy_window(&self) {
        self.budgets.assume_full_window(clock::instant());
    }

    pub fn stop(&self) -> &Arc<Stop> {
        &self.stop
    }

    pub fn tally(&self) -> &Arc<Tally> {
        &self.tally
    }

    /// A call that is safe to repeat (a listing): retried on any failure retrying can help.
    pub async fn read<T, F, Fut>(&self, name: &'static str, mut attempt: F) -> Result<T, Halt>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (result, sent) = self
                .send_timed(Action::Read, name, attempts, attempt())
                .await?;
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            self.after_failure(Action::Read, name, &error, attempts, sent)
                .await?;
        }
    }

    /// A create that is not idempotent, made exactly once: after an unknown outcome, `look` says
    /// whether it was applied (and under which id) before it is sent again. The look-up waits
    /// until the unanswered attempt can no longer be in flight on our side.
    pub async fn create_once<C, CF, L, LF>(
        &self,
        name: &'static str,
        mut create: C,
        mut look: L,
    ) -> Result<Created, Halt>
    where
        C: FnMut() -> CF,
        CF: Future<Output = Result<String, ApiError>>,
        L: FnMut() -> LF,
        LF: Future<Output = Result<Option<String>, Halt>>,
    {
        let mut attempts = 0u32;
        let mut unknown_since: Option<tokio::time::Instant> = None;
        // The attempt whose outcome is unknown got no answer at all (not an answered 5xx).
        let mut unanswered = false;
        let mut resent = false;
        // The service could not download through a link signed for the attempt: once per
        // create, the next attempt (a link signed anew) goes out before the refusal counts.
        let mut relinked = false;
        loop {
            if let Some(sent) = unknown_since.take() {
                self.settle(sent).await?;
                Tally::add(&self.tally.lookups);
                if let Some(id) = look().await? {
                    return Ok(Created {
                        id,
                        recovered: true,
                        attempts,
                        resent,
                    });
                }
                // An answered attempt is done on the server: only an unanswered one may still
                // land after this look-up found nothing.
                resent |= unanswered;
            }
            attempts += 1;
            let (result, sent) = self
                .send_timed(Action::Create, name, attempts, create())
                .await?;
            let error = match result {
                Ok(id) => {
                    return Ok(Created {
                        id,
                        recovered: false,
                        attempts,
                        resent,
                    });
                }
                Err(error) => error,
            };
            if error.refused_signed_link() && !relinked {
                relinked = true;
                Tally::add(&self.tally.relinked);
                tracing::info!(
                    action = name,
                    code = error.code(),
                    message = error.message(),
                    "the service could not download the image through the link signed for it; \
                     sending it once more with a link signed anew"
                );
                continue;
            }
            if self
                .after_failure(Action::Create, name, &error, attempts, sent)
                .await?
            {
                // Answered (a 5xx): done on the server. No answer: it may still be in flight.
                unanswered = error.status().is_none();
                unknown_since = Some(match error.status() {
                    Some(_) => clock::instant()
                        .checked_sub(self.settle_after)
                        .unwrap_or_else(clock::instant),
                    None => sent,
                });
            }
        }
    }

    /// Removes one object exactly as asked. `still_there` reads the server: after an unknown
    /// outcome, and after any refusal (a removal that already happened is refused as not
    /// found), it decides whether the object is gone.
    pub async fn remove_once<R, RF, L, LF>(
        &self,
        name: &'static str,
        mut remove: R,
        mut still_there: L,
    ) -> Result<Removal, Halt>
    where
        R: FnMut() -> RF,
        RF: Future<Output = Result<(), ApiError>>,
        L: FnMut() -> LF,
        LF: Future<Output = Result<bool, Halt>>,
    {
        let mut attempts = 0u32;
        // An earlier attempt of ours may have been applied (no answer, or a 5xx): a later
        // "not found" is then most likely our own removal, not one made before this call.
        let mut ours_may_have_applied = false;
        loop {
            attempts += 1;
            let (result, sent) = self
                .send_timed(Action::Remove, name, attempts, remove())
                .await?;
            let error = match result {
                Ok(()) => return Ok(Removal::Removed),
                Err(error) => error,
            };
            if error.class() == ErrorClass::RowRejected {
                Tally::add(&self.tally.lookups);
                return match still_there().await? {
                    false if ours_may_have_applied => Ok(Removal::GoneAfterLookup),
                    false => Ok(Removal::AlreadyGone),
                    true => Err(Halt::Refused(error)),
                };
            }
            if self
                .after_failure(Action::Remove, name, &error, attempts, sent)
                .await?
            {
                ours_may_have_applied = true;
                if error.status().is_none() {
                    self.settle(sent).await?;
                }
                Tally::add(&self.tally.lookups);
                if !still_there().await? {
                    return Ok(Removal::GoneAfterLookup);
                }
            }
        }
    }

    /// One paced attempt (`Halt::Stopped` when the command stopped before it left), and when it
    /// really left: after its rate permit, however long that took. An unanswered attempt may be
    /// in flight until its timeout after *that* time, so the look-up that settles it counts
    /// from there; a throttling answer is judged by it too (see `Pacer::throttled`).
    async fn send_timed<T>(
        &self,
        action: Action,
        name: &'static str,
        attempt: u32,
        call: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<(Result<T, ApiError>, tokio::time::Instant), Halt> {
        let pacer = self.pacer(action, name);
        if !pacer.acquire_or_cancel(self.stop.token()).await {
            return Err(Halt::Stopped);
        }
        Tally::add(&self.tally.requests);
        Tally::add(match action {
            Action::Create => &self.tally.creates,
            Action::Read => &self.tally.reads,
            Action::Remove => &self.tally.removes,
        });
        let started = clock::instant();
        let result = call.await;
        let latency_ms = started.elapsed().as_millis() as u64;
        self.watch_reachability(&result);
        match &result {
            Ok(_) => tracing::debug!(action = name, attempt, latency_ms, "ok"),
            Err(e) => tracing::debug!(
                action = name,
                attempt,
                latency_ms,
                code = e.code(),
                status = e.status(),
                "failed"
            ),
        }
        Ok((result, started))
    }

    /// Stops the command when nothing has ever answered and [`UNREACHABLE_AFTER`] attempts in a
    /// row got no answer (no connection, or one that timed out or was reset before any
    /// answer): retrying a dead endpoint, or a gateway that accepts and never answers, is not
    /// "resumable, fine".
    fn watch_reachability<T>(&self, result: &Result<T, ApiError>) {
        let unconnected = matches!(result, Err(e) if unanswered(e));
        if !unconnected {
            self.unconnected.store(u64::MAX, Ordering::Relaxed);
            return;
        }
        let before = self
            .unconnected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n != u64::MAX).then(|| n + 1)
            });
        if let (Ok(n), Err(error)) = (before, result)
            && n + 1 >= UNREACHABLE_AFTER
        {
            self.stop.unreachable(error.clone());
        }
    }

    /// True while nothing this caller sent was ever answered and some attempt failed to
    /// connect.
    fn never_connected(&self) -> bool {
        let n = self.unconnected.load(Ordering::Relaxed);
        n != u64::MAX && n > 0
    }

    /// The pacer of operation `name` (of class `action`).
    fn pacer(&self, action: Action, name: &'static str) -> Arc<Pacer> {
        self.budgets.pacer(action, name)
    }

    /// Judges a failed attempt and waits before the next; `Ok(true)` when the attempt's outcome
    /// is unknown (it may have been applied).
    async fn after_failure(
        &self,
        action: Action,
        name: &'static str,
        error: &ApiError,
        attempts: u32,
        sent: tokio::time::Instant,
    ) -> Result<bool, Halt> {
        let verdict = self.policy.judge(
            error.class(),
            attempts,
            error.retry_after(),
            self.jitter.fraction(),
        );
        let (after, unknown) = match verdict {
            Verdict::Fatal => {
                self.stop.fatal(error.clone());
                return Err(Halt::Fatal);
            }
            Verdict::Refused => return Err(Halt::Refused(error.clone())),
            // Retries ran out and nothing this run sent was ever answered: the endpoint is
            // unreachable however few attempts that took (one row to add is no less an
            // outage than a thousand), not "resumable".
            Verdict::Exhausted if unanswered(error) && self.never_connected() => {
                self.stop.unreachable(error.clone());
                return Err(Halt::Stopped);
            }
            Verdict::Exhausted => {
                return Err(if self.stop.is_stopping() {
                    Halt::Stopped
                } else {
                    Halt::Exhausted(error.clone())
                });
            }
            Verdict::Retry {
                after,
                throttled,
                unknown,
            } => {
                if throttled {
                    Tally::add(&self.tally.throttled);
                    self.pacer(action, name)
                        .throttled(error.retry_after(), sent);
                }
                (after, unknown)
            }
        };
        tracing::debug!(
            code = error.code(),
            attempts,
            delay_ms = after.as_millis() as u64,
            "retrying"
        );
        Tally::add(&self.tally.retries);
        if self.stop.sleep(after).await {
            Ok(unknown)
        } else {
            Err(Halt::Stopped)
        }
    }

    /// Waits until an attempt sent at Unix second `since` (a `pending` record found at start-up)
    /// can no longer be in flight: a look-up at once could miss a request the server is still
    /// working on, and send the image a second time.
    pub async fn settle_since(&self, since: u32) -> Result<(), Halt> {
        if since == 0 {
            return Ok(());
        }
        let now = clock::now_utc().unix_timestamp();
        let until = i64::from(since) + self.settle_after.as_secs() as i64 + 1;
        if until > now
            && !self
                .stop
                .sleep(Duration::from_secs((until - now) as u64))
                .await
        {
            return Err(Halt::Stopped);
        }
        Ok(())
    }

    /// Waits until an attempt sent at `sent` could no longer be in flight on our side: the
    /// pause before a run reads its persons again for requests that landed late.
    pub async fn settle_after_sent(&self, sent: tokio::time::Instant) -> Result<(), Halt> {
        self.settle(sent).await
    }

    /// Waits until an attempt sent at `sent` can no longer be in flight on our side.
    async fn settle(&self, sent: tokio::time::Instant) -> Result<(), Halt> {
        let until = sent + self.settle_after;
        let now = clock::instant();
        if until > now && !self.stop.sleep(until - now).await {
            return Err(Halt::Stopped);
        }
        Ok(())
    }
}

/// A FaceId, sample, person or library the server does not know: what a removal that already
/// happened answers. Any such code counts, whatever its exact spelling.
pub fn is_not_found(error: &ApiError) -> bool {
    error.class() == ErrorClass::RowRejected
        && (error.code().contains("NotFound") || error.code().contains("NotExist"))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn caller(max_attempts: u32) -> Caller {
        let pace = Pace {
            qps: 0,
            read_qps: 0,
            remove_qps: 0,
            scope: Scope::Action,
            max_attempts,
            seed: Some(1),
            settle_after: Duration::from_secs(11),
        };
        Caller::new(pace, Arc::new(Stop::default()))
    }

    fn unknown() -> ApiError {
        ApiError::with_class(ErrorClass::OutcomeUnknown, None, "Timeout", "no answer")
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_create_is_looked_up_only_after_it_can_no_longer_be_in_flight() {
        let c = caller(5);
        let applied = Mutex::new(None::<tokio::time::Instant>);
        let start = clock::instant();
        let created = c
            .create_once(
                "Create",
                || async {
                    // Applied on the server, but the answer never comes.
                    *applied.lock().unwrap() = Some(clock::instant());
                    Err::<String, _>(unknown())
                },
                || async {
                    let looked = clock::instant();
                    assert!(
                        looked - start >= Duration::from_secs(11),
                        "looked too early"
                    );
                    Ok(Some("id-1".to_string()))
                },
            )
            .await
            .unwrap();
        assert_eq!(
            created,
            Created {
                id: "id-1".into(),
                recovered: true,
                attempts: 1,
                resent: false,
            }
        );
        assert_eq!(Tally::get(&c.tally().lookups), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_the_rate_permit_does_not_shorten_the_settling_of_an_unanswered_create() {
        let pace = Pace {
            qps: 10,
            read_qps: 10,
            remove_qps: 10,
            scope: Scope::Action,
            max_attempts: 5,
            seed: Some(1),
            settle_after: Duration::from_secs(2),
        };
        let c = Caller::new(pace, Arc::new(Stop::default()));
        // The first create's permit comes only after a second (a restart after a kill).
        c.assume_busy_window();
        let sent = Mutex::new(None::<tokio::time::Instant>);
        c.create_once(
            "Create",
            || async {
                sent.lock().unwrap().get_or_insert_with(clock::instant);
                Err::<String, _>(unknown())
            },
            || async {
                let left = sent.lock().unwrap().unwrap();
                assert!(
                    clock::instant() - left >= Duration::from_secs(2),
                    "looked before the attempt could no longer be in flight"
                );
                Ok(Some("id-1".to_string()))
            },
        )
        .await
        .unwrap();
        assert_eq!(Tally::get(&c.tally().lookups), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_killed_run_every_operation_s_first_request_waits_out_one_window() {
        for scope in [Scope::Action, Scope::Account] {
            let pace = Pace {
                qps: 10,
                read_qps: 10,
                remove_qps: 10,
                scope,
                max_attempts: 1,
                seed: Some(1),
                settle_after: Duration::from_secs(11),
            };
            let c = Caller::new(pace, Arc::new(Stop::default()));
            // One operation already has its pacer, the others are made later.
            c.read("ListA", || async { Ok(()) }).await.unwrap();
            clock::sleep(Duration::from_secs(2)).await;
            let start = clock::instant();
            c.assume_busy_window();
            for name in ["ListA", "ListB"] {
                c.read(name, || async { Ok(()) }).await.unwrap();
                let waited = clock::instant() - start;
                assert!(
                    waited >= Duration::from_secs(1),
                    "{scope:?} {name}: {waited:?}"
                );
                assert!(
                    waited < Duration::from_millis(1200),
                    "{scope:?} {name}: {waited:?}"
                );
            }
            let made = c
                .create_once(
                    "Create",
                    || async { Ok("id".to_string()) },
                    || async { Ok(None) },
                )
                .await
                .unwrap();
            assert_eq!(made.id, "id");
            assert!(clock::instant() - start < Duration::from_millis(1300));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_the_look_up_does_not_find_is_sent_again_once() {
        let c = caller(5);
        let sent = AtomicU64::new(0);
        let created = c
            .create_once(
                "Create",
                || async {
                    match sent.fetch_add(1, Ordering::SeqCst) {
                        0 => Err(ApiError::new(Some(500), "InternalError", "x")),
                        _ => Ok("id-2".to_string()),
                    }
                },
                || async { Ok(None) },
            )
            .await
            .unwrap();
        assert_eq!((created.id.as_str(), created.attempts), ("id-2", 2));
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_removal_of_an_object_already_gone_counts_as_removed() {
        let c = caller(3);
        let gone = c
            .remove_once(
                "Remove",
                || async {
                    Err(ApiError::new(
                        Some(404),
                        "InvalidParameter.FaceNotFound",
                        "no",
                    ))
                },
                || async { Ok(false) },
            )
            .await
            .unwrap();
        assert_eq!(gone, Removal::AlreadyGone);
        let refused = c
            .remove_once(
                "Remove",
                || async { Err(ApiError::new(Some(400), "InvalidParameter", "no")) },
                || async { Ok(true) },
            )
            .await;
        assert!(matches!(refused, Err(Halt::Refused(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_of_an_object_gone_before_the_call_is_already_gone_whatever_its_code() {
        // ICE says only `InvalidParameter` ("… does not exist"): the look-up decides.
        let c = caller(3);
        let gone = c
            .remove_once(
                "DeleteRecognitionLib",
                || async {
                    Err(ApiError::new(
                        Some(400),
                        "InvalidParameter",
                        "does not exist",
                    ))
                },
                || async { Ok(false) },
            )
            .await
            .unwrap();
        assert_eq!(gone, Removal::AlreadyGone);
    }

    #[tokio::test(start_paused = true)]
    async fn a_not_found_after_an_unanswered_attempt_is_this_call_s_own_removal() {
        let c = caller(5);
        let sent = AtomicU64::new(0);
        let looked = AtomicU64::new(0);
        let gone = c
            .remove_once(
                "Remove",
                || async {
                    match sent.fetch_add(1, Ordering::SeqCst) {
                        0 => Err(unknown()),
                        _ => Err(ApiError::new(
                            Some(404),
                            "InvalidParameter.FaceNotFound",
                            "no",
                        )),
                    }
                },
                // The first look-up still sees it (it landed late), the second does not.
                || async { Ok(looked.fetch_add(1, Ordering::SeqCst) == 0) },
            )
            .await
            .unwrap();
        assert_eq!(gone, Removal::GoneAfterLookup);
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_a_call_before_its_next_attempt_is_sent() {
        let c = caller(100);
        let sent = AtomicU64::new(0);
        let stop = c.stop().clone();
        let result: Result<(), Halt> = c
            .read("Read", || {
                if sent.fetch_add(1, Ordering::SeqCst) == 2 {
                    stop.stop(crate::stop::StopReason::Interrupted);
                }
                async { Err(ApiError::new(Some(503), "ServiceUnavailable", "x")) }
            })
            .await;
        assert!(matches!(result, Err(Halt::Stopped)));
        assert_eq!(sent.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn only_refusals_that_say_not_found_count_as_already_removed() {
        let gone = ApiError::new(Some(404), "InvalidParameter.FaceNotFound", "no such face");
        assert!(is_not_found(&gone));
        let bad = ApiError::new(Some(400), "InvalidParameter.FaceId", "bad id");
        assert!(!is_not_found(&bad));
        let flaky = ApiError::new(Some(500), "InternalError", "NotFound in message only");
        assert!(!is_not_found(&flaky));
    }
}
