//! How a command ends: every outcome a command reports, and the one table that turns it into the
//! process exit code. It sits at the bottom of the imports: anything may use it, it uses nothing.

/// Every way a command can end, each with its documented exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything done (or nothing to do).
    Success,
    /// Finished, but some rows (or faces) are not where they should be.
    RowsNotRegistered,
    /// Bad flags, an unreadable manifest or ledger: nothing was sent.
    Usage,
    /// The service refused the run: credentials, signature, permission, clock.
    ServiceFatal,
    /// Another process holds the ledger's lock.
    Locked,
    /// Stopped with work left (deadline, retries ran out); the next run resumes.
    StoppedEarly,
    /// The endpoint never answered: every attempt failed to connect (DNS, refused, a wrong
    /// region or `--endpoint`); nothing got through.
    Unreachable,
    /// The ledger could not be written mid-run (disk full, deleted or replaced): requests may
    /// have been sent; what was recorded is safe, and the next run settles the rest.
    LedgerFailed,
    /// `run --sync` planned more removals than `--max-delete` allows: it removed none (the
    /// additions were made). Look at `check --sync`, then raise `--max-delete` or fix the roster.
    TooManyRemovals,
    /// SIGINT or SIGTERM.
    Interrupted,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::RowsNotRegistered => 1,
            Exit::Usage => 2,
            Exit::ServiceFatal => 3,
            Exit::Locked => 4,
            Exit::StoppedEarly => 5,
            Exit::Unreachable => 6,
            Exit::LedgerFailed => 7,
            Exit::TooManyRemovals => 8,
            Exit::Interrupted => 130,
        }
    }
}

/// A command-line or input problem found before anything was sent (exit 2), with what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> UsageError {
        UsageError(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_has_its_documented_code() {
        let codes: Vec<i32> = [
            Exit::Success,
            Exit::RowsNotRegistered,
            Exit::Usage,
            Exit::ServiceFatal,
            Exit::Locked,
            Exit::StoppedEarly,
            Exit::Unreachable,
            Exit::LedgerFailed,
            Exit::TooManyRemovals,
            Exit::Interrupted,
        ]
        .into_iter()
        .map(Exit::code)
        .collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 130]);
    }
}
