//! The signed client against the in-process sandbox over real loopback TCP: every operation, every
//! fault kind's classification, authentication failures, and secrets kept out of every message.

use std::time::Duration;

use face_enroll::api::{
    Algorithm, ApiError, Client, ClientConfig, CreatedEntity, CreatedLib, CreatedSample, Endpoints,
    ErrorClass, RegisterFace, Scope, Service, TagPerson,
};
use face_enroll::credentials::{Credentials, Secret};
use face_enroll::sandbox::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Fault, Sandbox, SandboxConfig,
};
use face_enroll::sign::{self, SignatureVersion};

const CANARY_SECRET: &str = "S3cr3t-Canary-secret-7d1e";
const CANARY_TOKEN: &str = "S3cr3t-Canary-token/+=7d1e";

async fn start(cfg: SandboxConfig) -> Sandbox {
    Sandbox::start(cfg)
        .await
        .expect("the sandbox starts on loopback")
}

fn credentials(key: &str, secret: &str, token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: key.to_string(),
        access_key_secret: Secret::new(secret),
        security_token: token.map(Secret::new),
    }
}

fn client_with(url: &str, creds: Credentials, timeout: Duration) -> Client {
    client_signing(SignatureVersion::default(), url, creds, timeout)
}

fn client_signing(
    signature: SignatureVersion,
    url: &str,
    creds: Credentials,
    timeout: Duration,
) -> Client {
    Client::new(ClientConfig {
        endpoints: Endpoints::single(url).unwrap(),
        credentials: creds,
        signature,
        timeout,
        max_idle_per_host: 8,
    })
    .unwrap()
}

fn client(sb: &Sandbox) -> Client {
    let creds = credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, None);
    client_with(&sb.base_url(), creds, Duration::from_secs(5))
}

fn face<'a>(category: &'a str, person: &'a str, url: &'a str) -> RegisterFace<'a> {
    RegisterFace {
        category_id: category,
        person_id: person,
        image_url: url,
        person_name: None,
    }
}

#[tokio::test]
async fn registered_faces_are_stored_with_their_urls_and_returned_ids() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = client(&sb);
    let a = c
        .register_custom_face(&RegisterFace {
            person_name: Some("Alice Zhang"),
            ..face("staff", "alice", "https://img.example/a%201.jpg?w=1&h=2*")
        })
        .await
        .unwrap();
    let b = c
        .register_custom_face(&face("staff", "alice", "https://img.example/a2.jpg"))
        .await
        .unwrap();
    assert_ne!(a.face_id, b.face_id);
    assert!(a.request_id.is_some());
    let snap = sb.snapshot();
    let faces: Vec<_> = snap
        .faces()
        .map(|(c, p, f)| (c, p, f.face_id.clone(), f.image_url.clone()))
        .collect();
    assert_eq!(
        faces,
        vec![
            (
                "staff",
                "alice",
                a.face_id.clone(),
                "https://img.example/a%201.jpg?w=1&h=2*".to_string()
            ),
            (
                "staff",
                "alice",
                b.face_id.clone(),
                "https://img.example/a2.jpg".to_string()
            ),
        ]
    );
    assert_eq!(
        snap.mts.categories[0].persons[0].person_name.as_deref(),
        Some("Alice Zhang")
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn listing_custom_persons_reads_back_the_whole_tree_and_filters() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = client(&sb);
    c.register_custom_face(&face("staff", "alice", "https://img.example/a.jpg"))
        .await
        .unwrap();
    c.register_custom_face(&face("staff", "bob", "https://img.example/b.jpg"))
        .await
        .unwrap();
    c.register_custom_face(&face("guests", "carol", "https://img.example/c.jpg"))
        .await
        .unwrap();
    let all = c.list_custom_persons(None, None).await.unwrap();
    let mut seen: Vec<(String, String, Option<String>)> = all
        .categories
        .iter()
        .flat_map(|cat| {
            cat.persons.iter().flat_map(move |p| {
                p.faces.iter().map(move |f| {
                    (
                        cat.category_id.clone(),
                        p.person_id.clone(),
                        f.image_url.clone(),
                    )
                })
            })
        })
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[0],
        (
            "guests".into(),
            "carol".into(),
            Some("https://img.example/c.jpg".into())
        )
    );
    let one = c
        .list_custom_persons(Some("staff"), Some("bob"))
        .await
        .unwrap();
    let persons: Vec<&str> = one
        .categories
        .iter()
        .flat_map(|c| c.persons.iter().map(|p| p.person_id.as_str()))
        .collect();
    assert_eq!(persons, vec!["bob"]);
    let none = c
        .list_custom_persons(Some("nobody-here"), None)
        .await
        .unwrap();
    assert!(none.categories.iter().all(|c| c.persons.is_empty()));
    sb.shutdown().await;
}

#[tokio::test]
async fn unregistering_one_face_leaves_the_others() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = client(&sb);
    let a = c
        .register_custom_face(&face("staff", "alice", "https://img.example/a.jpg"))
        .await
        .unwrap();
    let b = c
        .register_custom_face(&face("staff", "alice", "https://img.example/b.jpg"))
        .await
        .unwrap();
    c.unregister_face("staff", "alice", &a.face_id)
        .await
        .unwrap();
    let left: Vec<String> = sb
        .snapshot()
        .faces()
        .map(|(_, _, f)| f.face_id.clone())
        .collect();
    assert_eq!(left, vec![b.face_id]);
    sb.shutdown().await;
}

#[tokio::test]
async fn all_in_a_single_face_unregistration_is_refused_before_anything_is_sent() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = client(&sb);
    c.register_custom_face(&face("staff", "alice", "https://img.example/a.jpg"))
        .await
        .unwrap();
    let before = sb.snapshot().stats.requests;
    for (person, face_id) in [("alice", "ALL"), ("alice", "all"), ("All", "f-1")] {
        let e = c
            .unregister_face("staff", person, face_id)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "RefusedAllScope", "{person} {face_id}");
        assert_ne!(e.class(), ErrorClass::Transient);
    }
    let e = c
        .unregister_all(Scope::AllFacesOfPerson {
            category_id: "staff",
            person_id: "ALL",
        })
        .await;
    assert_eq!(e.unwrap_err().code(), "RefusedAllScope");
    let snap = sb.snapshot();
    assert_eq!(snap.stats.requests, before, "nothing reached the sandbox");
    assert_eq!(snap.faces().count(), 1);
    sb.shutdown().await;
}

#[tokio::test]
async fn explicit_all_scopes_remove_a_person_then_a_category() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = client(&sb);
    for (person, url) in [
        ("alice", "https://i/a1"),
        ("alice", "https://i/a2"),
        ("bob", "https://i/b"),
    ] {
        c.register_custom_face(&face("staff", person, url))
            .await
            .unwrap();
    }
    c.register_custom_face(&face("guests", "carol", "https://i/c"))
        .await
        .unwrap();
    c.unregister_all(Scope::AllFacesOfPerson {
        category_id: "staff",
        person_id: "alice",
    })
    .await
    .unwrap();
    let people: Vec<String> = sb
        .snapshot()
        .faces()
        .map(|(_, p, _)| p.to_string())
        .collect();
    assert_eq!(people, vec!["bob", "carol"]);
    c.unregister_all(Scope::AllPersonsOfCategory {
        category_id: "staff",
    })
    .await
    .unwrap();
    let snap = sb.snapshot();
    let cats: Vec<&str> = snap
        .mts
        .categories
        .iter()
        .map(|c| c.category_id.as_str())
        .collect();
    assert_eq!(cats, vec!["guests"]);
    sb.shutdown().await;
}

#[tokio::test]
async fn tagging_names_and_describes_a_person_and_its_category() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = client(&sb);
    c.register_custom_face(&face("staff", "alice", "https://i/a"))
        .await
        .unwrap();
    let tag = TagPerson {
        category_id: Some("staff"),
        category_name: Some("Staff"),
        category_description: Some("Everyone on payroll"),
        person_id: Some("alice"),
        person_name: Some("Alice Zhang"),
        person_description: Some("Engineering"),
    };
    c.tag_custom_person(&tag).await.unwrap();
    let snap = sb.snapshot();
    let cat = &snap.mts.categories[0];
    assert_eq!(cat.category_name.as_deref(), Some("Staff"));
    assert_eq!(
        cat.category_description.as_deref(),
        Some("Everyone on payroll")
    );
    assert_eq!(cat.persons[0].person_name.as_deref(), Some("Alice Zhang"));
    assert_eq!(
        cat.persons[0].person_description.as_deref(),
        Some("Engineering")
    );
    sb.shutdown().await;
}

/// What `create_face_library` made: a lib, one entity, two samples.
struct Library {
    lib: CreatedLib,
    entity: CreatedEntity,
    samples: [CreatedSample; 2],
}

const ALG: Algorithm = Algorithm::Face;

async fn create_face_library(c: &Client) -> Library {
    let lib = c
        .create_recognition_lib(ALG, "staff", Some("all staff"))
        .await
        .unwrap();
    let info = Some(r#"{"team":"eng"}"#);
    let entity = c
        .create_recognition_entity(ALG, &lib.lib_id, "alice", info)
        .await
        .unwrap();
    let (l, e) = (lib.lib_id.as_str(), entity.entity_id.as_str());
    let s1 = c
        .create_recognition_sample(ALG, l, e, "https://i/a1", None)
        .await
        .unwrap();
    let s2 = c
        .create_recognition_sample(ALG, l, e, "https://i/a2", None)
        .await
        .unwrap();
    Library {
        lib,
        entity,
        samples: [s1, s2],
    }
}

#[tokio::test]
async fn recognition_libs_entities_and_samples_are_created_in_the_sandbox() {
    let sb = start(SandboxConfig::for_tests()).await;
    let made = create_face_library(&client(&sb)).await;
    let snap = sb.snapshot();
    let l = &snap.ice.libs[0];
    assert_eq!(
        (l.algorithm.as_str(), l.lib_id.as_str(), l.lib_name.as_str()),
        ("face", made.lib.lib_id.as_str(), "staff")
    );
    assert_eq!(l.lib_description.as_deref(), Some("all staff"));
    let e = &l.entities[0];
    assert_eq!(
        (e.entity_id.as_str(), e.entity_name.as_str()),
        (made.entity.entity_id.as_str(), "alice")
    );
    assert_eq!(e.entity_info.as_deref(), Some(r#"{"team":"eng"}"#));
    let samples: Vec<(&str, Option<&str>)> = e
        .samples
        .iter()
        .map(|s| (s.sample_id.as_str(), s.image_url.as_deref()))
        .collect();
    let [s1, s2] = &made.samples;
    let expected = vec![
        (s1.sample_id.as_str(), Some("https://i/a1")),
        (s2.sample_id.as_str(), Some("https://i/a2")),
    ];
    assert_eq!(samples, expected);
    sb.shutdown().await;
}

#[tokio::test]
async fn recognition_lists_read_back_libs_entities_and_samples_with_paging() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = client(&sb);
    let made = create_face_library(&c).await;
    let (lib_id, entity_id) = (made.lib.lib_id.as_str(), made.entity.entity_id.as_str());
    let libs = c.list_recognition_libs(ALG, None, 1, 50).await.unwrap();
    assert_eq!(
        (libs.items.len(), libs.total_count, libs.page_number),
        (1, 1, 1)
    );
    assert_eq!(libs.items[0].lib_name.as_deref(), Some("staff"));
    let only = c
        .list_recognition_libs(ALG, Some(lib_id), 1, 10)
        .await
        .unwrap();
    assert_eq!(only.items[0].lib_id, lib_id);
    let ents = c
        .list_recognition_entities(ALG, lib_id, 1, 50)
        .await
        .unwrap();
    assert_eq!(ents.items[0].entity_name.as_deref(), Some("alice"));
    let listed = c
        .list_recognition_samples(ALG, lib_id, entity_id, None, 1, 1)
        .await
        .unwrap();
    assert_eq!(
        (listed.items.len(), listed.total_count, listed.page_size),
        (1, 2, 1)
    );
    let by_name = c
        .list_recognition_samples(ALG, lib_id, "ANY", Some("alice"), 1, 50)
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 2);
    assert_eq!(by_name.items[0].image_url.as_deref(), Some("https://i/a1"));
    sb.shutdown().await;
}

#[tokio::test]
async fn recognition_deletes_remove_a_sample_then_an_entity_then_the_lib() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = client(&sb);
    let made = create_face_library(&c).await;
    let (lib_id, entity_id) = (made.lib.lib_id.as_str(), made.entity.entity_id.as_str());
    let sample_id = made.samples[0].sample_id.as_str();
    c.delete_recognition_sample(ALG, lib_id, entity_id, sample_id)
        .await
        .unwrap();
    assert_eq!(sb.snapshot().ice.libs[0].entities[0].samples.len(), 1);
    c.delete_recognition_entity(ALG, lib_id, entity_id)
        .await
        .unwrap();
    assert!(sb.snapshot().ice.libs[0].entities.is_empty());
    c.delete_recognition_lib(ALG, lib_id).await.unwrap();
    assert!(sb.snapshot().ice.libs.is_empty());
    let empty = c.list_recognition_libs(ALG, None, 1, 50).await.unwrap();
    assert!(empty.items.is_empty());
    sb.shutdown().await;
}

/// Registers one face with the next call scripted to `fault`; returns the error and the number of
/// faces the sandbox holds afterwards.
async fn register_under(fault: Fault, cfg: SandboxConfig, timeout: Duration) -> (ApiError, usize) {
    let sb = start(cfg).await;
    let creds = credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, None);
    let c = client_with(&sb.base_url(), creds, timeout);
    sb.script("RegisterCustomFace", vec![fault]);
    let e = c
        .register_custom_face(&face("staff", "alice", "https://i/a"))
        .await
        .unwrap_err();
    let faces = sb.snapshot().faces().count();
    sb.shutdown().await;
    (e, faces)
}

#[tokio::test]
async fn internal_errors_before_and_after_applying_leave_the_outcome_unknown() {
    for (fault, applied) in [(Fault::ErrorBefore, 0), (Fault::ErrorAfter, 1)] {
        let (e, faces) =
            register_under(fault, SandboxConfig::for_tests(), Duration::from_secs(5)).await;
        assert_eq!(
            (e.class(), e.code(), e.status()),
            (ErrorClass::OutcomeUnknown, "InternalError", Some(500)),
            "{fault:?}"
        );
        assert!(e.request_id().is_some(), "{fault:?}: {e}");
        assert_eq!(faces, applied, "{fault:?}");
    }
}

#[tokio::test]
async fn connection_resets_leave_the_outcome_unknown() {
    for (fault, applied) in [(Fault::ResetBefore, 0), (Fault::ResetAfter, 1)] {
        let (e, faces) =
            register_under(fault, SandboxConfig::for_tests(), Duration::from_secs(5)).await;
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown, "{fault:?}: {e}");
        assert_eq!(e.code(), "ConnectionReset", "{fault:?}: {e}");
        assert_eq!(faces, applied, "{fault:?}");
    }
}

#[tokio::test]
async fn a_stalled_answer_times_out_with_the_outcome_unknown() {
    let cfg = SandboxConfig {
        stall_ms: 1_500,
        ..SandboxConfig::for_tests()
    };
    let (e, _) = register_under(Fault::Stall, cfg, Duration::from_millis(250)).await;
    assert_eq!(
        (e.class(), e.code()),
        (ErrorClass::OutcomeUnknown, "Timeout"),
        "{e}"
    );
}

#[tokio::test]
async fn a_malformed_success_leaves_the_outcome_unknown() {
    let (e, faces) = register_under(
        Fault::MalformedAfter,
        SandboxConfig::for_tests(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        (e.class(), e.code()),
        (ErrorClass::OutcomeUnknown, "MalformedResponse"),
        "{e}"
    );
    assert_eq!(faces, 1);
}

#[tokio::test]
async fn every_malformed_shape_is_survived_without_panicking() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = client(&sb);
    sb.script("RegisterCustomFace", vec![Fault::MalformedAfter; 3]);
    for i in 0..3 {
        let url = format!("https://i/{i}");
        let e = c
            .register_custom_face(&face("staff", "alice", &url))
            .await
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown, "turn {i}: {e}");
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn an_html_gateway_page_leaves_the_outcome_unknown() {
    let (e, faces) = register_under(
        Fault::HtmlBefore,
        SandboxConfig::for_tests(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        (e.class(), e.code(), e.status()),
        (ErrorClass::OutcomeUnknown, "HTTP502", Some(502)),
        "{e}"
    );
    assert_eq!(faces, 0);
}

#[tokio::test]
async fn throttling_is_classified_with_the_servers_retry_after() {
    let cfg = SandboxConfig {
        retry_after_ms: Some(250),
        ..SandboxConfig::for_tests()
    };
    let (e, faces) = register_under(Fault::Throttle, cfg, Duration::from_secs(5)).await;
    assert_eq!(e.class(), ErrorClass::Throttled, "{e}");
    assert!(e.code().contains("Throttling"), "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_millis(250)));
    assert_eq!(faces, 0);
    let (e, _) = register_under(
        Fault::Throttle,
        SandboxConfig::for_tests(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!((e.class(), e.retry_after()), (ErrorClass::Throttled, None));
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let c = client_with(&url, credentials("k", "s", None), Duration::from_secs(2));
    let e = c
        .call(Service::Mts, "ListCustomPersons", &[])
        .await
        .unwrap_err();
    assert_eq!(
        (e.class(), e.code()),
        (ErrorClass::Transient, "ConnectFailed"),
        "{e}"
    );
}

fn raw_params(nonce: &str) -> Vec<(String, String)> {
    let now = time::OffsetDateTime::now_utc();
    let timestamp = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    [
        ("AccessKeyId", DEFAULT_ACCESS_KEY_ID),
        ("Action", "ListCustomPersons"),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", nonce),
        ("SignatureVersion", "1.0"),
        ("Timestamp", timestamp.as_str()),
        ("Version", "2014-06-18"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// POSTs `params` plus `signature` in the query string, as the client does; returns status and JSON.
async fn raw_post(
    base: &str,
    params: &[(String, String)],
    signature: &str,
) -> (u16, serde_json::Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!(
        "{base}?{}&Signature={}",
        sign::canonical_query(params),
        sign::percent_encode(signature)
    );
    let resp = http.post(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn api_error_of(status: u16, body: &serde_json::Value) -> ApiError {
    ApiError::new(
        Some(status),
        body["Code"].as_str().unwrap(),
        body["Message"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_signature_with_one_changed_byte_is_refused_as_run_fatal_with_the_servers_string_to_sign()
{
    let sb = start(SandboxConfig::for_tests()).await;
    let params = raw_params(&uuid::Uuid::new_v4().to_string());
    let good = sign::sign("POST", DEFAULT_ACCESS_KEY_SECRET, &params);
    let mut bytes = good.into_bytes();
    bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let (status, body) = raw_post(&sb.base_url(), &params, &tampered).await;
    let e = api_error_of(status, &body);
    assert_eq!(
        (e.code(), e.class()),
        ("SignatureDoesNotMatch", ErrorClass::RunFatal),
        "{e}"
    );
    assert_eq!(
        e.server_string_to_sign(),
        Some(sign::string_to_sign("POST", &params).as_str())
    );
    assert!(
        e.to_string().contains("server string-to-sign: POST&%2F&"),
        "{e}"
    );
    assert!(e.hint().is_some());
    sb.shutdown().await;
}

#[tokio::test]
async fn a_reused_nonce_is_refused_as_transient() {
    let sb = start(SandboxConfig::for_tests()).await;
    let params = raw_params(&uuid::Uuid::new_v4().to_string());
    let signature = sign::sign("POST", DEFAULT_ACCESS_KEY_SECRET, &params);
    let (first, _) = raw_post(&sb.base_url(), &params, &signature).await;
    assert_eq!(first, 200);
    let (status, body) = raw_post(&sb.base_url(), &params, &signature).await;
    let e = api_error_of(status, &body);
    assert_eq!(
        (e.code(), e.class()),
        ("SignatureNonceUsed", ErrorClass::Transient),
        "{e}"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_is_run_fatal_and_shows_the_server_string_to_sign() {
    let sb = start(SandboxConfig::for_tests()).await;
    let creds = credentials(DEFAULT_ACCESS_KEY_ID, CANARY_SECRET, None);
    let c = client_signing(
        SignatureVersion::V1,
        &sb.base_url(),
        creds,
        Duration::from_secs(5),
    );
    let e = c.list_custom_persons(None, None).await.unwrap_err();
    assert_eq!(
        (e.code(), e.class()),
        ("SignatureDoesNotMatch", ErrorClass::RunFatal),
        "{e}"
    );
    let sts = e
        .server_string_to_sign()
        .expect("the server's string-to-sign");
    assert!(
        sts.starts_with("POST&%2F&AccessKeyId%3Dsandbox-key-id"),
        "{sts}"
    );
    assert!(e.hint().unwrap().contains("secret"));
    sb.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_under_v3_is_run_fatal_and_shows_the_v3_string_to_sign() {
    let sb = start(SandboxConfig::for_tests()).await;
    let creds = credentials(DEFAULT_ACCESS_KEY_ID, CANARY_SECRET, None);
    let c = client_signing(
        SignatureVersion::V3,
        &sb.base_url(),
        creds,
        Duration::from_secs(5),
    );
    let e = c.list_custom_persons(None, None).await.unwrap_err();
    assert_eq!(
        (e.code(), e.class()),
        ("SignatureDoesNotMatch", ErrorClass::RunFatal),
        "{e}"
    );
    let sts = e
        .server_string_to_sign()
        .expect("the server's string-to-sign");
    assert!(sts.starts_with("ACS3-HMAC-SHA256\n"), "{sts}");
    assert_eq!(sb.snapshot().stats.auth_rejected, 1);
    sb.shutdown().await;
}

#[tokio::test]
async fn both_signature_versions_register_faces_with_an_sts_token() {
    let sb = start(SandboxConfig {
        security_token: Some(CANARY_TOKEN.into()),
        ..SandboxConfig::for_tests()
    })
    .await;
    for (n, signature) in [SignatureVersion::V1, SignatureVersion::V3]
        .into_iter()
        .enumerate()
    {
        let creds = credentials(
            DEFAULT_ACCESS_KEY_ID,
            DEFAULT_ACCESS_KEY_SECRET,
            Some(CANARY_TOKEN),
        );
        let c = client_signing(signature, &sb.base_url(), creds, Duration::from_secs(5));
        let url = format!("https://img.example/{n}*~+.jpg?q=张&x=%20");
        c.register_custom_face(&face("staff", "张三", &url))
            .await
            .unwrap_or_else(|e| panic!("{signature}: {e}"));
    }
    assert_eq!(sb.snapshot().faces().count(), 2);
    assert_eq!(sb.snapshot().stats.auth_rejected, 0);
    sb.shutdown().await;
}

#[tokio::test]
async fn an_unknown_access_key_is_run_fatal() {
    let sb = start(SandboxConfig::for_tests()).await;
    let c = client_with(
        &sb.base_url(),
        credentials("nobody", "x", None),
        Duration::from_secs(5),
    );
    let e = c
        .register_custom_face(&face("staff", "alice", "https://i/a"))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::RunFatal, "{e}");
    assert!(e.code().starts_with("InvalidAccessKeyId"), "{e}");
    assert_eq!(sb.snapshot().faces().count(), 0);
    sb.shutdown().await;
}

#[tokio::test]
async fn sts_credentials_are_accepted_when_the_token_matches() {
    let cfg = SandboxConfig {
        security_token: Some(CANARY_TOKEN.into()),
        ..SandboxConfig::for_tests()
    };
    let sb = start(cfg).await;
    let creds = credentials(
        DEFAULT_ACCESS_KEY_ID,
        DEFAULT_ACCESS_KEY_SECRET,
        Some(CANARY_TOKEN),
    );
    let c = client_with(&sb.base_url(), creds, Duration::from_secs(5));
    c.register_custom_face(&face("staff", "alice", "https://i/a"))
        .await
        .unwrap();
    assert_eq!(sb.snapshot().faces().count(), 1);
    sb.shutdown().await;
}

#[test]
fn plain_http_to_a_non_loopback_host_is_refused_by_the_client() {
    for url in [
        "http://mts.cn-shanghai.aliyuncs.com/",
        "http://192.168.1.10:8080/",
    ] {
        let e = Client::new(ClientConfig {
            endpoints: Endpoints::single(url).unwrap(),
            credentials: credentials("k", CANARY_SECRET, None),
            signature: SignatureVersion::default(),
            timeout: Duration::from_secs(1),
            max_idle_per_host: 1,
        })
        .unwrap_err();
        assert_eq!(
            (e.code(), e.class()),
            ("InsecureEndpoint", ErrorClass::RunFatal),
            "{url}"
        );
        assert!(e.to_string().contains("https://"), "{e}");
    }
}

fn assert_no_secret(shown: &str) {
    let token_once = sign::percent_encode(CANARY_TOKEN);
    let token_twice = sign::percent_encode(&token_once);
    for needle in [
        CANARY_SECRET,
        CANARY_TOKEN,
        token_once.as_str(),
        token_twice.as_str(),
    ] {
        assert!(!shown.contains(needle), "{needle:?} leaked in {shown}");
    }
}

#[tokio::test]
async fn secrets_never_appear_in_credentials_client_or_error_output() {
    let cfg = SandboxConfig {
        security_token: Some(CANARY_TOKEN.into()),
        ..SandboxConfig::for_tests()
    };
    let sb = start(cfg).await;
    let creds = credentials(DEFAULT_ACCESS_KEY_ID, CANARY_SECRET, Some(CANARY_TOKEN));
    assert_no_secret(&format!(
        "{creds:?} {} {:?}",
        creds.access_key_secret, creds.security_token
    ));
    let c = client_signing(
        SignatureVersion::V1,
        &sb.base_url(),
        creds,
        Duration::from_secs(5),
    );
    assert_no_secret(&format!("{c:?}"));
    // The wrong secret makes the sandbox echo its string-to-sign, which carries the token.
    let e = c.list_custom_persons(None, None).await.unwrap_err();
    assert_eq!(e.code(), "SignatureDoesNotMatch");
    assert!(
        e.server_string_to_sign().unwrap().contains("SecurityToken"),
        "{e}"
    );
    assert_no_secret(&format!("{e} {e:?} {}", e.message()));
    // A transport error's text must not carry the URL (its query holds the token) either.
    sb.script("ListCustomPersons", vec![Fault::ResetBefore]);
    let good = credentials(
        DEFAULT_ACCESS_KEY_ID,
        DEFAULT_ACCESS_KEY_SECRET,
        Some(CANARY_TOKEN),
    );
    let c = client_with(&sb.base_url(), good, Duration::from_secs(5));
    let e = c.list_custom_persons(None, None).await.unwrap_err();
    assert_no_secret(&format!("{e} {e:?}"));
    sb.shutdown().await;
}

#[tokio::test]
async fn clones_of_a_client_share_work_concurrently() {
    let sb = start(SandboxConfig {
        mts_qps: 0,
        ..SandboxConfig::for_tests()
    })
    .await;
    let c = client(&sb);
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let url = format!("https://i/{i}");
                c.register_custom_face(&face("load", &format!("p{}", i % 4), &url))
                    .await
                    .map(|r| r.face_id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert_eq!(sb.snapshot().faces().count(), 40);
    sb.shutdown().await;
}

/// Temporary credentials from the sandbox's credentials URI, held fixed (never renewed).
async fn issued_credentials(sb: &Sandbox) -> Credentials {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}__sandbox/credentials", sb.base_url());
    let bytes = http.get(url).send().await.unwrap().bytes().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let field = |name: &str| body[name].as_str().unwrap().to_string();
    credentials(
        &field("AccessKeyId"),
        &field("AccessKeySecret"),
        Some(&field("SecurityToken")),
    )
}

#[tokio::test]
async fn an_expired_token_that_cannot_be_renewed_stops_the_run_under_both_signatures() {
    let sb = start(SandboxConfig {
        sts_lifetime: Duration::from_millis(1500),
        ..SandboxConfig::for_tests()
    })
    .await;
    for signature in [SignatureVersion::V1, SignatureVersion::V3] {
        let creds = issued_credentials(&sb).await;
        let c = client_signing(signature, &sb.base_url(), creds, Duration::from_secs(5));
        c.list_custom_persons(None, None)
            .await
            .expect("accepted while the token lives");
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let e = c.list_custom_persons(None, None).await.unwrap_err();
        assert_eq!(
            (e.code(), e.class()),
            ("InvalidSecurityToken.Expired", ErrorClass::RunFatal),
            "{signature}: fixed credentials cannot get better, so no retry: {e}"
        );
        assert!(e.hint().unwrap().contains("expired"), "{e}");
    }
    assert_eq!(sb.snapshot().stats.credentials_issued, 2);
    sb.shutdown().await;
}
