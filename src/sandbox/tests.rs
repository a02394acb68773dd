//! End-to-end tests over real loopback TCP: raw HTTP/1.1 in, the sandbox's answers out.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::sign;

/// Every pair of a correctly signed request (the signature last), fresh nonce and timestamp.
/// Values in `extra` replace the common ones of the same name.
pub(super) fn signed_pairs(
    method: &str,
    action: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let version = if action.contains("Recognition") {
        "2020-11-09"
    } else {
        "2014-06-18"
    };
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let timestamp = OffsetDateTime::now_utc().format(&format).unwrap();
    let nonce = uuid::Uuid::new_v4().to_string();
    let common = [
        ("AccessKeyId", DEFAULT_ACCESS_KEY_ID),
        ("Action", action),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", nonce.as_str()),
        ("SignatureVersion", "1.0"),
        ("Timestamp", timestamp.as_str()),
        ("Version", version),
    ];
    let mut pairs: Vec<(String, String)> = common
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(name, _)| name == k))
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let signature = sign::sign(method, DEFAULT_ACCESS_KEY_SECRET, &pairs);
    pairs.push(("Signature".into(), signature));
    pairs
}

fn encoded(pairs: &[(String, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", sign::percent_encode(k), sign::percent_encode(v)))
        .collect();
    parts.join("&")
}

/// A minimal keep-alive HTTP/1.1 client over one connection.
struct RawClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl RawClient {
    async fn connect(sandbox: &Sandbox) -> RawClient {
        RawClient {
            stream: TcpStream::connect(sandbox.addr()).await.unwrap(),
            buffer: Vec::new(),
        }
    }

    /// Sends `head` + `body`; `None` when the connection ends before a whole answer.
    async fn send(&mut self, head: &str, body: &str) -> Option<RawResponse> {
        let request = format!(
            "{head}Host: sandbox\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).await.ok()?;
        let head_end = loop {
            if let Some(at) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).to_string();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while self.buffer.len() < head_end + length {
            self.fill().await?;
        }
        let body = self.buffer[head_end..head_end + length].to_vec();
        self.buffer.drain(..head_end + length);
        Some(RawResponse { status, head, body })
    }

    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Some(())
            }
            _ => None,
        }
    }

    async fn post_query(&mut self, action: &str, extra: &[(&str, &str)]) -> Option<RawResponse> {
        let query = encoded(&signed_pairs("POST", action, extra));
        self.send(&format!("POST /?{query} HTTP/1.1\r\n"), "").await
    }
}

fn register_params(n: usize) -> Vec<(&'static str, String)> {
    vec![
        ("CategoryId", "staff".into()),
        ("PersonId", format!("p{n}")),
        (
            "ImageUrl",
            format!("http://img.example/{n}.jpg?size=large&v=1"),
        ),
    ]
}

fn borrow<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn a_signed_post_over_tcp_is_answered_and_applied_on_one_keep_alive_connection() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests()).await.unwrap();
    assert!(
        sandbox.base_url().starts_with("http://127.0.0.1:") && sandbox.base_url().ends_with('/')
    );
    let mut client = RawClient::connect(&sandbox).await;
    for n in 0..3 {
        let response = client
            .post_query("RegisterCustomFace", &borrow(&register_params(n)))
            .await
            .unwrap();
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        assert!(response.json()["FaceId"].is_string());
        assert!(
            response
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/json")
        );
    }
    let list = client
        .post_query("ListCustomPersons", &[("PersonId", "P1")])
        .await
        .unwrap();
    let face =
        &list.json()["Categories"]["Category"][0]["Persons"]["Person"][0]["Faces"]["Face"][0];
    assert_eq!(face["ImageUrl"], "http://img.example/1.jpg?size=large&v=1");
    assert_eq!(sandbox.snapshot().faces().count(), 3);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_form_body_post_and_a_get_are_accepted_with_their_own_method_signed() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests()).await.unwrap();
    let mut client = RawClient::connect(&sandbox).await;
    let body = encoded(&signed_pairs(
        "POST",
        "RegisterCustomFace",
        &borrow(&register_params(1)),
    ));
    let head = "POST / HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n";
    assert_eq!(client.send(head, &body).await.unwrap().status, 200);
    let query = encoded(&signed_pairs("GET", "ListCustomPersons", &[]));
    let response = client
        .send(&format!("GET /?{query} HTTP/1.1\r\n"), "")
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json()["Categories"]["Category"][0]["CategoryId"],
        "staff"
    );
    let post_signed_as_get = encoded(&signed_pairs("GET", "ListCustomPersons", &[]));
    let refused = client
        .send(&format!("POST /?{post_signed_as_get} HTTP/1.1\r\n"), "")
        .await
        .unwrap();
    assert_eq!(
        (refused.status, refused.json()["Code"].as_str()),
        (400, Some("SignatureDoesNotMatch"))
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_reset_fault_drops_the_connection_without_any_answer() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests()).await.unwrap();
    sandbox.script(
        "RegisterCustomFace",
        vec![Fault::ResetAfter, Fault::ResetBefore],
    );
    for expected_faces in [1, 1] {
        let mut client = RawClient::connect(&sandbox).await;
        let n = sandbox.snapshot().stats.requests as usize;
        assert!(
            client
                .post_query("RegisterCustomFace", &borrow(&register_params(n)))
                .await
                .is_none()
        );
        assert!(client.buffer.is_empty(), "not a single byte of an answer");
        assert_eq!(sandbox.snapshot().faces().count(), expected_faces);
    }
    let mut client = RawClient::connect(&sandbox).await;
    assert_eq!(
        client
            .post_query("RegisterCustomFace", &borrow(&register_params(9)))
            .await
            .unwrap()
            .status,
        200
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn throttling_carries_the_retry_after_header_when_configured() {
    let config = SandboxConfig {
        mts_qps: 1,
        retry_after_ms: Some(250),
        ..SandboxConfig::for_tests()
    };
    let sandbox = Sandbox::start(config).await.unwrap();
    let mut client = RawClient::connect(&sandbox).await;
    assert_eq!(
        client
            .post_query("ListCustomPersons", &[])
            .await
            .unwrap()
            .status,
        200
    );
    let throttled = client.post_query("ListCustomPersons", &[]).await.unwrap();
    assert_eq!(
        (throttled.status, throttled.json()["Code"].as_str()),
        (400, Some("Throttling.User"))
    );
    assert!(
        throttled
            .head
            .to_ascii_lowercase()
            .contains("x-acs-retry-after: 250"),
        "{}",
        throttled.head
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn the_state_path_dumps_the_snapshot_without_a_signature() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests()).await.unwrap();
    let face_id = sandbox.admin_register_face("Drift", "Eve", "http://img.example/eve.jpg");
    let mut client = RawClient::connect(&sandbox).await;
    let response = client
        .send("GET /__sandbox/state HTTP/1.1\r\n", "")
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let snapshot: StateSnapshot = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(snapshot, sandbox.snapshot());
    assert_eq!(
        snapshot.mts.categories[0].persons[0].faces[0].face_id,
        face_id
    );
    assert!(sandbox.admin_remove_face(&face_id));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let config = SandboxConfig {
        latency_ms: 150,
        ..SandboxConfig::for_tests()
    };
    let sandbox = Sandbox::start(config).await.unwrap();
    let mut client = RawClient::connect(&sandbox).await;
    let in_flight = tokio::spawn(async move {
        client
            .post_query("RegisterCustomFace", &borrow(&register_params(1)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let engine = Arc::clone(&sandbox.engine);
    sandbox.shutdown().await;
    assert_eq!(in_flight.await.unwrap().map(|r| r.status), Some(200));
    assert_eq!(engine.snapshot().faces().count(), 1);
}

#[test]
fn a_sandbox_thread_serves_synchronous_callers_and_stops_on_drop() {
    use std::io::{Read, Write};
    let sandbox = SandboxThread::spawn(SandboxConfig::for_tests()).unwrap();
    let query = encoded(&signed_pairs(
        "GET",
        "ListRecognitionLibs",
        &[
            ("Algorithm", "face"),
            ("PageNumber", "1"),
            ("PageSize", "10"),
        ],
    ));
    let mut stream = std::net::TcpStream::connect(sandbox.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /?{query} HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"TotalCount\":0"));
    assert_eq!(sandbox.snapshot().stats.by_action["ListRecognitionLibs"], 1);
    let addr = sandbox.addr();
    drop(sandbox);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing listens after drop"
    );
}
