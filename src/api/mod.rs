//! The signed client for MTS and ICE: one call is one attempt (retrying is the pipeline's job).
//!
//! Every call is a POST with every parameter in the query string and an empty body, signed with
//! RPC v1 (api-notes §3: the signature in the query) or ACS3-HMAC-SHA256 (§8: `x-acs-*` headers and
//! `Authorization`), with a fresh nonce and timestamp and the provider's current credentials.
//! One `reqwest::Client` (one connection pool) is built per `Client` and shared by its clones.

mod error;
mod fetch;
mod ice;
pub mod links;
mod objects;
pub use fetch::{Fetched, Validators};
pub use objects::{ObjectProbe, Uploaded};
mod mts;
mod persons;
mod response;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::credentials::{self, Credentials, CredentialsError, Provider};
use crate::sign::{self, SignatureVersion};

pub use error::{ApiError, ErrorClass, classify, is_download_refusal};
pub use ice::{
    Algorithm, CreatedEntity, CreatedLib, CreatedSample, Entity, Lib, Page, Sample,
    UnknownAlgorithm,
};
pub use mts::{
    Category, CustomPersons, Face, Person, RegisterFace, RegisterFaceResponse, Scope, TagPerson,
};
pub use persons::{CategoryHead, FaceRef, PersonRef, PersonsBody};

/// A success that returns nothing but its request id (deletes, unregistrations, tags).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    pub request_id: Option<String>,
}

impl Ack {
    fn from_answer(v: &Value) -> Ack {
        Ack {
            request_id: response::text(response::object(v), "RequestId"),
        }
    }
}

/// Base URLs (ending in `/`) of the two services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub mts: String,
    pub ice: String,
}

impl Endpoints {
    /// The public endpoints of a region: `https://mts.<region>.aliyuncs.com/` and the ICE one.
    pub fn for_region(region: &str) -> Endpoints {
        Endpoints {
            mts: format!("https://mts.{region}.aliyuncs.com/"),
            ice: format!("https://ice.{region}.aliyuncs.com/"),
        }
    }

    /// Both services at one URL (`--endpoint`, e.g. the sandbox); adds the trailing `/`.
    pub fn single(url: &str) -> Result<Endpoints, ApiError> {
        let parsed = parse_endpoint(url)?;
        let mut base = parsed.as_str().to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(Endpoints {
            mts: base.clone(),
            ice: base,
        })
    }
}

fn parse_endpoint(url: &str) -> Result<reqwest::Url, ApiError> {
    // Never echo user info (it may hold a password) in a message.
    let shown = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}(redacted)@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    };
    let invalid =
        |why: &str| ApiError::config("InvalidEndpoint", format!("endpoint '{shown}' {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            "must start with https:// (or http:// for a loopback sandbox)",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("must not carry a query or fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("must not carry credentials"));
    }
    Ok(parsed)
}

/// `localhost` or a loopback IP: the only hosts plain http:// may go to.
pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
    crate::net::is_loopback_host(url.host_str().unwrap_or_default())
}

/// The remote service a call goes to; each has its own API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// Media Processing, version 2014-06-18.
    Mts,
    /// Intelligent Media Services, version 2020-11-09.
    Ice,
}

impl Service {
    pub fn version(self) -> &'static str {
        match self {
            Service::Mts => "2014-06-18",
            Service::Ice => "2020-11-09",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Mts => "MTS",
            Service::Ice => "ICE",
        })
    }
}

/// What `Client::new` needs. `credentials` is a [`Provider`], or anything that becomes one (fixed
/// [`Credentials`]).
#[derive(Clone, Debug)]
pub struct ClientConfig<C = Provider> {
    pub endpoints: Endpoints,
    pub credentials: C,
    /// How requests are signed; see [`SignatureVersion`] for why V3 is the default.
    pub signature: SignatureVersion,
    /// Whole-attempt deadline: connect, send, and read the answer.
    pub timeout: Duration,
    pub max_idle_per_host: usize,
}

/// The signed client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoints: Endpoints,
    credentials: Provider,
    signature: SignatureVersion,
    /// Host header and path of each base URL, as the V3 signature covers them.
    mts_target: Target,
    ice_target: Target,
    /// How `oss://` images are signed into links, when the run has such rows.
    oss: std::sync::OnceLock<links::OssLinks>,
}

/// A base URL, parsed once (each request only sets its query), and what a V3 signature covers
/// of it: the `host` header as sent, and the path.
#[derive(Clone, Debug)]
struct Target {
    base: reqwest::Url,
    host: String,
    path: String,
}

impl Target {
    fn of(url: &reqwest::Url) -> Target {
        let host = url.host_str().unwrap_or_default();
        Target {
            base: url.clone(),
            host: match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            },
            path: url.path().to_string(),
        }
    }

    /// The base URL with `query` (already percent-encoded, so kept as it is).
    fn with_query(&self, query: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        url.set_query(Some(query));
        url
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .field("credentials", &self.inner.credentials)
            .field("signature", &self.inner.signature)
            .finish_non_exhaustive()
    }
}

/// Where a transport failure happened: before the answer's headers, or while reading its body.
#[derive(Clone, Copy)]
enum Phase {
    Send,
    Body,
}

/// The most a `Content-Length` makes the client reserve before the body arrives.
const MAX_PRESIZE: u64 = 256 << 20;

/// An answer as received, before it is interpreted.
struct Received {
    status: u16,
    /// `x-acs-retry-after`, milliseconds (errors only).
    retry_after: Option<Vec<u8>>,
    request_id: Option<String>,
    body: bytes::Bytes,
}

impl Received {
    fn answer(&self) -> response::Answer<'_> {
        response::Answer {
            status: self.status,
            body: &self.body,
            retry_after: self.retry_after.as_deref(),
            request_id: self.request_id.as_deref(),
        }
    }
}

impl Client {
    /// Builds the client: https through rustls; plain http only to a loopback host (the sandbox).
    pub fn new<C: Into<Provider>>(cfg: ClientConfig<C>) -> Result<Client, ApiError> {
        let mut all_loopback = true;
        let mut targets = Vec::with_capacity(2);
        for url in [&cfg.endpoints.mts, &cfg.endpoints.ice] {
            let parsed = parse_endpoint(url)?;
            targets.push(Target::of(&parsed));
            let loopback = is_loopback(&parsed);
            all_loopback &= loopback;
            if parsed.scheme() == "http" && !loopback {
                return Err(ApiError::config(
                    "InsecureEndpoint",
                    format!(
                        "refusing plain http:// to {}: credentials and signed requests must go over \
                         https://; http:// is only allowed to a loopback sandbox",
                        parsed.host_str().unwrap_or_default()
                    ),
                ));
            }
        }
        // reqwest's `rustls-no-provider` feature needs a process-wide provider; installing twice
        // is harmless (the second attempt reports the first one is there).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .timeout(cfg.timeout)
            // Shorter than the whole deadline, so a slow connect (nothing sent) is told apart
            // from a slow answer (outcome unknown).
            .connect_timeout(cfg.timeout / 2)
            .pool_max_idle_per_host(cfg.max_idle_per_host)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("face-enroll/", env!("CARGO_PKG_VERSION")));
        if all_loopback {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| {
            ApiError::config("ClientBuild", format!("cannot build the HTTP client: {e}"))
        })?;
        let ice_target = targets.pop().expect("two endpoints were parsed");
        let mts_target = targets.pop().expect("two endpoints were parsed");
        let inner = Inner {
            http,
            endpoints: cfg.endpoints,
            credentials: cfg.credentials.into(),
            signature: cfg.signature,
            mts_target,
            ice_target,
            oss: std::sync::OnceLock::new(),
        };
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    /// Signs `oss://` images into links with these settings (once; later calls are ignored).
    pub fn set_oss_links(&self, links: links::OssLinks) {
        let _ = self.inner.oss.set(links);
    }

    /// An `ImageUrl` that names `oss://BUCKET/KEY`, signed into a link for this attempt.
    fn sign_image(&self, creds: &Credentials, address: &str) -> Result<links::Signed, ApiError> {
        let links = self.inner.oss.get().ok_or_else(|| {
            ApiError::config(
                "NoOssEndpoint",
                format!("{address} is an OSS object, but no OSS region or endpoint is set (--oss-region, --oss-endpoint)"),
            )
        })?;
        links.sign(
            address,
            creds,
            self.inner.credentials.expiration(),
            crate::clock::now_utc(),
        )
    }

    /// A presigned GET link to `address` (`oss://BUCKET/KEY`), signed now with the current
    /// credentials for the `--link-ttl` (less with temporary ones). The link is a secret: the
    /// caller sends it, or writes it where it was asked for, and nowhere else.
    pub async fn sign_link(&self, address: &str) -> Result<links::Signed, ApiError> {
        let creds = self
            .inner
            .credentials
            .credentials()
            .await
            .map_err(unavailable)?;
        self.sign_image(&creds, address)
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    /// One signed attempt of `action` with `params` (the common parameters are added here).
    pub async fn call(
        &self,
        service: Service,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, ApiError> {
        self.attempt(service, action, params, None, |received| {
            response::interpret(received.answer())
        })
        .await
    }

    /// [`Client::call`] for an answer too large to parse into a tree: a success's body as
    /// received (the caller parses it), an error as `call` gives it.
    pub async fn call_body(
        &self,
        service: Service,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<(u16, bytes::Bytes), ApiError> {
        self.attempt(service, action, params, None, |received| {
            if (200..300).contains(&received.status) {
                return Ok((received.status, received.body.clone()));
            }
            let parsed: Option<Value> = serde_json::from_slice(&received.body).ok();
            Err(response::failure(received.answer(), parsed.as_ref()))
        })
        .await
    }

    /// [`Client::call_body`] whose success's body is not kept: it goes to `chunks` piece by
    /// piece as it arrives (for a reader on another thread), and the status is returned. An
    /// error is read whole and given as `call` gives it. `chunks` is closed at the end either
    /// way; a body cut short is an error here, whatever its reader made of the part it got.
    pub async fn call_streamed(
        &self,
        service: Service,
        action: &str,
        params: &[(&str, &str)],
        chunks: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<u16, ApiError> {
        self.attempt(service, action, params, Some(chunks), |received| {
            if (200..300).contains(&received.status) {
                return Ok(received.status);
            }
            let parsed: Option<Value> = serde_json::from_slice(&received.body).ok();
            Err(response::failure(received.answer(), parsed.as_ref()))
        })
        .await
    }

    async fn attempt<R>(
        &self,
        service: Service,
        action: &str,
        params: &[(&str, &str)],
        chunks: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
        finish: impl FnOnce(&Received) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let provider = &self.inner.credentials;
        let creds = provider.credentials().await.map_err(unavailable)?;
        let link = match params
            .iter()
            .find(|(name, value)| *name == "ImageUrl" && value.starts_with("oss://"))
        {
            Some((_, address)) => Some(self.sign_image(&creds, address)?),
            None => None,
        };
        let with_link: Vec<(&str, &str)>;
        let params = match &link {
            Some(link) => {
                with_link = params
                    .iter()
                    .map(|&(name, value)| match name {
                        "ImageUrl" => (name, link.url.as_str()),
                        _ => (name, value),
                    })
                    .collect();
                &with_link[..]
            }
            None => params,
        };
        let (nonce, timestamp) = (new_nonce(), timestamp_now());
        let request = match self.inner.signature {
            SignatureVersion::V1 => {
                let url = self.signed_url(&creds, service, action, params, &nonce, &timestamp);
                self.inner.http.post(url)
            }
            SignatureVersion::V3 => {
                let (url, headers) =
                    self.v3_request(&creds, service, action, params, &nonce, &timestamp);
                self.v3_builder(url, headers)
            }
        };
        let result = match self.send(request, chunks).await {
            Ok(received) => {
                finish(&received).map_err(|e| scrub_link(link.as_ref(), scrub(&creds, e)))
            }
            Err(e) => Err(e),
        };
        match result {
            // The token ran out before its announced expiry (or the clock is off): nothing was
            // applied. Renewable credentials make it a retry with new ones; fixed ones cannot
            // get better, so the run stops.
            Err(e) if e.code().starts_with(credentials::EXPIRED_TOKEN) => {
                if provider.invalidate(&creds) {
                    Err(e)
                } else {
                    Err(e.reclassify(ErrorClass::RunFatal))
                }
            }
            other => other,
        }
    }

    /// Sends the request and reads the answer; a success's body goes to `chunks` instead of
    /// the answer, when given.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        chunks: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    ) -> Result<Received, ApiError> {
        let mut resp = request
            .send()
            .await
            .map_err(|e| self.transport(e, Phase::Send))?;
        let status = resp.status().as_u16();
        let headers = resp.headers();
        let (retry_after, request_id) = if resp.status().is_success() {
            (None, None)
        } else {
            let retry = headers
                .get("x-acs-retry-after")
                .map(|v| v.as_bytes().to_vec());
            let rid = headers
                .get("x-acs-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (retry, rid)
        };
        if let Some(chunks) = chunks.filter(|_| resp.status().is_success()) {
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| self.transport(e, Phase::Body))?
            {
                // A reader that stopped (it failed) wants no more; the answer is still read to
                // its end, as `call_body` reads it.
                let _ = chunks.send(chunk).await;
            }
            return Ok(Received {
                status,
                retry_after,
                request_id,
                body: bytes::Bytes::new(),
            });
        }
        // Chunk by chunk into one buffer: collecting the body first and then joining its
        // chunks would hold a large answer (a whole library's listing) twice.
        let expected = resp.content_length().unwrap_or(0).min(MAX_PRESIZE) as usize;
        let mut body = Vec::with_capacity(expected);
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport(e, Phase::Body))?
        {
            body.extend_from_slice(&chunk);
        }
        Ok(Received {
            status,
            retry_after,
            request_id,
            body: body.into(),
        })
    }

    /// The full request URL: base, canonical query (already percent-encoded), signature.
    pub(crate) fn signed_url(
        &self,
        creds: &Credentials,
        service: Service,
        action: &str,
        params: &[(&str, &str)],
        nonce: &str,
        timestamp: &str,
    ) -> reqwest::Url {
        let mut all: Vec<(String, String)> = Vec::with_capacity(params.len() + 9);
        let common = [
            ("Action", action),
            ("Version", service.version()),
            ("Format", "JSON"),
            ("AccessKeyId", creds.access_key_id.as_str()),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce),
            ("Timestamp", timestamp),
        ];
        all.extend(
            common
                .iter()
                .chain(params)
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        if let Some(token) = &creds.security_token {
            all.push(("SecurityToken".to_string(), token.expose().to_string()));
        }
        let signature = sign::sign("POST", creds.access_key_secret.expose(), &all);
        let mut query = sign::canonical_query(&all);
        query.push_str("&Signature=");
        query.push_str(&sign::percent_encode(&signature));
        self.target(service).with_query(&query)
    }

    fn target(&self, service: Service) -> &Target {
        match service {
            Service::Mts => &self.inner.mts_target,
            Service::Ice => &self.inner.ice_target,
        }
    }

    /// The V3 request: the URL (parameters in the query) and the headers to send, `Authorization`
    /// last. `host` is signed but not returned: the HTTP client sends exactly that value.
    pub(crate) fn v3_request(
        &self,
        creds: &Credentials,
        service: Service,
        action: &str,
        params: &[(&str, &str)],
        nonce: &str,
        timestamp: &str,
    ) -> (reqwest::Url, Vec<(&'static str, String)>) {
        let target = self.target(service);
        let query: Vec<(String, String)> = std::iter::once(("Format", "JSON"))
            .chain(params.iter().copied())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let hashed = sign::v3::hashed_payload(b"");
        let mut sent: Vec<(&'static str, String)> = vec![
            ("x-acs-action", action.to_string()),
            ("x-acs-version", service.version().to_string()),
            ("x-acs-date", timestamp.to_string()),
            ("x-acs-signature-nonce", nonce.to_string()),
            ("x-acs-content-sha256", hashed.clone()),
        ];
        if let Some(token) = &creds.security_token {
            sent.push(("x-acs-security-token", token.expose().to_string()));
        }
        let signed: Vec<(String, String)> = std::iter::once(("host", target.host.clone()))
            .chain(sent.iter().cloned())
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let request = sign::v3::Request {
            method: "POST",
            path: &target.path,
            query: &query,
            headers: &signed,
            hashed_payload: &hashed,
        };
        let authorization = sign::v3::authorization(
            &creds.access_key_id,
            creds.access_key_secret.expose(),
            &request,
        );
        sent.push(("authorization", authorization));
        (target.with_query(&sign::canonical_query(&query)), sent)
    }

    /// The request with `headers` in a map sized for them up front (the names are known
    /// constants). A value a header cannot carry is handed to reqwest's builder instead, whose
    /// error `send` reports as before.
    fn v3_builder(
        &self,
        url: reqwest::Url,
        headers: Vec<(&'static str, String)>,
    ) -> reqwest::RequestBuilder {
        use reqwest::header::{HeaderName, HeaderValue};
        let mut request = reqwest::Request::new(reqwest::Method::POST, url);
        let map = request.headers_mut();
        // The client's default headers are merged into this map too.
        map.reserve(headers.len() + 2);
        for (name, value) in &headers {
            match HeaderValue::from_str(value) {
                Ok(value) => {
                    map.append(HeaderName::from_static(name), value);
                }
                Err(_) => {
                    let url = request.url().clone();
                    return self.inner.http.post(url).header(*name, value.as_str());
                }
            }
        }
        reqwest::RequestBuilder::from_parts(self.inner.http.clone(), request)
    }

    fn transport(&self, error: reqwest::Error, phase: Phase) -> ApiError {
        let (class, code) = transport_class(&error, phase);
        let answered = matches!(phase, Phase::Body);
        // Only the host of the URL: its query carries the security token.
        let host = error
            .url()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)));
        let error = error.without_url();
        let mut message = crate::net::describe(&error);
        // What failed and where, first: the line on-call reads when nothing got through.
        let host = host.as_deref().unwrap_or("the endpoint");
        match code {
            // The status line came back and the body broke off: the service answered.
            _ if answered => {}
            "ConnectFailed" => {
                let what = crate::net::connect_failure(&error);
                message = format!("{what} connecting to {host}: {message}");
            }
            "Timeout" => message = format!("timed out waiting for {host} to answer: {message}"),
            "ConnectionReset" => {
                message = format!("connection to {host} reset before an answer: {message}");
            }
            _ => {}
        }
        let error = ApiError::with_class(class, None, code, message);
        if answered {
            error.after_answer()
        } else {
            error
        }
    }
}

/// A server may echo the token back (in a string-to-sign): never let it reach a message.
fn scrub(creds: &Credentials, error: ApiError) -> ApiError {
    match &creds.security_token {
        Some(token) => {
            let raw = token.expose();
            let once = sign::percent_encode(raw);
            let twice = sign::percent_encode(&once);
            error.scrub(&twice).scrub(&once).scrub(raw)
        }
        None => error,
    }
}

/// An error that echoes the link this attempt sent says the `oss://` address instead.
/// It is marked as carrying a link this tool signed.
fn scrub_link(link: Option<&links::Signed>, error: ApiError) -> ApiError {
    match link {
        Some(link) => error
            .scrub_as(&link.url, &link.address)
            .scrub(&link.signature)
            .with_signed_link(),
        None => error,
    }
}

/// No credentials to sign with (renewal failed and the old ones expired): nothing was sent, and
/// the run cannot go on without them.
fn unavailable(error: CredentialsError) -> ApiError {
    ApiError::with_class(
        ErrorClass::RunFatal,
        None,
        "CredentialsUnavailable",
        error.to_string(),
    )
}

/// Connect failures sent nothing; everything after the connection may have been applied.
fn transport_class(error: &reqwest::Error, phase: Phase) -> (ErrorClass, &'static str) {
    if matches!(phase, Phase::Send) && error.is_connect() {
        return (ErrorClass::Transient, "ConnectFailed");
    }
    let code = if error.is_timeout() {
        "Timeout"
    } else if is_reset(error) {
        "ConnectionReset"
    } else if matches!(phase, Phase::Body) {
        "BodyReadFailed"
    } else {
        "RequestFailed"
    };
    (ErrorClass::OutcomeUnknown, code)
}

fn is_reset(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    let mut source = Some(error);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            )
        {
            return true;
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_closed() || h.is_canceled())
        {
            return true;
        }
        source = err.source();
    }
    false
}

fn new_nonce() -> String {
    use rand::RngExt;
    // A UUIDv4 from the thread's CSPRNG (seeded from the OS, reseeded periodically): no system
    // call per request, unlike asking the OS for 16 bytes every time.
    let bytes: [u8; 16] = rand::rng().random();
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_string()
}

/// Now, UTC, `YYYY-MM-DDThh:mm:ssZ` (no fractions: the services refuse them).
fn timestamp_now() -> String {
    crate::clock::seconds_text(crate::clock::now_utc())
}

#[cfg(test)]
mod tests;
