//! One API request's trip through the sandbox, independent of HTTP: latency → authentication →
//! nonce → action and version → rate limit → fault → apply → answer (or a reset). STS actions
//! branch off to [`super::sts`] after the latency; the keys it issues are accepted here, and by
//! the sandbox's OSS ([`super::oss`]), whose object requests branch off before all this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::action::{self, Action, Service};
use super::auth::{self, Credentials, V3Request};
use super::config::{Fault, FaultRates, OssFault, OssFaultRates, SandboxConfig};
use super::faults;
use super::oss::{Oss, OssOutcome, OssRequest};
use super::params::Params;
use super::response::{ApiError, BodyFormat, Reply};
use super::snapshot::StateSnapshot;
use super::state::State;
use super::sts::{self, Issuer};

/// What the connection should do with a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    Reply(Reply),
    /// Drop the connection without answering.
    Reset,
}

/// A request that passed authentication and flow control, with the fault it drew.
struct Admitted {
    action: Action,
    fault: Option<Fault>,
    malformed_turn: u64,
}

pub(crate) struct Engine {
    config: SandboxConfig,
    issuer: Issuer,
    /// The configured key id: rate limits are per account, whichever key signs.
    account: String,
    state: Mutex<State>,
    received: AtomicU64,
    shutdown: watch::Receiver<bool>,
    oss: Oss,
}

/// A fresh `RequestId`, upper-case like Alibaba's.
fn request_id() -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_upper(&mut buf)
        .to_string()
}

impl Engine {
    /// Fails only when the OSS folder cannot be created. `config.listen` is the sandbox's
    /// address: an `ImageUrl` on it names one of its objects.
    pub fn new(config: SandboxConfig, shutdown: watch::Receiver<bool>) -> std::io::Result<Self> {
        let oss = Oss::new(config.oss.clone(), config.seed)?;
        let credentials = Credentials {
            access_key_id: config.access_key_id.clone(),
            access_key_secret: config.access_key_secret.clone(),
            security_token: config.security_token.clone(),
        };
        Ok(Engine {
            state: Mutex::new(State::new(&config)),
            account: config.access_key_id.clone(),
            issuer: Issuer::new(credentials, config.sts_lifetime),
            config,
            received: AtomicU64::new(0),
            shutdown,
            oss,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one RPC v1 request received with `method`.
    #[cfg(test)]
    pub async fn handle(self: &Arc<Self>, method: &str, params: Params) -> Outcome {
        self.handle_request(method, params, None).await
    }

    /// Answers one API request received with `method`, signed with V3 when `v3` is given.
    pub async fn handle_request(
        self: &Arc<Self>,
        method: &str,
        params: Params,
        v3: Option<V3Request>,
    ) -> Outcome {
        let n = self.received.fetch_add(1, Ordering::Relaxed);
        let delay = faults::latency(
            self.config.seed,
            n,
            self.config.latency_ms,
            self.config.latency_jitter_ms,
        );
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if sts::is_sts(&params) {
            let authenticate = || self.authenticate_v1(method, &params);
            let reply = sts::handle(
                &self.issuer,
                &self.config,
                &params,
                request_id(),
                authenticate,
            );
            return Outcome::Reply(reply);
        }
        // The V3 clients (the official SDKs) expect JSON whatever `Format` says.
        let format = match v3 {
            Some(_) => BodyFormat::Json,
            None => BodyFormat::of(params.get("Format")),
        };
        let now_utc = OffsetDateTime::now_utc();
        match self.admit(method, &params, v3.as_ref(), now_utc, Instant::now()) {
            Ok(admitted) => self.execute(admitted, params, format).await,
            Err(error) => Outcome::Reply(Reply::error(
                format,
                action::host_id(&params),
                request_id(),
                &error,
            )),
        }
    }

    fn admit(
        &self,
        method: &str,
        params: &Params,
        v3: Option<&V3Request>,
        now_utc: OffsetDateTime,
        now: Instant,
    ) -> Result<Admitted, ApiError> {
        // The HMAC is computed before taking the state lock, so that lock stays short.
        let authenticated = {
            let keys = self.issuer.keys();
            match v3 {
                Some(request) => auth::authenticate_v3(request, &keys, now_utc),
                None => auth::authenticate(params, method, &keys, now_utc),
            }
        };
        let mut state = self.lock();
        state.stats.requests += 1;
        if let Err(error) = authenticated {
            state.stats.auth_rejected += 1;
            return Err(error);
        }
        if !state
            .nonces
            .insert(params.get("SignatureNonce").unwrap_or_default(), now)
        {
            state.stats.auth_rejected += 1;
            return Err(ApiError::invalid(
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        let action = Action::resolve(params)?;
        let key = self.account.as_str();
        let limit = state.limit(action);
        if let Err(wait) = state.limiter.check(key, action.name(), limit, now) {
            state.stats.throttled += 1;
            return Err(self.throttled(wait));
        }
        let fault = state.plan.next(action.name(), self.config.seed);
        if let Some(fault) = fault {
            state.count_fault(fault);
        }
        if fault == Some(Fault::Throttle) {
            state.stats.throttled += 1;
            return Err(self.throttled(Duration::from_secs(1)));
        }
        state.limiter.record(key, action.name(), limit, now);
        state.count_accepted(action, now);
        let malformed_turn = if fault == Some(Fault::MalformedAfter) {
            state.plan.next_malformed_turn()
        } else {
            0
        };
        Ok(Admitted {
            action,
            fault,
            malformed_turn,
        })
    }

    /// `retry_after_ms`: `None` sends no hint, `Some(0)` the time until a slot frees, else that value.
    fn throttled(&self, wait: Duration) -> ApiError {
        let hint = self.config.retry_after_ms.map(|ms| {
            if ms == 0 {
                wait.as_millis().max(1) as u64
            } else {
                ms
            }
        });
        ApiError::throttled(hint)
    }

    async fn execute(
        self: &Arc<Self>,
        admitted: Admitted,
        params: Params,
        format: BodyFormat,
    ) -> Outcome {
        let Admitted {
            action,
            fault,
            malformed_turn,
        } = admitted;
        let fail = |error: &ApiError| {
            Outcome::Reply(Reply::error(
                format,
                action.service().host_id(),
                request_id(),
                error,
            ))
        };
        let result = match fault {
            Some(Fault::HtmlBefore) => return Outcome::Reply(Reply::gateway_page()),
            Some(Fault::ResetBefore) => return Outcome::Reset,
            Some(Fault::ErrorBefore) => return fail(&ApiError::internal()),
            Some(Fault::Stall) => {
                // Applied at once, answered late: the client gives up first. (A call applied only
                // after the client has looked and found nothing would defeat any client's
                // exactly-once, and is not what a slow gateway does with a request it holds.)
                let result = self.apply(action, &params);
                self.stall().await;
                result
            }
            // Held first, applied late: what a backend queue does with a request whose client
            // has already timed out (the request runs in a task of its own, so it lands even
            // when the client is gone).
            Some(Fault::Late) => {
                self.stall().await;
                self.apply(action, &params)
            }
            _ => self.apply(action, &params),
        };
        match (fault, result) {
            (Some(Fault::ErrorAfter), _) => fail(&ApiError::internal()),
            (Some(Fault::ResetAfter), _) => Outcome::Reset,
            (Some(Fault::MalformedAfter), _) => {
                Outcome::Reply(Reply::malformed(malformed_turn, request_id()))
            }
            (_, Ok(fields)) => {
                Outcome::Reply(Reply::success(format, action.name(), request_id(), fields))
            }
            (_, Err(error)) => fail(&error),
        }
    }

    fn apply(&self, action: Action, params: &Params) -> Result<Map<String, Value>, ApiError> {
        self.fetch_image(action, params)?;
        self.lock()
            .apply(action, params, self.config.max_faces_per_person)
    }

    /// The service downloads an `ImageUrl` that names one of the sandbox's own objects when the
    /// call is applied (so a link that expires while the call is held is refused); other URLs
    /// are judged by their markers alone, as before.
    fn fetch_image(&self, action: Action, params: &Params) -> Result<(), ApiError> {
        if !matches!(
            action,
            Action::RegisterCustomFace | Action::CreateRecognitionSample
        ) {
            return Ok(());
        }
        let Some(url) = params.non_empty("ImageUrl") else {
            return Ok(());
        };
        let now = OffsetDateTime::now_utc();
        let verdict =
            self.oss
                .fetch_image(url, self.config.listen, action.name(), &self.issuer, now);
        match verdict {
            None | Some(Ok(())) => Ok(()),
            Some(Err(message)) => {
                let code = match action.service() {
                    Service::Mts => "InvalidParameter.ImageUrl",
                    Service::Ice => "InvalidParameter",
                };
                Err(ApiError::invalid(code, message))
            }
        }
    }

    /// Answers one OSS object request; `host` names the server in error bodies.
    pub fn oss_request(&self, request: &OssRequest, host: &str) -> OssOutcome {
        self.oss
            .handle(request, &self.issuer, host, OffsetDateTime::now_utc())
    }

    pub fn admin_put_object(
        &self,
        bucket: &str,
        key: &str,
        body: bytes::Bytes,
    ) -> Result<(), super::oss::StoreError> {
        self.oss.admin_put(bucket, key, body)
    }

    /// The next object requests of `method` take these faults, in order, before any random one.
    pub fn script_oss(&self, method: &str, faults: Vec<OssFault>) {
        self.oss.script(method, faults);
    }

    /// Replaces the OSS fault rates; values outside 0..=1 are clamped (NaN counts as 0).
    pub fn set_oss_fault_rates(&self, rates: OssFaultRates) {
        let clamp = |r: f64| if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        self.oss.set_fault_rates(OssFaultRates {
            error: clamp(rates.error),
            reset: clamp(rates.reset),
            slow_body: clamp(rates.slow_body),
        });
    }

    /// Holds a request `stall_ms`, or until shutdown so stalls never delay it.
    async fn stall(&self) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(self.config.stall_ms)) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }

    /// Answers the ECS metadata service's paths (`/latest/…`).
    pub fn metadata(
        &self,
        method: &hyper::Method,
        path: &str,
        header: impl Fn(&str) -> Option<String>,
    ) -> Reply {
        sts::metadata(&self.issuer, &self.config, method, path, header)
    }

    /// `GET /__sandbox/credentials`.
    pub fn credentials_uri(&self, query: Option<&str>) -> Reply {
        sts::credentials_uri(&self.issuer, query)
    }

    pub fn issued_credentials(&self) -> Vec<(String, String, String)> {
        self.issuer.issued_credentials()
    }

    /// Authenticates a v1-signed call that is not an MTS / ICE action (STS `AssumeRole`).
    pub(super) fn authenticate_v1(&self, method: &str, params: &Params) -> Result<(), ApiError> {
        let now = OffsetDateTime::now_utc();
        let result = auth::authenticate(params, method, &self.issuer.keys(), now);
        result?;
        let nonce = params.get("SignatureNonce").unwrap_or_default();
        if self.lock().nonces.insert(nonce, Instant::now()) {
            Ok(())
        } else {
            Err(ApiError::invalid(
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ))
        }
    }

    pub fn snapshot(&self) -> StateSnapshot {
        let mut snapshot = self.lock().snapshot();
        snapshot.stats.credentials_issued = self.issuer.issued_count();
        let (oss, faults) = self.oss.snapshot();
        snapshot.oss = oss;
        snapshot.stats.faults.extend(faults);
        snapshot
    }

    pub fn script(&self, action: &str, faults: Vec<Fault>) {
        self.lock().plan.script(action, faults);
    }

    /// Replaces the rates; values outside 0..=1 are clamped (NaN counts as 0).
    pub fn set_fault_rates(&self, rates: FaultRates) {
        let clamp = |r: f64| if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        let rates = FaultRates {
            error_before: clamp(rates.error_before),
            error_after: clamp(rates.error_after),
            reset_before: clamp(rates.reset_before),
            reset_after: clamp(rates.reset_after),
            stall: clamp(rates.stall),
            malformed_after: clamp(rates.malformed_after),
            html_before: clamp(rates.html_before),
            late: clamp(rates.late),
        };
        self.lock().plan.rates = rates;
    }

    pub fn set_qps(&self, mts_qps: u32, ice_qps: u32) {
        let mut state = self.lock();
        state.mts_qps = mts_qps;
        state.ice_qps = ice_qps;
    }

    pub fn admin_register_face(
        &self,
        category_id: &str,
        person_id: &str,
        image_url: &str,
    ) -> String {
        let mut state = self.lock();
        let face_id = state.ids.next_id();
        state
            .mts
            .insert_face(category_id, person_id, image_url, face_id.clone());
        face_id
    }

    pub fn admin_remove_face(&self, face_id: &str) -> bool {
        self.lock().mts.remove_face(face_id)
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
