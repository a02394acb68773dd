//! The sandbox's OSS: object requests on the sandbox's own address, path-style
//! (`http://127.0.0.1:PORT/BUCKET/KEY`), told apart from the API by [`routes_to_oss`]. PUT, GET
//! and HEAD, each authenticated as OSS does ([`auth`]), answered with OSS's headers and XML
//! errors ([`reply`]), kept in memory or a folder ([`store`]), with faults of their own; and the
//! service side's download of an `ImageUrl` that names one of these objects ([`fetch`]).
//!
//! Buckets: every name valid by OSS's rules exists, unless a list is configured (`latest` is
//! not usable: `/latest/…` is the ECS metadata service). The region: any region's signature is
//! accepted (one address stands for every endpoint) unless one is pinned. Object requests get
//! no API latency and take no API rate-limit slot; their faults come after authentication, as
//! the API's do. The service side's downloads take no OSS fault.

mod auth;
mod fetch;
mod reply;
mod store;
pub use store::StoreError;

use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use time::OffsetDateTime;

use super::config::{OssConfig, OssFault, OssFaultRates};
use super::faults::FaultPlan;
use super::snapshot::{FetchSnapshot, OssRequests, OssSnapshot};
use super::sts::Issuer;
use crate::sign::oss::Received;
use crate::sign::oss::object::{check_bucket, check_key, percent_decode};

pub(crate) use reply::{OssError, OssReply};
use store::Store;

/// The largest body a PUT may carry here (OSS takes 5 GB; photos need far less).
pub(crate) const MAX_PUT_BODY: usize = 64 << 20;
/// At most this many service-side downloads are remembered.
const MAX_FETCHES: usize = 100_000;

/// An object request: `/BUCKET[/KEY]` below the root, and no `Action` parameter or
/// `x-acs-action` header (the API's calls go to `/` and always name their action).
pub(crate) fn routes_to_oss(path: &str, query: Option<&str>, acs_action: bool) -> bool {
    let named_action = query.is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "Action")
    });
    path.len() > 1 && path.starts_with('/') && !acs_action && !named_action
}

/// One object request as received.
pub(crate) struct OssRequest {
    pub method: String,
    /// The path as sent, percent-encoded.
    pub path: String,
    pub query: Option<String>,
    /// Names in any case.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// What the connection should do with an object request.
#[derive(Debug)]
pub(crate) enum OssOutcome {
    Reply(OssReply),
    /// Drop the connection without answering.
    Reset,
}

/// Counters and the download log, behind one lock.
struct Ledger {
    plan: FaultPlan<OssFaultRates>,
    requests: OssRequests,
    faults: std::collections::BTreeMap<String, u64>,
    fetches: Vec<FetchSnapshot>,
}

pub(crate) struct Oss {
    config: OssConfig,
    seed: u64,
    store: Store,
    ledger: Mutex<Ledger>,
}

/// A request's bucket and decoded key, from its path.
struct Target {
    bucket: String,
    key: String,
}

impl Oss {
    /// The folder, when configured, is created if missing.
    pub fn new(config: OssConfig, seed: u64) -> io::Result<Oss> {
        let store = Store::open(config.root.as_deref())?;
        Ok(Oss {
            ledger: Mutex::new(Ledger {
                plan: FaultPlan::new(config.faults),
                requests: OssRequests::default(),
                faults: Default::default(),
                fetches: Vec::new(),
            }),
            config,
            seed,
            store,
        })
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one object request received at `now`; `host` names the server in error bodies.
    pub fn handle(
        &self,
        request: &OssRequest,
        issuer: &Issuer,
        host: &str,
        now: OffsetDateTime,
    ) -> OssOutcome {
        let method = request.method.as_str();
        {
            let mut ledger = self.ledger();
            let count = match method {
                "GET" => &mut ledger.requests.get,
                "HEAD" => &mut ledger.requests.head,
                "PUT" => &mut ledger.requests.put,
                _ => &mut ledger.requests.other,
            };
            *count += 1;
        }
        let request_id = reply::request_id();
        let head = method == "HEAD";
        let outcome = self.answer(request, issuer, now);
        let mut ledger = self.ledger();
        match outcome {
            Ok(Answered::Reply(reply, fault)) => {
                let mut reply = reply;
                reply.headers.push(("x-oss-request-id", request_id.clone()));
                reply.headers.push(("Server", "AliyunOSS".to_string()));
                if fault == Some(OssFault::SlowBody) {
                    reply.trickle = Some(Duration::from_millis(self.config.slow_body_ms));
                }
                OssOutcome::Reply(reply)
            }
            Ok(Answered::Reset) => OssOutcome::Reset,
            Err(error) => {
                ledger.requests.refused += 1;
                OssOutcome::Reply(error.into_reply(&request_id, host, head))
            }
        }
    }

    fn answer(
        &self,
        request: &OssRequest,
        issuer: &Issuer,
        now: OffsetDateTime,
    ) -> Result<Answered, OssError> {
        let method = request.method.as_str();
        let target = self.target(&request.path)?;
        if !matches!(method, "GET" | "HEAD" | "PUT") || target.key.is_empty() {
            return Err(OssError::method_not_allowed());
        }
        let query: Vec<(String, String)> = request
            .query
            .as_deref()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let received = Received {
            method,
            bucket: &target.bucket,
            key: &target.key,
            query: &query,
            headers: &request.headers,
        };
        {
            let keys = issuer.keys();
            auth::authenticate(&received, &keys, self.config.region.as_deref(), now)?;
        }
        let fault = {
            let mut ledger = self.ledger();
            let fault = ledger.plan.next(method, self.seed);
            if let Some(fault) = fault {
                *ledger.faults.entry(fault.name().to_string()).or_default() += 1;
            }
            fault
        };
        match fault {
            Some(OssFault::Reset) => return Ok(Answered::Reset),
            Some(OssFault::Error) => return Err(OssError::internal()),
            _ => {}
        }
        let reply = match method {
            "PUT" => self.put(&target, request)?,
            _ => self.read(&target, method == "HEAD")?,
        };
        Ok(Answered::Reply(reply, fault))
    }

    /// The bucket and key a path names; the bucket must exist.
    fn target(&self, path: &str) -> Result<Target, OssError> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let (bucket, encoded_key) = rest.split_once('/').unwrap_or((rest, ""));
        if check_bucket(bucket).is_err() {
            return Err(OssError::new(
                400,
                "InvalidBucketName",
                "The specified bucket is not valid.",
            )
            .with("BucketName", bucket));
        }
        if !self.config.buckets.is_empty() && !self.config.buckets.iter().any(|b| b == bucket) {
            return Err(OssError::no_such_bucket(bucket));
        }
        let key = percent_decode(encoded_key).ok_or_else(|| {
            OssError::new(
                400,
                "InvalidURI",
                "The object key is not valid percent-encoded UTF-8.",
            )
        })?;
        if !key.is_empty()
            && let Err(error) = check_key(&key)
        {
            return Err(OssError::new(400, "InvalidObjectName", error.to_string()));
        }
        Ok(Target {
            bucket: bucket.to_string(),
            key,
        })
    }

    /// Stores an object behind the client's back (no signature, no request counted): how a
    /// test or a rehearsal puts photos in a bucket. An existing object is replaced.
    pub fn admin_put(&self, bucket: &str, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.store.put(bucket, key, body, None, false).map(drop)
    }

    fn object(&self, target: &Target) -> Result<store::Object, OssError> {
        match self.store.get(&target.bucket, &target.key) {
            Ok(Some(object)) => Ok(object),
            Ok(None) => Err(OssError::no_such_key(&target.key)),
            Err(error) => Err(store_error(error)),
        }
    }

    /// GET or HEAD: the object with its headers (HEAD: the same headers, no body).
    fn read(&self, target: &Target, head: bool) -> Result<OssReply, OssError> {
        let object = self.object(target)?;
        let headers = vec![
            ("Content-Type", object.content_type.clone()),
            ("Content-Length", object.body.len().to_string()),
            ("ETag", object.etag()),
            (
                "Last-Modified",
                crate::sign::oss::format_http_date(object.last_modified),
            ),
            ("Content-MD5", base64_md5(&object.md5)),
            ("x-oss-object-type", "Normal".to_string()),
        ];
        Ok(OssReply {
            status: 200,
            headers,
            body: if head { Bytes::new() } else { object.body },
            trickle: None,
        })
    }

    /// PUT: `Content-MD5` checked against the body, `x-oss-forbid-overwrite: true` honoured.
    fn put(&self, target: &Target, request: &OssRequest) -> Result<OssReply, OssError> {
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        };
        if let Some(sent) = header("Content-MD5") {
            let md5: [u8; 16] = <md5::Md5 as md5::Digest>::digest(&request.body).into();
            if sent != base64_md5(&md5) {
                return Err(OssError::invalid_digest());
            }
        }
        let forbid =
            header("x-oss-forbid-overwrite").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let object = self
            .store
            .put(
                &target.bucket,
                &target.key,
                request.body.clone(),
                header("Content-Type").filter(|t| !t.is_empty()),
                forbid,
            )
            .map_err(store_error)?;
        Ok(OssReply {
            status: 200,
            headers: vec![
                ("ETag", object.etag()),
                ("Content-MD5", base64_md5(&object.md5)),
                ("Content-Length", "0".to_string()),
            ],
            body: Bytes::new(),
            trickle: None,
        })
    }

    /// Scripted faults for the next object requests of `method` (GET, HEAD, PUT), in order.
    pub fn script(&self, method: &str, faults: Vec<OssFault>) {
        self.ledger().plan.script(method, faults);
    }

    pub fn set_fault_rates(&self, rates: OssFaultRates) {
        self.ledger().plan.rates = rates;
    }

    pub fn snapshot(&self) -> (OssSnapshot, std::collections::BTreeMap<String, u64>) {
        let objects = self.store.list();
        let ledger = self.ledger();
        (
            OssSnapshot {
                objects,
                requests: ledger.requests.clone(),
                fetches: ledger.fetches.clone(),
            },
            ledger.faults.clone(),
        )
    }
}

/// What [`Oss::answer`] ends in when the request was not refused.
enum Answered {
    Reply(OssReply, Option<OssFault>),
    Reset,
}

fn base64_md5(md5: &[u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5)
}

fn store_error(error: StoreError) -> OssError {
    match error {
        StoreError::Exists => OssError::already_exists(),
        StoreError::Unsafe(why) => OssError::new(
            400,
            "InvalidObjectName",
            format!("The object name is not valid here: {why}."),
        ),
        StoreError::Io(error) => {
            tracing::warn!(%error, "sandbox OSS storage failed");
            OssError::internal()
        }
    }
}

#[cfg(test)]
mod tests;
