//! Stopping: a signal, the `--max-duration` deadline, a run-fatal answer or an unwritable ledger
//! ends the starting of new work. One cancellation token per command: every wait — pacer
//! permits, throttle pauses, backoff sleeps, the settling delay before a look-up — ends when it
//! fires, so nothing is sent after a stop; requests already in flight finish and are recorded.

use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::api::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Interrupted,
    Deadline,
    Fatal,
    LedgerFailed,
    /// Nothing got through: every attempt failed to connect.
    Unreachable,
    /// A worker panicked (a bug): what was recorded is safe, the rest is left for the next run.
    WorkerPanicked,
}

#[derive(Default)]
pub struct Stop {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
    fatal: Mutex<Option<ApiError>>,
    /// The last failed connection when the endpoint was found unreachable: what and where.
    unreached: Mutex<Option<ApiError>>,
}

impl Stop {
    pub fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The first reason given is the one that counts.
    pub fn stop(&self, reason: StopReason) {
        let mut current = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_none() {
            *current = Some(reason);
        }
        self.token.cancel();
    }

    /// A run-fatal answer: keep the first, stop everything.
    pub fn fatal(&self, error: ApiError) {
        {
            let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            if fatal.is_none() {
                *fatal = Some(error);
            }
        }
        self.stop(StopReason::Fatal);
    }

    /// Nothing got through: stop everything, keeping the last connection failure to say what
    /// failed and where.
    pub fn unreachable(&self, error: ApiError) {
        {
            let mut kept = self.unreached.lock().unwrap_or_else(|p| p.into_inner());
            kept.get_or_insert(error);
        }
        self.stop(StopReason::Unreachable);
    }

    /// The connection failure that made the command stop as unreachable, if it did.
    pub fn unreached(&self) -> Option<ApiError> {
        self.unreached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The exit of a command that stopped for this reason, if it stopped.
    pub fn exit(&self) -> Option<crate::exit::Exit> {
        use crate::exit::Exit;
        Some(match self.reason()? {
            StopReason::Interrupted => Exit::Interrupted,
            StopReason::Deadline => Exit::StoppedEarly,
            StopReason::Fatal => Exit::ServiceFatal,
            StopReason::LedgerFailed => Exit::LedgerFailed,
            StopReason::Unreachable => Exit::Unreachable,
            StopReason::WorkerPanicked => Exit::StoppedEarly,
        })
    }

    pub fn take_fatal(&self) -> Option<ApiError> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The token every wait selects on.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Sleeps for `duration`; false (early) when the command starts stopping meanwhile.
    pub async fn sleep(&self, duration: Duration) -> bool {
        self.until(crate::clock::sleep(duration)).await.is_some()
    }

    /// Runs `work` unless the command stops first: `None` when it did.
    pub async fn until<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        if self.is_stopping() {
            return None;
        }
        tokio::select! {
            biased;
            () = self.token.cancelled() => None,
            value = work => Some(value),
        }
    }
}

/// First SIGINT, SIGTERM or SIGHUP: stop starting work, finish what is in flight. Second: leave
/// now (every ledger line written is whole; the next invocation resumes). Shared by every
/// command that talks to the service.
pub async fn watch_signals(stop: std::sync::Arc<Stop>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        seen += 1;
        if seen == 1 {
            tracing::warn!(
                "stopping: finishing requests in flight (press Ctrl-C again to leave at once)"
            );
            stop.stop(StopReason::Interrupted);
        } else {
            tracing::warn!("leaving now; the ledger is consistent, the next run resumes");
            std::process::exit(130);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_early_when_the_run_stops() {
        let stop = std::sync::Arc::new(Stop::default());
        let sleeper = {
            let stop = stop.clone();
            tokio::spawn(async move { stop.sleep(Duration::from_secs(3600)).await })
        };
        tokio::task::yield_now().await;
        stop.stop(StopReason::Interrupted);
        stop.stop(StopReason::Deadline);
        assert!(!sleeper.await.unwrap());
        assert_eq!(
            stop.reason(),
            Some(StopReason::Interrupted),
            "the first reason counts"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_runs_to_its_end_when_nothing_stops() {
        let stop = Stop::default();
        assert!(stop.sleep(Duration::from_secs(5)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn work_started_after_a_stop_never_runs() {
        let stop = Stop::default();
        stop.stop(StopReason::Deadline);
        let ran = std::sync::atomic::AtomicBool::new(false);
        let out = stop
            .until(async { ran.store(true, std::sync::atomic::Ordering::SeqCst) })
            .await;
        assert!(out.is_none());
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }
}
