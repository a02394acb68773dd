//! How a run ended: the ending its figures and its stop make, the exit that reports it, and
//! what the summary says of throttling.

use crate::api::ApiError;
use crate::exit::Exit;
use crate::report::Summary;
use crate::stop::StopReason;

/// How a run ended; `exit_code` is the one place that turns it into a number.
#[derive(Debug)]
pub enum Ending {
    /// Every row is registered.
    Complete,
    /// Finished, but this run found rows it could not register (or `--strict` and any row).
    SomeRowsNotRegistered,
    /// Finished; the only rows not registered are ones earlier runs already recorded.
    OnlyKnownRejections,
    /// A run-fatal answer from the service (credentials, signature, permission, clock).
    ServiceFatal(ApiError),
    /// Stopped with work left: `--max-duration` passed.
    DeadlinePassed,
    /// Work left because retries ran out on some images (the next run resumes them).
    RetriesRanOut,
    /// Nothing got through: every attempt failed to connect.
    Unreachable,
    /// `--sync` planned more removals than `--max-delete` allows and made none.
    TooManyRemovals,
    /// A worker panicked (a bug); what was recorded is safe, the next run resumes.
    WorkerPanicked,
    /// SIGINT or SIGTERM.
    Interrupted,
}

/// From this share of throttled requests on, the pace itself is too high for the service.
const THROTTLED_TOO_OFTEN: f64 = 0.01;

/// What the operator should make of throttling answers. Many of them: the pace is too high
/// for the service (lower `--qps`). A few: a window's edge met by jitter, which the pacer
/// adjusted to and the retries absorbed; asking for a lower `--qps` then would cost every
/// later run its pace for nothing.
pub(super) fn throttling_hint(throttled: u64, requests: u64) -> Option<String> {
    if throttled == 0 {
        return None;
    }
    let share = throttled as f64 / requests.max(throttled) as f64;
    let percent = 100.0 * share;
    Some(if share >= THROTTLED_TOO_OFTEN {
        format!(
            "the service throttled {throttled} requests ({percent:.1} % of {requests}): lower --qps"
        )
    } else {
        format!(
            "the service throttled {throttled} requests ({percent:.2} % of {requests}); the pacer \
             adjusted and retried them: nothing to change unless it happens often"
        )
    })
}

pub(super) fn ending_of(
    summary: &Summary,
    fatal: Option<ApiError>,
    reason: Option<StopReason>,
) -> Ending {
    if let Some(error) = fatal {
        return Ending::ServiceFatal(error);
    }
    match reason {
        Some(StopReason::Interrupted) => return Ending::Interrupted,
        Some(StopReason::Unreachable) => return Ending::Unreachable,
        Some(StopReason::WorkerPanicked) => return Ending::WorkerPanicked,
        Some(StopReason::Deadline) if summary.left + summary.removals_left > 0 => {
            return Ending::DeadlinePassed;
        }
        _ => {}
    }
    let not_registered = summary.failed + summary.invalid + summary.skipped;
    if summary.left + summary.removals_left > 0 {
        Ending::RetriesRanOut
    } else if summary.removals_refused {
        Ending::TooManyRemovals
    } else if summary.new_rejections > 0
        || summary.removal_failed > 0
        || (summary.strict && not_registered > 0)
    {
        Ending::SomeRowsNotRegistered
    } else if not_registered > 0 {
        Ending::OnlyKnownRejections
    } else {
        Ending::Complete
    }
}

impl Ending {
    /// The exit this ending reports.
    pub fn exit(&self) -> Exit {
        match self {
            Ending::Complete | Ending::OnlyKnownRejections => Exit::Success,
            Ending::SomeRowsNotRegistered => Exit::RowsNotRegistered,
            Ending::ServiceFatal(_) => Exit::ServiceFatal,
            Ending::DeadlinePassed | Ending::RetriesRanOut | Ending::WorkerPanicked => {
                Exit::StoppedEarly
            }
            Ending::Unreachable => Exit::Unreachable,
            Ending::TooManyRemovals => Exit::TooManyRemovals,
            Ending::Interrupted => Exit::Interrupted,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Ending::Complete => "complete",
            Ending::OnlyKnownRejections => {
                "complete; the rows not registered were all refused by earlier runs"
            }
            Ending::SomeRowsNotRegistered => "finished, some rows not registered (or not removed)",
            Ending::ServiceFatal(_) => "stopped: the service refused the run",
            Ending::DeadlinePassed => {
                "stopped early: --max-duration passed, work left for the next run"
            }
            Ending::RetriesRanOut => {
                "stopped early: retries ran out, the next run sends those images again"
            }
            Ending::Unreachable => {
                "stopped: the endpoint is unreachable (nothing answered); check --endpoint, \
                 --region and the network"
            }
            Ending::TooManyRemovals => {
                "finished adding; removed nothing: the sync was refused (more removals than \
                 --max-delete, or invalid rows in the manifest)"
            }
            Ending::WorkerPanicked => {
                "stopped: a worker panicked (a bug: please report it with the log); what was \
                 recorded is safe, the next run resumes the rest"
            }
            Ending::Interrupted => "interrupted",
        }
    }

    /// Why an exit-5 run stopped, as the summary's `stopped_because` says it.
    pub fn stopped_because(&self) -> Option<&'static str> {
        match self {
            Ending::DeadlinePassed => Some("deadline"),
            Ending::RetriesRanOut => Some("retries ran out"),
            Ending::WorkerPanicked => Some("a worker panicked"),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "ending_tests.rs"]
mod tests;
