//! A paced, retrying caller for the operator commands (`lib`, `verify`, `rollback`): the same
//! pacer and retry policy as a run, without a ledger or a progress display.

use std::future::Future;

use crate::api::{Algorithm, ApiError, Client, Entity, ErrorClass, Lib, Sample};
use crate::clock::Jitter;
use crate::pacer::Pacer;
use crate::retry::{Decision, Failure, Policy};

use super::{PAGE_SIZE, all_pages};

pub(crate) struct Session {
    pub client: Client,
    pub algorithm: Algorithm,
    pacer: Pacer,
    policy: Policy,
    jitter: Jitter,
}

impl Session {
    pub fn new(client: Client, algorithm: Algorithm, qps: u32, max_attempts: u32) -> Session {
        Session {
            client,
            algorithm,
            pacer: Pacer::new(qps),
            policy: Policy::new(max_attempts.max(1)),
            jitter: Jitter::from_seed(None),
        }
    }

    /// One paced call, retried while retrying can help. Only for calls that are safe to repeat
    /// (reads), or whose repetition the caller reconciles (deletes).
    pub async fn call<T, F, Fut>(&self, attempt: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.retried(attempt, true).await
    }

    /// A call that is not idempotent: retried only when nothing was applied; an unknown outcome
    /// is returned for the caller to look up.
    pub async fn send<T, F, Fut>(&self, attempt: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.retried(attempt, false).await
    }

    async fn retried<T, F, Fut>(&self, mut attempt: F, repeatable: bool) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempts = 0;
        loop {
            self.pacer.acquire().await;
            attempts += 1;
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let failure = match error.class() {
                ErrorClass::RowRejected | ErrorClass::RunFatal => return Err(error),
                ErrorClass::OutcomeUnknown if !repeatable => return Err(error),
                ErrorClass::Throttled => {
                    self.pacer.throttled(error.retry_after());
                    Failure::Throttled
                }
                ErrorClass::Transient | ErrorClass::OutcomeUnknown => Failure::Retryable,
            };
            let hint = error.retry_after();
            match self
                .policy
                .decide(failure, attempts, hint, self.jitter.fraction())
            {
                Decision::RetryAfter(delay) => crate::clock::sleep(delay).await,
                Decision::GiveUp => return Err(error),
            }
        }
    }

    /// Every library of the session's algorithm.
    pub async fn libs(&self) -> Result<Vec<Lib>, ApiError> {
        let (client, algorithm) = (&self.client, self.algorithm);
        all_pages(|page| {
            self.call(move || client.list_recognition_libs(algorithm, None, page, PAGE_SIZE))
        })
        .await
    }

    /// Every entity of one library.
    pub async fn entities(&self, lib_id: &str) -> Result<Vec<Entity>, ApiError> {
        let (client, algorithm) = (&self.client, self.algorithm);
        all_pages(|page| {
            self.call(move || client.list_recognition_entities(algorithm, lib_id, page, PAGE_SIZE))
        })
        .await
    }

    /// Every sample of one entity, of every entity (`ANY`), or of entities named `entity_name`.
    pub async fn samples(
        &self,
        lib_id: &str,
        entity_id: &str,
        entity_name: Option<&str>,
    ) -> Result<Vec<Sample>, ApiError> {
        let (client, algorithm) = (&self.client, self.algorithm);
        all_pages(|page| {
            self.call(move || {
                client.list_recognition_samples(
                    algorithm,
                    lib_id,
                    entity_id,
                    entity_name,
                    page,
                    PAGE_SIZE,
                )
            })
        })
        .await
    }
}
