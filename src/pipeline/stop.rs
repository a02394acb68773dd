//! Stopping: a signal, the `--max-duration` deadline, a run-fatal answer or an unwritable ledger
//! ends the starting of new work; requests in flight finish and are recorded.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::api::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    Interrupted,
    Deadline,
    Fatal,
    LedgerFailed,
}

#[derive(Default)]
pub(crate) struct Stop {
    stopping: AtomicBool,
    notify: Notify,
    reason: Mutex<Option<StopReason>>,
    fatal: Mutex<Option<ApiError>>,
}

impl Stop {
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The first reason given is the one that counts.
    pub(crate) fn stop(&self, reason: StopReason) {
        let mut current = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_none() {
            *current = Some(reason);
        }
        self.stopping.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// A run-fatal answer: keep the first, stop everything.
    pub(crate) fn fatal(&self, error: ApiError) {
        {
            let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            if fatal.is_none() {
                *fatal = Some(error);
            }
        }
        self.stop(StopReason::Fatal);
    }

    pub(crate) fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn take_fatal(&self) -> Option<ApiError> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Sleeps for `duration`; false (early) when the run starts stopping meanwhile.
    pub(crate) async fn sleep(&self, duration: Duration) -> bool {
        if self.is_stopping() {
            return false;
        }
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_stopping() {
            return false;
        }
        tokio::select! {
            _ = crate::clock::sleep(duration) => !self.is_stopping(),
            _ = notified => false,
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
}
