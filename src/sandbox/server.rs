//! The HTTP/1.1 side: accept loop, keep-alive connections, request → [`Params`] (and, for an
//! `ACS3-HMAC-SHA256` request, what its signature covers), routing (`/latest/…` is the ECS
//! metadata service, `/__sandbox/…` the sandbox's own paths, `/BUCKET/KEY` without an `Action`
//! OSS — see [`oss::routes_to_oss`] — everything else the API), and the two ways a request
//! ends — an answer (an OSS body possibly trickling out), or a reset (the connection dropped
//! with `SO_LINGER` 0, so the client sees a TCP RST instead of any bytes).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::auth::V3Request;
use super::engine::{Engine, Outcome};
use super::oss::{self, OssOutcome, OssReply, OssRequest};
use super::params::Params;
use super::response::Reply;

const MAX_BODY: usize = 1 << 20;
/// How long shutdown waits for in-flight requests before cutting connections.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// A slow OSS body is sent in this many pieces, evenly spread.
const TRICKLE_PIECES: usize = 8;

type Body = BoxBody<Bytes, Infallible>;
type Answer = Result<Response<Body>, Infallible>;

/// Serves until `shutdown` turns true (or its sender goes), then drains connections.
pub(crate) async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let for_connections = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, Arc::clone(&engine), for_connections.clone()));
                }
                Err(error) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "sandbox accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_LIMIT, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
}

/// Resolves once shutdown is asked for (or nobody can ask any more).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// One keep-alive connection; a request that must end in a reset notifies `kill`.
async fn connection(stream: TcpStream, engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let kill = Arc::new(Notify::new());
    let service = {
        let kill = Arc::clone(&kill);
        service_fn(move |request| {
            let answer: Pin<Box<dyn Future<Output = Answer> + Send>> =
                Box::pin(respond(Arc::clone(&engine), Arc::clone(&kill), request));
            answer
        })
    };
    let mut conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = &mut conn => return,
            _ = kill.notified() => {
                let stream = conn.into_parts().io.into_inner();
                // Linger 0 turns the close into an RST: the client gets no answer at all.
                let _ = stream.set_zero_linger();
                return;
            }
            () = stopped(&mut shutdown), if !draining => {
                draining = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
        }
    }
}

/// Routes a request: the sandbox's own paths, the ECS metadata service, OSS, else the API.
async fn respond(engine: Arc<Engine>, kill: Arc<Notify>, request: Request<Incoming>) -> Answer {
    let path = request.uri().path();
    if path.starts_with("/__sandbox/") {
        let reply = sandbox_path(&engine, request.method(), path, request.uri().query());
        return Ok(to_response(reply));
    }
    if path.starts_with("/latest/") {
        return Ok(to_response(metadata(&engine, &request)));
    }
    let acs_action = request.headers().contains_key("x-acs-action");
    if oss::routes_to_oss(path, request.uri().query(), acs_action) {
        return oss_respond(engine, kill, request).await;
    }
    api_respond(engine, kill, request).await
}

/// An ECS metadata request, answered from its method, path and headers.
fn metadata(engine: &Engine, request: &Request<Incoming>) -> Reply {
    let headers = request.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    engine.metadata(request.method(), request.uri().path(), header)
}

/// An API request: GET or POST only, read whole, then handled in a task of its own and
/// answered, or reset.
async fn api_respond(engine: Arc<Engine>, kill: Arc<Notify>, request: Request<Incoming>) -> Answer {
    let method = request.method().clone();
    if method != Method::GET && method != Method::POST {
        let body =
            serde_json::json!({"Code": "UnsupportedHTTPMethod", "Message": "Use GET or POST."});
        return Ok(to_response(Reply::json(405, &body)));
    }
    let (params, v3) = match read_api_request(&method, request).await {
        Ok(read) => read,
        Err(reply) => return Ok(to_response(reply)),
    };
    // Like a real gateway, the sandbox goes on with a request whose client went away (a kill,
    // a timeout): it is handled in a task of its own, so dropping the connection does not cancel
    // it, and a request still in its latency is applied after the client is gone.
    let handling = {
        let engine = Arc::clone(&engine);
        let method = method.as_str().to_owned();
        tokio::spawn(async move { engine.handle_request(&method, params, v3).await })
    };
    let Ok(outcome) = handling.await else {
        return Ok(to_response(Reply::gateway_page()));
    };
    match outcome {
        Outcome::Reply(reply) => Ok(to_response(reply)),
        Outcome::Reset => {
            kill.notify_one();
            // The connection task drops this future along with the connection.
            std::future::pending().await
        }
    }
}

/// An API request's params (query, and a form body's) and, for a V3-signed request, what its
/// signature covers; an unreadable or oversized body is answered with a 413 instead.
async fn read_api_request(
    method: &Method,
    request: Request<Incoming>,
) -> Result<(Params, Option<V3Request>), Reply> {
    let query = request.uri().query().map(str::to_string);
    let v3 = is_v3_signed(request.headers());
    let path = request.uri().path().to_string();
    let headers = if v3 {
        header_pairs(request.headers())
    } else {
        Vec::new()
    };
    let is_form = is_form(request.headers());
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let body = serde_json::json!({"Code": "InvalidParameter", "Message": "The body is unreadable or over 1 MiB."});
            return Err(Reply::json(413, &body));
        }
    };
    let mut params = Params::parse(query.as_deref(), if is_form { &body } else { &[] });
    let v3 = v3.then(|| {
        let request = V3Request {
            method: method.as_str().to_string(),
            path,
            query: Params::parse(query.as_deref(), &[]).signed_pairs(),
            headers,
            body_hash: crate::sign::v3::hashed_payload(&body),
        };
        lift_v3_headers(&request, &mut params);
        request
    });
    Ok((params, v3))
}

/// Whether the request's `Authorization` is an `ACS3-HMAC-SHA256` signature.
fn is_v3_signed(headers: &HeaderMap) -> bool {
    headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(crate::sign::v3::ALGORITHM))
}

/// Whether the body is a URL-encoded form (whose fields are params too).
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// Every header whose value is text, as (name, value) pairs; names are lower case.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Action, version and nonce travel as headers in V3; the rest of the trip reads params.
fn lift_v3_headers(request: &V3Request, params: &mut Params) {
    for (header, param) in [
        ("x-acs-action", "Action"),
        ("x-acs-version", "Version"),
        ("x-acs-signature-nonce", "SignatureNonce"),
    ] {
        if let Some(value) = request.header(header) {
            params.set(param, value);
        }
    }
}

/// An OSS object request: read whole (PUT bodies up to [`oss::MAX_PUT_BODY`]), answered in a
/// blocking task of its own (a folder store reads files; the request lands even if the client
/// goes away), then sent at once, trickled, or reset.
async fn oss_respond(engine: Arc<Engine>, kill: Arc<Notify>, request: Request<Incoming>) -> Answer {
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("sandbox")
        .to_string();
    let headers = header_pairs(request.headers());
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let body = match Limited::new(request.into_body(), oss::MAX_PUT_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let error = oss::OssError::new(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size (the sandbox takes 64 MiB).",
            );
            return Ok(oss_response(error.into_reply("", &host, method == "HEAD")));
        }
    };
    let request = OssRequest {
        method,
        path,
        query,
        headers,
        body,
    };
    let handling = tokio::task::spawn_blocking(move || engine.oss_request(&request, &host));
    match handling.await {
        Ok(OssOutcome::Reply(mut reply)) => {
            // An answer without a body (a PUT's, a HEAD's) is held whole: a client that reads
            // only the status would not notice a trickle of nothing.
            if reply.body.is_empty()
                && let Some(over) = reply.trickle.take()
            {
                tokio::time::sleep(over).await;
            }
            Ok(oss_response(reply))
        }
        Ok(OssOutcome::Reset) => {
            kill.notify_one();
            std::future::pending().await
        }
        Err(_) => Ok(to_response(Reply::gateway_page())),
    }
}

fn oss_response(reply: OssReply) -> Response<Body> {
    let body = match reply.trickle {
        Some(over) => trickle(reply.body, over),
        None if reply.body.is_empty() => Full::new(Bytes::new()).boxed(),
        None => Full::new(reply.body).boxed(),
    };
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// `body` in [`TRICKLE_PIECES`] pieces spread over `over` (an empty body: held that long).
fn trickle(body: Bytes, over: Duration) -> Body {
    let piece = body.len().div_ceil(TRICKLE_PIECES).max(1);
    let pause = over / TRICKLE_PIECES as u32;
    let pieces: Vec<Bytes> = if body.is_empty() {
        vec![Bytes::new(); TRICKLE_PIECES]
    } else {
        body.chunks(piece).map(Bytes::copy_from_slice).collect()
    };
    let stream = futures::StreamExt::then(futures::stream::iter(pieces), move |piece| async move {
        tokio::time::sleep(pause).await;
        Ok::<_, Infallible>(hyper::body::Frame::data(piece))
    });
    StreamBody::new(stream).boxed()
}

/// Unsigned sandbox-only paths: `GET /__sandbox/state` dumps the snapshot, and
/// `GET /__sandbox/credentials` hands out temporary credentials (a credentials URI).
fn sandbox_path(engine: &Engine, method: &Method, path: &str, query: Option<&str>) -> Reply {
    match (method, path) {
        (&Method::GET, "/__sandbox/credentials") => engine.credentials_uri(query),
        (&Method::GET, "/__sandbox/state") => match serde_json::to_value(engine.snapshot()) {
            Ok(snapshot) => Reply::json(200, &snapshot),
            Err(error) => Reply::json(500, &serde_json::json!({"Message": error.to_string()})),
        },
        _ => Reply::json(
            404,
            &serde_json::json!({"Message": "Only GET /__sandbox/state and GET /__sandbox/credentials exist."}),
        ),
    }
}

fn to_response(reply: Reply) -> Response<Body> {
    let mut response = Response::new(Full::new(reply.body).boxed());
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if let Some(value) = reply
        .request_id
        .and_then(|id| HeaderValue::from_str(&id).ok())
    {
        headers.insert("x-acs-request-id", value);
    }
    if let Some(ms) = reply.retry_after_ms {
        headers.insert("x-acs-retry-after", HeaderValue::from(ms));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_an_acs3_authorization_counts_as_v3() {
        let v3 = headers(&[(
            "authorization",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=b",
        )]);
        assert!(is_v3_signed(&v3));
        assert!(!is_v3_signed(&headers(&[("authorization", "Bearer x")])));
        assert!(!is_v3_signed(&HeaderMap::new()));
    }

    #[test]
    fn a_form_is_known_by_its_content_type_in_any_case() {
        let form = |value| is_form(&headers(&[("content-type", value)]));
        assert!(form("application/x-www-form-urlencoded"));
        assert!(form(" Application/X-WWW-Form-URLencoded; charset=utf-8"));
        assert!(!form("application/json"));
        assert!(!is_form(&HeaderMap::new()));
    }

    #[test]
    fn header_pairs_leave_out_values_that_are_not_text() {
        let mut map = headers(&[("host", "example.test"), ("x-acs-action", "Ping")]);
        map.insert("x-bin", HeaderValue::from_bytes(&[0xff, 0xfe]).unwrap());
        let mut pairs = header_pairs(&map);
        pairs.sort();
        assert_eq!(
            pairs,
            vec![
                ("host".to_string(), "example.test".to_string()),
                ("x-acs-action".to_string(), "Ping".to_string()),
            ]
        );
    }

    #[test]
    fn v3_headers_become_params_and_empty_ones_are_skipped() {
        let request = V3Request {
            method: "POST".to_string(),
            path: "/".to_string(),
            query: Vec::new(),
            headers: vec![
                ("x-acs-action".to_string(), "SearchFace".to_string()),
                ("x-acs-version".to_string(), String::new()),
                ("x-acs-signature-nonce".to_string(), "n-1".to_string()),
            ],
            body_hash: String::new(),
        };
        let mut params = Params::parse(Some("Action=Old&Version=2019"), &[]);
        lift_v3_headers(&request, &mut params);
        assert_eq!(params.get("Action"), Some("SearchFace"));
        assert_eq!(params.get("Version"), Some("2019"));
        assert_eq!(params.get("SignatureNonce"), Some("n-1"));
    }
}
