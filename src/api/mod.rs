//! The signed client for MTS and ICE: one call is one attempt (retrying is the pipeline's job).
//!
//! Every call is a POST with every parameter in the query string and an empty body, signed with
//! RPC v1 (api-notes §3: the signature in the query) or ACS3-HMAC-SHA256 (§8: `x-acs-*` headers and
//! `Authorization`), with a fresh nonce and timestamp and the provider's current credentials.
//! One `reqwest::Client` (one connection pool) is built per `Client` and shared by its clones.

mod error;
mod ice;
mod mts;
mod persons;
mod response;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::credentials::{self, Credentials, CredentialsError, Provider};
use crate::sign::{self, SignatureVersion};

pub use error::{ApiError, ErrorClass, classify};
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
        };
        Ok(Client {
            inner: Arc::new(inner),
        })
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
        self.attempt(service, action, params, |received| {
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
        self.attempt(service, action, params, |received| {
            if (200..300).contains(&received.status) {
                return Ok((received.status, received.body.clone()));
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
        finish: impl FnOnce(&Received) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let provider = &self.inner.credentials;
        let creds = provider.credentials().await.map_err(unavailable)?;
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
        let result = match self.send(request).await {
            Ok(received) => finish(&received).map_err(|e| scrub(&creds, e)),
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

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Received, ApiError> {
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
        // Without the URL: its query carries the security token.
        let message = crate::net::describe(&error.without_url());
        ApiError::with_class(class, None, code, message)
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
mod tests {
    use super::*;
    use crate::credentials::Secret;

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "testId".into(),
            access_key_secret: Secret::new("testKeySecret"),
            security_token: token.map(Secret::new),
        }
    }

    fn client(url: &str, token: Option<&str>) -> Result<Client, ApiError> {
        Client::new(ClientConfig {
            endpoints: Endpoints::single(url)?,
            credentials: creds(token),
            signature: SignatureVersion::default(),
            timeout: Duration::from_secs(5),
            max_idle_per_host: 4,
        })
    }

    #[test]
    fn region_endpoints_are_https_per_service() {
        let e = Endpoints::for_region("cn-beijing");
        assert_eq!(e.mts, "https://mts.cn-beijing.aliyuncs.com/");
        assert_eq!(e.ice, "https://ice.cn-beijing.aliyuncs.com/");
    }

    #[test]
    fn single_endpoint_gets_a_trailing_slash_and_serves_both() {
        let e = Endpoints::single("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (e.mts.as_str(), e.ice.as_str()),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/")
        );
        let e = Endpoints::single("https://gw.example.com/api").unwrap();
        assert_eq!(e.mts, "https://gw.example.com/api/");
    }

    #[test]
    fn an_endpoint_with_credentials_is_refused_without_echoing_them() {
        let e = Endpoints::single("https://user:hunter2@gw.example.com/").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("must not carry credentials"), "{e}");
    }

    #[test]
    fn single_endpoint_refuses_non_urls_and_other_schemes() {
        for bad in [
            "",
            "mts.aliyuncs.com",
            "ftp://x/",
            "https://x/?a=b",
            "https://u:p@x/",
        ] {
            let e = Endpoints::single(bad).unwrap_err();
            assert_eq!(
                (e.code(), e.class()),
                ("InvalidEndpoint", ErrorClass::RunFatal),
                "{bad}"
            );
        }
    }

    #[test]
    fn plain_http_is_allowed_only_to_loopback_hosts() {
        for ok in [
            "http://127.0.0.1:1/",
            "http://127.8.9.10/",
            "http://[::1]:9/",
            "http://localhost:3/",
        ] {
            assert!(client(ok, None).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/",
            "http://example.com/",
            "http://localhost.evil.com/",
        ] {
            let e = client(bad, None).unwrap_err();
            assert_eq!(
                (e.code(), e.class()),
                ("InsecureEndpoint", ErrorClass::RunFatal),
                "{bad}"
            );
        }
        assert!(client("https://mts.cn-shanghai.aliyuncs.com/", None).is_ok());
    }

    #[test]
    fn signed_url_carries_every_common_parameter_and_a_valid_signature() {
        let c = client("http://127.0.0.1:1/", None).unwrap();
        let url = c.signed_url(
            &creds(None),
            Service::Mts,
            "ListCustomPersons",
            &[("PersonId", "a b*")],
            "n-1",
            "2024-01-02T03:04:05Z",
        );
        let (base, query) = url.as_str().split_once('?').unwrap();
        assert_eq!(base, "http://127.0.0.1:1/");
        let (unsigned, sig) = query.rsplit_once("&Signature=").unwrap();
        assert_eq!(
            unsigned,
            "AccessKeyId=testId&Action=ListCustomPersons&Format=JSON&PersonId=a%20b%2A&SignatureMethod=HMAC-SHA1\
             &SignatureNonce=n-1&SignatureVersion=1.0&Timestamp=2024-01-02T03%3A04%3A05Z&Version=2014-06-18"
        );
        let params: Vec<(String, String)> = [
            ("AccessKeyId", "testId"),
            ("Action", "ListCustomPersons"),
            ("Format", "JSON"),
            ("PersonId", "a b*"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "n-1"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2024-01-02T03:04:05Z"),
            ("Version", "2014-06-18"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            sig,
            sign::percent_encode(&sign::sign("POST", "testKeySecret", &params))
        );
    }

    #[test]
    fn sts_credentials_add_the_security_token_and_ice_uses_its_version() {
        let c = client("http://127.0.0.1:1/", Some("tok/en")).unwrap();
        let url = c.signed_url(
            &creds(Some("tok/en")),
            Service::Ice,
            "ListRecognitionLibs",
            &[],
            "n",
            "t",
        );
        assert!(url.as_str().contains("&SecurityToken=tok%2Fen&"), "{url}");
        assert!(url.as_str().contains("Version=2020-11-09"), "{url}");
    }

    #[test]
    fn a_v3_request_carries_every_header_once_and_a_value_no_header_can_carry_is_refused() {
        let c = client("http://127.0.0.1:8080/", None).unwrap();
        let url = reqwest::Url::parse("http://127.0.0.1:8080/?Format=JSON").unwrap();
        let sent = vec![
            ("x-acs-action", "RegisterCustomFace".to_string()),
            ("authorization", "ACS3-HMAC-SHA256 Credential=k".to_string()),
        ];
        let request = c.v3_builder(url.clone(), sent).build().unwrap();
        assert_eq!(request.url(), &url);
        assert_eq!(request.method(), reqwest::Method::POST);
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            headers,
            [
                ("x-acs-action", "RegisterCustomFace"),
                ("authorization", "ACS3-HMAC-SHA256 Credential=k")
            ]
        );
        // A token with a line break in it: an error from the builder, nothing sent.
        let bad = vec![("x-acs-security-token", "a\nb".to_string())];
        assert!(c.v3_builder(url, bad).build().is_err());
    }

    #[test]
    fn v3_requests_carry_the_acs_headers_and_an_authorization_the_vectors_agree_with() {
        let c = client("http://127.0.0.1:8080/", Some("tok/en")).unwrap();
        let (url, headers) = c.v3_request(
            &creds(Some("tok/en")),
            Service::Mts,
            "RegisterCustomFace",
            &[("PersonId", "a b*")],
            "n-1",
            "2024-01-02T03:04:05Z",
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/?Format=JSON&PersonId=a%20b%2A"
        );
        let names: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "x-acs-action",
                "x-acs-version",
                "x-acs-date",
                "x-acs-signature-nonce",
                "x-acs-content-sha256",
                "x-acs-security-token",
                "authorization"
            ]
        );
        assert!(
            !url.as_str().contains("tok"),
            "the token stays out of the URL: {url}"
        );
        let signed: Vec<(String, String)> =
            std::iter::once(("host".to_string(), "127.0.0.1:8080".to_string()))
                .chain(headers[..6].iter().map(|(k, v)| (k.to_string(), v.clone())))
                .collect();
        let query = [
            ("Format".to_string(), "JSON".to_string()),
            ("PersonId".to_string(), "a b*".to_string()),
        ];
        let expected = sign::v3::authorization(
            "testId",
            "testKeySecret",
            &sign::v3::Request {
                method: "POST",
                path: "/",
                query: &query,
                headers: &signed,
                hashed_payload: &sign::v3::hashed_payload(b""),
            },
        );
        assert_eq!(headers[6].1, expected);
        assert!(expected.contains("SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,"));
    }

    #[test]
    fn v3_signs_the_host_with_its_port_and_the_base_path() {
        let t = Target::of(&reqwest::Url::parse("https://gw.example.com/api/").unwrap());
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("gw.example.com", "/api/")
        );
        let t = Target::of(&reqwest::Url::parse("https://gw.example.com:443/").unwrap());
        assert_eq!(t.host, "gw.example.com", "the default port is not sent");
        let t = Target::of(&reqwest::Url::parse("http://127.0.0.1:9/").unwrap());
        assert_eq!(t.host, "127.0.0.1:9");
    }

    #[test]
    fn every_call_gets_a_fresh_uuid_nonce() {
        let (a, b) = (new_nonce(), new_nonce());
        assert_ne!(a, b);
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
    }

    #[test]
    fn timestamps_are_utc_seconds_with_a_z() {
        let t = time::macros::datetime!(2015-05-14 17:03:45.123 +08:00);
        assert_eq!(crate::clock::seconds_text(t), "2015-05-14T09:03:45Z");
        assert_eq!(timestamp_now().len(), 20);
    }

    #[test]
    fn errors_never_show_the_security_token_in_any_encoding() {
        let msg = "x. server string to sign is:POST&%2F&SecurityToken%3Da%252Fb%252Bc";
        let e = scrub(
            &creds(Some("a/b+c")),
            ApiError::new(Some(400), "SignatureDoesNotMatch", msg),
        );
        let shown = format!("{e} {e:?}");
        assert!(
            !shown.contains("a%252Fb") && !shown.contains("a/b+c"),
            "{shown}"
        );
    }

    #[test]
    fn client_debug_shows_the_key_id_but_not_the_secret() {
        let c = client("http://127.0.0.1:1/", Some("tok")).unwrap();
        let shown = format!("{c:?}");
        assert!(
            shown.contains("testId") && !shown.contains("testKeySecret") && !shown.contains("tok"),
            "{shown}"
        );
    }
}
