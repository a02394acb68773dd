//! Paced, retried calls for `verify` and `rollback`: a rate permit before every attempt, the
//! retry policy between attempts, one stop signal — the same three knobs as `run`.
//!
//! Unregistering is settled like registering: after an unknown outcome the person is read back
//! before the call is sent again, and a FaceId the server does not know counts as removed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::{ApiError, Client, CustomPersons, ErrorClass};
use crate::clock::Jitter;
use crate::manifest::fold_id;
use crate::pacer::Pacer;
use crate::retry::{Decision, Failure, Policy};
use crate::stop::Stop;

/// Why a call did not succeed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The command is stopping (signal, or a run-fatal answer elsewhere).
    Stopped,
    /// A run-fatal answer: credentials, signature, permission, clock. Everything stops; the
    /// error is kept by the stop signal (`Caller::take_fatal`).
    Fatal,
    /// The service refused this call for a reason retrying cannot fix.
    Rejected(ApiError),
    /// Attempts ran out.
    Exhausted(ApiError),
}

/// How a face came to be gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    Unregistered,
    /// The server did not know the FaceId (removed earlier, or by a call whose answer was lost).
    NotFound,
    /// After an unknown outcome, reading the person back showed the face gone.
    GoneAfterLookup,
}

impl Removal {
    pub fn reason(self) -> &'static str {
        match self {
            Removal::Unregistered => "unregistered",
            Removal::NotFound => "not found on the server (already removed)",
            Removal::GoneAfterLookup => "gone from the server after an unknown outcome",
        }
    }
}

/// Figures the caller keeps for the closing summary.
#[derive(Default)]
pub(crate) struct Tally {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub lookups: AtomicU64,
}

pub(crate) struct Caller {
    pub client: Client,
    pub pacer: Pacer,
    pub policy: Policy,
    pub jitter: Jitter,
    pub stop: Arc<Stop>,
    pub tally: Tally,
}

/// A FaceId, person or library the server does not know: what an unregistration that already
/// happened answers. Any such code counts, whatever its exact spelling.
pub(crate) fn is_not_found(error: &ApiError) -> bool {
    error.class() == ErrorClass::RowRejected
        && (error.code().contains("NotFound") || error.code().contains("NotExist"))
}

impl Caller {
    pub fn new(client: Client, qps: u32, max_attempts: u32, seed: Option<u64>) -> Caller {
        Caller {
            client,
            pacer: Pacer::new(qps),
            policy: Policy::new(max_attempts),
            jitter: Jitter::from_seed(seed),
            stop: Arc::new(Stop::default()),
            tally: Tally::default(),
        }
    }

    /// ListCustomPersons for one library (and one person, if given), retried.
    pub async fn list(
        &self,
        category_id: &str,
        person_id: Option<&str>,
    ) -> Result<CustomPersons, CallError> {
        self.retrying(|| {
            self.client
                .list_custom_persons(Some(category_id), person_id)
        })
        .await
    }

    /// Runs `call` until it succeeds, is refused for good, runs out of attempts, or stops.
    pub async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempts = 0u32;
        loop {
            if self.stop.is_stopping() {
                return Err(CallError::Stopped);
            }
            self.pacer.acquire().await;
            attempts += 1;
            self.tally.requests.fetch_add(1, Ordering::Relaxed);
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let failure = self.failure(&error)?;
            self.wait(failure, attempts, error).await?;
        }
    }

    /// Unregisters one face by FaceId, exactly as asked (never `ALL`: the client refuses it).
    pub async fn unregister(
        &self,
        category_id: &str,
        person_id: &str,
        face_id: &str,
    ) -> Result<Removal, CallError> {
        let mut attempts = 0u32;
        loop {
            if self.stop.is_stopping() {
                return Err(CallError::Stopped);
            }
            self.pacer.acquire().await;
            attempts += 1;
            self.tally.requests.fetch_add(1, Ordering::Relaxed);
            let result = self
                .client
                .unregister_face(category_id, person_id, face_id)
                .await;
            let error = match result {
                Ok(_) => return Ok(Removal::Unregistered),
                Err(e) if is_not_found(&e) => return Ok(Removal::NotFound),
                Err(e) => e,
            };
            let unknown = error.class() == ErrorClass::OutcomeUnknown;
            let failure = self.failure(&error)?;
            self.wait(failure, attempts, error).await?;
            if unknown {
                self.tally.lookups.fetch_add(1, Ordering::Relaxed);
                let listing = self.list(category_id, Some(person_id)).await?;
                if !holds_face(&listing, category_id, person_id, face_id) {
                    return Ok(Removal::GoneAfterLookup);
                }
            }
        }
    }

    /// What retrying makes of a failed attempt; the errors that end the call at once.
    fn failure(&self, error: &ApiError) -> Result<Failure, CallError> {
        match error.class() {
            ErrorClass::RunFatal => {
                self.stop.fatal(error.clone());
                Err(CallError::Fatal)
            }
            ErrorClass::RowRejected => Err(CallError::Rejected(error.clone())),
            ErrorClass::Throttled => {
                self.tally.throttled.fetch_add(1, Ordering::Relaxed);
                self.pacer.throttled(error.retry_after());
                Ok(Failure::Throttled)
            }
            ErrorClass::OutcomeUnknown | ErrorClass::Transient => Ok(Failure::Retryable),
        }
    }

    /// Sleeps before the next attempt, or says why there is none.
    async fn wait(
        &self,
        failure: Failure,
        attempts: u32,
        error: ApiError,
    ) -> Result<(), CallError> {
        let decision = self.policy.decide(
            failure,
            attempts,
            error.retry_after(),
            self.jitter.fraction(),
        );
        let Decision::RetryAfter(delay) = decision else {
            return Err(CallError::Exhausted(error));
        };
        tracing::debug!(
            code = error.code(),
            attempts,
            delay_ms = delay.as_millis() as u64,
            "retrying"
        );
        self.tally.retries.fetch_add(1, Ordering::Relaxed);
        if self.stop.sleep(delay).await {
            Ok(())
        } else {
            Err(CallError::Stopped)
        }
    }

    /// The first run-fatal answer, if any.
    pub fn take_fatal(&self) -> Option<ApiError> {
        self.stop.take_fatal()
    }
}

/// Whether the listing holds `face_id` for this person (ids compared case-insensitively).
fn holds_face(listing: &CustomPersons, category_id: &str, person_id: &str, face_id: &str) -> bool {
    let (category, person) = (fold_id(category_id), fold_id(person_id));
    listing
        .categories
        .iter()
        .filter(|c| fold_id(&c.category_id) == category)
        .flat_map(|c| &c.persons)
        .filter(|p| fold_id(&p.person_id) == person)
        .flat_map(|p| &p.faces)
        .any(|f| f.face_id == face_id)
}

pub(crate) use crate::stop::watch_signals;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_that_say_not_found_count_as_already_removed() {
        let gone = ApiError::new(Some(404), "InvalidParameter.FaceNotFound", "no such face");
        assert!(is_not_found(&gone));
        let bad = ApiError::new(Some(400), "InvalidParameter.FaceId", "bad id");
        assert!(!is_not_found(&bad));
        let flaky = ApiError::new(Some(500), "InternalError", "NotFound in message only");
        assert!(!is_not_found(&flaky));
    }

    #[test]
    fn a_listing_holds_a_face_whatever_the_case_of_its_ids() {
        let listing = CustomPersons {
            categories: vec![crate::api::Category {
                category_id: "Lib".into(),
                persons: vec![crate::api::Person {
                    person_id: "Alice".into(),
                    faces: vec![crate::api::Face {
                        face_id: "f1".into(),
                        image_url: None,
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            request_id: None,
        };
        assert!(holds_face(&listing, "lib", "ALICE", "f1"));
        assert!(!holds_face(&listing, "lib", "alice", "f2"));
        assert!(!holds_face(&listing, "other", "alice", "f1"));
    }
}
