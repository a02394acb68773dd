//! The sandbox's OSS over real loopback TCP: object PUT, GET and HEAD signed as the client
//! signs them, every refusal OSS gives, a folder-backed store, the service side's download of
//! an `ImageUrl` on it (MTS and ICE), and OSS faults — each asserted on the sandbox's state.

use std::time::{Duration, Instant};

use base64::Engine as _;
use face_enroll::api::{Algorithm, Client, ClientConfig, Endpoints, RegisterFace};
use face_enroll::credentials::{Credentials, Secret};
use face_enroll::sandbox::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, OssConfig, OssFault, Sandbox, SandboxConfig,
};
use face_enroll::sign::SignatureVersion;
use face_enroll::sign::oss::verify::{v1_signature, v1_string_to_sign};
use face_enroll::sign::oss::{
    Endpoint, Keys, ObjectRequest, OssObject, Presign, Received, presign_get, sign_request,
};
use time::OffsetDateTime;

const REGION: &str = "cn-hangzhou";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF a tiny test jpeg";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n a tiny test png";

const KEYS: Keys<'static> = Keys {
    access_key_id: DEFAULT_ACCESS_KEY_ID,
    secret: DEFAULT_ACCESS_KEY_SECRET,
    security_token: None,
};

async fn start(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("the sandbox starts")
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn endpoint(sb: &Sandbox) -> Endpoint {
    format!("http://{}", sb.addr()).parse().unwrap()
}

fn object(key: &str) -> OssObject {
    OssObject::new("photos", key).unwrap()
}

/// A V4 GET link to `object`, signed at `at`.
fn link(sb: &Sandbox, object: &OssObject, keys: Keys<'_>, at: OffsetDateTime, ttl: u64) -> String {
    presign_get(&Presign {
        object,
        region: REGION,
        endpoint: &endpoint(sb),
        keys,
        signed_at: at,
        expires_s: ttl,
        sign_host: false,
    })
    .unwrap()
}

/// `method` on `object` signed in its headers at `at`, with `headers` (signed too) and `body`.
async fn signed(
    sb: &Sandbox,
    method: &str,
    object: &OssObject,
    headers: &[(&str, &str)],
    body: &[u8],
    keys: Keys<'_>,
    at: OffsetDateTime,
) -> reqwest::Response {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let signature = sign_request(
        &ObjectRequest {
            method,
            object,
            query: &[],
            headers: &headers,
        },
        REGION,
        keys,
        at,
    )
    .unwrap();
    let url = endpoint(sb).object_url(object.bucket(), object.key());
    let mut request = http().request(method.parse().unwrap(), url);
    for (name, value) in headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .chain(signature.headers.iter().map(|(k, v)| (*k, v.clone())))
    {
        request = request.header(name, value);
    }
    request
        .header("Authorization", signature.authorization)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn put(sb: &Sandbox, object: &OssObject, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let now = OffsetDateTime::now_utc();
    let response = signed(sb, "PUT", object, headers, body, KEYS, now).await;
    response.status().as_u16()
}

fn md5_base64(body: &[u8]) -> String {
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// Status, and the `<Code>` and `<Message>` of an error body.
async fn refusal(response: reqwest::Response) -> (u16, String, String, String) {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let element = |name: &str| {
        body.split_once(&format!("<{name}>"))
            .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
            .map_or(String::new(), |(value, _)| value.to_string())
    };
    (status, element("Code"), element("Message"), body)
}

async fn temporary_keys(sb: &Sandbox) -> (String, String, String) {
    let url = format!("{}__sandbox/credentials", sb.base_url());
    let body = http().get(url).send().await.unwrap().bytes().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let text = |name: &str| body[name].as_str().unwrap().to_string();
    (
        text("AccessKeyId"),
        text("AccessKeySecret"),
        text("SecurityToken"),
    )
}

#[tokio::test]
async fn oss_put_then_head_and_get_return_the_object_with_oss_headers() {
    let sb = start(SandboxConfig::for_tests()).await;
    let photo = object("staff/alice 1.jpg");
    let md5 = md5_base64(JPEG);
    let headers = [
        ("Content-Type", "image/jpeg"),
        ("Content-MD5", md5.as_str()),
    ];
    assert_eq!(put(&sb, &photo, &headers, JPEG).await, 200);

    let now = OffsetDateTime::now_utc();
    let head = signed(&sb, "HEAD", &photo, &[], &[], KEYS, now).await;
    assert_eq!(head.status(), 200);
    let expected_etag = format!("\"{}\"", hex::encode_upper(md5::Md5::digest(JPEG)));
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header(&head, "etag"), Some(expected_etag.clone()));
    assert_eq!(
        header(&head, "content-length"),
        Some(JPEG.len().to_string())
    );
    assert_eq!(header(&head, "content-type").as_deref(), Some("image/jpeg"));
    let modified = header(&head, "last-modified").unwrap();
    assert!(modified.ends_with(" GMT"), "{modified}");
    assert!(header(&head, "x-oss-request-id").is_some());

    let got = http()
        .get(link(&sb, &photo, KEYS, now, 60))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(header(&got, "etag"), Some(expected_etag.clone()));
    assert_eq!(got.bytes().await.unwrap().as_ref(), JPEG);
    let by_header = signed(&sb, "GET", &photo, &[], &[], KEYS, now).await;
    assert_eq!(by_header.bytes().await.unwrap().as_ref(), JPEG);

    let state = sb.snapshot().oss;
    assert_eq!(state.objects.len(), 1);
    let stored = &state.objects[0];
    assert_eq!(
        (stored.bucket.as_str(), stored.key.as_str(), stored.size),
        ("photos", "staff/alice 1.jpg", JPEG.len() as u64)
    );
    assert_eq!(stored.etag, expected_etag);
    assert_eq!(stored.md5, hex::encode(md5::Md5::digest(JPEG)));
    let requests = &state.requests;
    assert_eq!(
        (requests.put, requests.head, requests.get, requests.refused),
        (1, 1, 2, 0)
    );
    sb.shutdown().await;
}

use md5::Digest as _;

#[tokio::test]
async fn oss_put_with_a_wrong_content_md5_is_invalid_digest_and_stores_nothing() {
    let sb = start(SandboxConfig::for_tests()).await;
    let wrong = md5_base64(b"another body");
    let now = OffsetDateTime::now_utc();
    let response = signed(
        &sb,
        "PUT",
        &object("a.jpg"),
        &[("Content-MD5", wrong.as_str())],
        JPEG,
        KEYS,
        now,
    )
    .await;
    let (status, code, _, _) = refusal(response).await;
    assert_eq!((status, code.as_str()), (400, "InvalidDigest"));
    assert!(sb.snapshot().oss.objects.is_empty());
    sb.shutdown().await;
}

#[tokio::test]
async fn oss_forbid_overwrite_on_an_existing_key_is_409_and_keeps_the_first_body() {
    let sb = start(SandboxConfig::for_tests()).await;
    let photo = object("a.jpg");
    let forbid = [("x-oss-forbid-overwrite", "true")];
    assert_eq!(put(&sb, &photo, &forbid, JPEG).await, 200);
    let now = OffsetDateTime::now_utc();
    let again = signed(&sb, "PUT", &photo, &forbid, PNG, KEYS, now).await;
    let (status, code, message, _) = refusal(again).await;
    assert_eq!(
        (status, code.as_str()),
        (409, "FileAlreadyExists"),
        "{message}"
    );
    let objects = sb.snapshot().oss.objects;
    assert_eq!(objects[0].size, JPEG.len() as u64, "the first body stays");
    assert_eq!(
        put(&sb, &photo, &[], PNG).await,
        200,
        "overwriting is allowed"
    );
    assert_eq!(sb.snapshot().oss.objects[0].size, PNG.len() as u64);
    sb.shutdown().await;
}

#[tokio::test]
async fn oss_refusals_are_oss_xml_errors_with_their_codes() {
    let sb = start(SandboxConfig {
        oss: OssConfig {
            buckets: vec!["photos".into()],
            ..OssConfig::default()
        },
        ..SandboxConfig::for_tests()
    })
    .await;
    let photo = object("a.jpg");
    assert_eq!(put(&sb, &photo, &[], JPEG).await, 200);
    let now = OffsetDateTime::now_utc();
    let get = |url: String| async move { refusal(http().get(url).send().await.unwrap()).await };

    let expired = get(link(
        &sb,
        &photo,
        KEYS,
        now - time::Duration::seconds(120),
        60,
    ))
    .await;
    assert_eq!((expired.0, expired.1.as_str()), (403, "AccessDenied"));
    assert!(expired.2.contains("Request has expired"), "{}", expired.2);
    for element in ["<Error>", "<RequestId>", "<HostId>"] {
        assert!(expired.3.contains(element), "{element} in {}", expired.3);
    }

    let tampered = link(&sb, &photo, KEYS, now, 60).replace("x-oss-expires=60", "x-oss-expires=61");
    let tampered = get(tampered).await;
    assert_eq!(
        (tampered.0, tampered.1.as_str()),
        (403, "SignatureDoesNotMatch")
    );

    let stranger = Keys {
        access_key_id: "not-a-sandbox-key",
        ..KEYS
    };
    let unknown = get(link(&sb, &photo, stranger, now, 60)).await;
    assert_eq!((unknown.0, unknown.1.as_str()), (403, "InvalidAccessKeyId"));

    let skewed = signed(
        &sb,
        "HEAD",
        &photo,
        &[],
        &[],
        KEYS,
        now - time::Duration::minutes(20),
    )
    .await;
    assert_eq!(skewed.status(), 403, "a HEAD refusal has no body");
    let skewed = signed(
        &sb,
        "GET",
        &photo,
        &[],
        &[],
        KEYS,
        now - time::Duration::minutes(20),
    )
    .await;
    let skewed = refusal(skewed).await;
    assert_eq!((skewed.0, skewed.1.as_str()), (403, "RequestTimeTooSkewed"));

    let missing = get(link(&sb, &object("gone.jpg"), KEYS, now, 60)).await;
    assert_eq!((missing.0, missing.1.as_str()), (404, "NoSuchKey"));

    let elsewhere = OssObject::new("other-bucket", "a.jpg").unwrap();
    let no_bucket = get(link(&sb, &elsewhere, KEYS, now, 60)).await;
    assert_eq!((no_bucket.0, no_bucket.1.as_str()), (404, "NoSuchBucket"));

    let anonymous = get(endpoint(&sb).object_url("photos", "a.jpg")).await;
    assert_eq!((anonymous.0, anonymous.1.as_str()), (403, "AccessDenied"));

    let requests = sb.snapshot().oss.requests;
    assert_eq!((requests.get, requests.head, requests.refused), (7, 1, 8));
    sb.shutdown().await;
}

#[tokio::test]
async fn oss_an_sts_link_works_until_its_token_expires_then_is_refused() {
    let sb = start(SandboxConfig {
        sts_lifetime: Duration::from_secs(2),
        ..SandboxConfig::for_tests()
    })
    .await;
    let photo = object("a.jpg");
    assert_eq!(put(&sb, &photo, &[], JPEG).await, 200);
    let (id, secret, token) = temporary_keys(&sb).await;
    let sts = Keys {
        access_key_id: &id,
        secret: &secret,
        security_token: Some(&token),
    };
    let url = link(&sb, &photo, sts, OffsetDateTime::now_utc(), 3600);
    assert_eq!(http().get(&url).send().await.unwrap().status(), 200);
    let wrong_token = Keys {
        security_token: Some("CAISnot-the-token"),
        ..sts
    };
    let mismatch = link(&sb, &photo, wrong_token, OffsetDateTime::now_utc(), 3600);
    let mismatch = refusal(http().get(mismatch).send().await.unwrap()).await;
    assert_eq!(
        (mismatch.0, mismatch.1.as_str()),
        (403, "InvalidSecurityToken")
    );
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let expired = refusal(http().get(&url).send().await.unwrap()).await;
    assert_eq!(
        (expired.0, expired.1.as_str()),
        (403, "SecurityTokenExpired")
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn oss_v1_presigned_links_are_recognised_and_checked() {
    let sb = start(SandboxConfig::for_tests()).await;
    let photo = object("a.jpg");
    assert_eq!(put(&sb, &photo, &[], JPEG).await, 200);
    let v1 = |expires: i64, secret: &str| {
        let expires = expires.to_string();
        let received = Received {
            method: "GET",
            bucket: "photos",
            key: "a.jpg",
            query: &[],
            headers: &[],
        };
        let signature = v1_signature(secret, &v1_string_to_sign(&received, &expires));
        let signature: String = form_urlencoded::byte_serialize(signature.as_bytes()).collect();
        format!(
            "{}?OSSAccessKeyId={DEFAULT_ACCESS_KEY_ID}&Expires={expires}&Signature={signature}",
            endpoint(&sb).object_url("photos", "a.jpg")
        )
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let good = http()
        .get(v1(now + 60, DEFAULT_ACCESS_KEY_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let bad = refusal(http().get(v1(now + 60, "wrong")).send().await.unwrap()).await;
    assert_eq!((bad.0, bad.1.as_str()), (403, "SignatureDoesNotMatch"));
    let late = refusal(
        http()
            .get(v1(now - 1, DEFAULT_ACCESS_KEY_SECRET))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((late.0, late.1.as_str()), (403, "AccessDenied"));
    sb.shutdown().await;
}

#[tokio::test]
async fn oss_a_folder_store_serves_files_and_refuses_keys_that_escape_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("oss");
    let sb = start(SandboxConfig {
        oss: OssConfig {
            root: Some(root.clone()),
            ..OssConfig::default()
        },
        ..SandboxConfig::for_tests()
    })
    .await;
    assert_eq!(put(&sb, &object("staff/a.jpg"), &[], JPEG).await, 200);
    assert_eq!(
        std::fs::read(root.join("photos/staff/a.jpg")).unwrap(),
        JPEG
    );
    std::fs::write(root.join("photos/by-hand.png"), PNG).unwrap();
    let now = OffsetDateTime::now_utc();
    let got = http()
        .get(link(&sb, &object("by-hand.png"), KEYS, now, 60))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), PNG);

    // `..` encoded inside one path segment reaches the sandbox as a key "../escaped.jpg".
    let escaping = object("../escaped.jpg");
    let signature = sign_request(
        &ObjectRequest {
            method: "PUT",
            object: &escaping,
            query: &[],
            headers: &[],
        },
        REGION,
        KEYS,
        now,
    )
    .unwrap();
    let mut request = http().put(format!("http://{}/photos/..%2Fescaped.jpg", sb.addr()));
    for (name, value) in &signature.headers {
        request = request.header(*name, value);
    }
    let response = request
        .header("Authorization", signature.authorization)
        .body(JPEG.to_vec())
        .send()
        .await
        .unwrap();
    let (status, code, _, _) = refusal(response).await;
    assert_eq!((status, code.as_str()), (400, "InvalidObjectName"));
    assert!(!root.join("escaped.jpg").exists() && !dir.path().join("escaped.jpg").exists());

    let keys: Vec<String> = sb
        .snapshot()
        .oss
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["by-hand.png", "staff/a.jpg"]);
    sb.shutdown().await;
}

fn api(sb: &Sandbox) -> Client {
    Client::new(ClientConfig {
        endpoints: Endpoints::single(&sb.base_url()).unwrap(),
        credentials: Credentials {
            access_key_id: DEFAULT_ACCESS_KEY_ID.into(),
            access_key_secret: Secret::new(DEFAULT_ACCESS_KEY_SECRET),
            security_token: None,
        },
        signature: SignatureVersion::default(),
        timeout: Duration::from_secs(10),
        max_idle_per_host: 4,
    })
    .unwrap()
}

fn face<'a>(person: &'a str, url: &'a str) -> RegisterFace<'a> {
    RegisterFace {
        category_id: "staff",
        person_id: person,
        image_url: url,
        person_name: None,
    }
}

#[tokio::test]
async fn oss_register_custom_face_downloads_the_image_and_refuses_what_the_service_would() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = api(&sb);
    assert_eq!(put(&sb, &object("alice.jpg"), &[], JPEG).await, 200);
    assert_eq!(
        put(&sb, &object("notes.jpg"), &[], b"plain text").await,
        200
    );
    let now = OffsetDateTime::now_utc();
    let good = link(&sb, &object("alice.jpg"), KEYS, now, 60);
    c.register_custom_face(&face("alice", &good)).await.unwrap();

    let refused = |url: String| {
        let c = &c;
        async move {
            let error = c
                .register_custom_face(&face("bob", &url))
                .await
                .unwrap_err();
            (error.code().to_string(), error.message().to_string())
        }
    };
    let cases = [
        (
            link(
                &sb,
                &object("alice.jpg"),
                KEYS,
                now - time::Duration::seconds(120),
                60,
            ),
            "expired",
        ),
        (link(&sb, &object("gone.jpg"), KEYS, now, 60), "not found"),
        (
            link(&sb, &object("notes.jpg"), KEYS, now, 60),
            "not an image",
        ),
        (
            good.replace("x-oss-expires=60", "x-oss-expires=61"),
            "signature",
        ),
    ];
    for (url, cause) in cases {
        let (code, message) = refused(url).await;
        assert_eq!(code, "InvalidParameter.ImageUrl", "{message}");
        assert!(message.contains(cause), "{cause}: {message}");
    }
    // Other hosts keep the marker rules and are not downloaded.
    let (code, _) = refused("https://img.example/noface.jpg".into()).await;
    assert_eq!(code, "InvalidParameter.ImageUrl");
    c.register_custom_face(&face("carol", "https://img.example/carol.jpg"))
        .await
        .unwrap();

    let state = sb.snapshot();
    let people: Vec<&str> = state.faces().map(|(_, person, _)| person).collect();
    assert_eq!(people, ["alice", "carol"]);
    let verdicts: Vec<Option<&str>> = state
        .oss
        .fetches
        .iter()
        .map(|f| f.refused.as_deref())
        .collect();
    assert_eq!(
        verdicts,
        [
            None,
            Some("AccessDenied"),
            Some("NoSuchKey"),
            Some("NotAnImage"),
            Some("SignatureDoesNotMatch")
        ]
    );
    assert!(
        state
            .oss
            .fetches
            .iter()
            .all(|f| f.action == "RegisterCustomFace")
    );
    assert_eq!(state.oss.fetches[0].link, good);
    assert_eq!(
        state.oss.requests.get, 0,
        "a download is not a client's GET"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn oss_create_recognition_sample_downloads_the_image_and_logs_the_token_expiry() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = api(&sb);
    assert_eq!(put(&sb, &object("alice.png"), &[], PNG).await, 200);
    let lib = c
        .create_recognition_lib(Algorithm::Face, "staff", None)
        .await
        .unwrap();
    let entity = c
        .create_recognition_entity(Algorithm::Face, &lib.lib_id, "alice", None)
        .await
        .unwrap();
    let (id, secret, token) = temporary_keys(&sb).await;
    let sts = Keys {
        access_key_id: &id,
        secret: &secret,
        security_token: Some(&token),
    };
    let now = OffsetDateTime::now_utc();
    let (l, e) = (lib.lib_id.as_str(), entity.entity_id.as_str());
    let good = link(&sb, &object("alice.png"), sts, now, 600);
    c.create_recognition_sample(Algorithm::Face, l, e, &good, None)
        .await
        .unwrap();
    let gone = link(&sb, &object("gone.png"), sts, now, 600);
    let error = c
        .create_recognition_sample(Algorithm::Face, l, e, &gone, None)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "InvalidParameter");
    assert!(error.message().contains("not found"), "{}", error.message());

    let state = sb.snapshot();
    let samples = &state.ice.libs[0].entities[0].samples;
    assert_eq!(samples.len(), 1);
    let fetch = &state.oss.fetches[0];
    assert_eq!(fetch.action, "CreateRecognitionSample");
    let token_expires = fetch.token_expires_ms.expect("an issued token's expiry");
    let link_expires = fetch.link_expires_ms.unwrap();
    assert_eq!(link_expires, (now.unix_timestamp() + 600) * 1000);
    assert!(token_expires > fetch.at_ms);
    sb.shutdown().await;
}

#[tokio::test]
async fn oss_scripted_faults_really_happen_error_reset_and_slow_body() {
    let sb = start(SandboxConfig {
        oss: OssConfig {
            slow_body_ms: 800,
            ..OssConfig::default()
        },
        ..SandboxConfig::for_tests()
    })
    .await;
    let photo = object("a.jpg");
    assert_eq!(put(&sb, &photo, &[], JPEG).await, 200);
    let url = link(&sb, &photo, KEYS, OffsetDateTime::now_utc(), 60);

    sb.script_oss("GET", vec![OssFault::Error]);
    let error = refusal(http().get(&url).send().await.unwrap()).await;
    assert_eq!((error.0, error.1.as_str()), (500, "InternalError"));

    sb.script_oss("GET", vec![OssFault::Reset]);
    let reset = async { http().get(&url).send().await?.bytes().await };
    assert!(reset.await.is_err(), "a reset gives no answer");

    sb.script_oss("GET", vec![OssFault::SlowBody]);
    let started = Instant::now();
    let slow = http().get(&url).send().await.unwrap();
    assert_eq!(slow.status(), 200);
    assert_eq!(
        slow.bytes().await.unwrap().as_ref(),
        JPEG,
        "a slow body is whole"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );

    sb.script_oss("PUT", vec![OssFault::Error]);
    assert_eq!(put(&sb, &object("b.jpg"), &[], JPEG).await, 500);
    let state = sb.snapshot();
    assert_eq!(state.oss.objects.len(), 1, "an errored PUT stores nothing");
    let faults = &state.stats.faults;
    assert_eq!(
        (
            faults.get("oss_error"),
            faults.get("oss_reset"),
            faults.get("oss_slow_body")
        ),
        (Some(&2), Some(&1), Some(&1))
    );
    assert_eq!(
        http().get(&url).send().await.unwrap().status(),
        200,
        "scripts run out"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn oss_fault_rates_apply_to_every_object_request_but_not_to_the_api() {
    let sb = start(SandboxConfig {
        oss: OssConfig {
            faults: face_enroll::sandbox::OssFaultRates {
                error: 1.0,
                ..Default::default()
            },
            ..OssConfig::default()
        },
        ..SandboxConfig::for_tests()
    })
    .await;
    for n in 0..5 {
        assert_eq!(put(&sb, &object(&format!("{n}.jpg")), &[], JPEG).await, 500);
    }
    api(&sb)
        .register_custom_face(&face("alice", "https://img.example/a.jpg"))
        .await
        .unwrap();
    let state = sb.snapshot();
    assert!(state.oss.objects.is_empty());
    assert_eq!(state.stats.faults.get("oss_error"), Some(&5));
    sb.shutdown().await;
}
