//! The sandbox's OSS without HTTP: routing, the signature verdicts at a chosen `now`, and the
//! service side's download. Over TCP: `tests/it/oss.rs`.

use std::time::Duration;

use time::OffsetDateTime;

use super::*;
use crate::sandbox::auth::Credentials;
use crate::sandbox::config::{DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET};
use crate::sign::oss::{
    Endpoint, Keys, ObjectRequest, OssObject, Presign, presign_get, sign_request,
};

const JPEG: &[u8] = b"\xff\xd8\xff\xe0 a tiny jpeg";

fn issuer() -> Issuer {
    Issuer::new(
        Credentials {
            access_key_id: DEFAULT_ACCESS_KEY_ID.into(),
            access_key_secret: DEFAULT_ACCESS_KEY_SECRET.into(),
            security_token: None,
        },
        Duration::from_secs(60),
    )
}

fn keys() -> Keys<'static> {
    Keys {
        access_key_id: DEFAULT_ACCESS_KEY_ID,
        secret: DEFAULT_ACCESS_KEY_SECRET,
        security_token: None,
    }
}

fn put(object: &OssObject, body: &[u8], at: OffsetDateTime, region: &str) -> OssRequest {
    let signed = sign_request(
        &ObjectRequest {
            method: "PUT",
            object,
            query: &[],
            headers: &[],
        },
        region,
        keys(),
        at,
    )
    .unwrap();
    let mut headers: Vec<(String, String)> = signed
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    headers.push(("Authorization".into(), signed.authorization));
    OssRequest {
        method: "PUT".into(),
        path: format!("/{}/{}", object.bucket(), object.key()),
        query: None,
        headers,
        body: Bytes::copy_from_slice(body),
    }
}

fn link(object: &OssObject, keys: Keys<'_>, at: OffsetDateTime, expires_s: u64) -> String {
    presign_get(&Presign {
        object,
        region: "cn-hangzhou",
        endpoint: &"http://127.0.0.1:8686".parse::<Endpoint>().unwrap(),
        keys,
        signed_at: at,
        expires_s,
        sign_host: false,
    })
    .unwrap()
}

fn get(url: &str) -> OssRequest {
    let rest = url.strip_prefix("http://127.0.0.1:8686").unwrap();
    let (path, query) = rest.split_once('?').unwrap();
    OssRequest {
        method: "GET".into(),
        path: path.into(),
        query: Some(query.into()),
        headers: Vec::new(),
        body: Bytes::new(),
    }
}

fn status(outcome: &OssOutcome) -> (u16, String) {
    match outcome {
        OssOutcome::Reply(reply) => {
            let body = String::from_utf8_lossy(&reply.body);
            let code = body
                .split_once("<Code>")
                .and_then(|(_, rest)| rest.split_once("</Code>"))
                .map_or(String::new(), |(code, _)| code.to_string());
            (reply.status, code)
        }
        OssOutcome::Reset => (0, "reset".into()),
    }
}

fn oss(config: OssConfig) -> Oss {
    Oss::new(config, 1).unwrap()
}

#[test]
fn object_paths_without_an_action_are_oss_and_api_calls_are_not() {
    assert!(routes_to_oss("/photos/a.jpg", None, false));
    assert!(routes_to_oss(
        "/photos/a.jpg",
        Some("x-oss-signature=1"),
        false
    ));
    assert!(routes_to_oss("/photos", None, false));
    assert!(!routes_to_oss(
        "/",
        Some("Action=RegisterCustomFace"),
        false
    ));
    assert!(!routes_to_oss("/", None, false));
    assert!(!routes_to_oss(
        "/x",
        Some("Action=ListCustomPersons&Format=JSON"),
        false
    ));
    assert!(
        !routes_to_oss("/x", None, true),
        "ACS3 calls name their action in a header"
    );
}

#[test]
fn a_link_is_served_until_it_expires_and_refused_as_expired_after() {
    let oss = oss(OssConfig::default());
    let issuer = issuer();
    let now = OffsetDateTime::now_utc();
    let object = OssObject::new("photos", "a.jpg").unwrap();
    let stored = oss.handle(&put(&object, JPEG, now, "cn-hangzhou"), &issuer, "h", now);
    assert_eq!(status(&stored).0, 200);
    let url = link(&object, keys(), now, 60);
    let at = |s: i64| now + time::Duration::seconds(s);
    assert_eq!(status(&oss.handle(&get(&url), &issuer, "h", at(59))).0, 200);
    let expired = oss.handle(&get(&url), &issuer, "h", at(61));
    assert_eq!(status(&expired), (403, "AccessDenied".into()));
    let OssOutcome::Reply(reply) = expired else {
        unreachable!()
    };
    assert!(String::from_utf8_lossy(&reply.body).contains("Request has expired"));
    let requests = oss.snapshot().0.requests;
    assert_eq!((requests.put, requests.get, requests.refused), (1, 2, 1));
}

#[test]
fn a_link_signed_with_an_sts_token_dies_with_the_token() {
    let oss = oss(OssConfig::default());
    let issuer = issuer();
    let key = issuer.issue();
    let now = OffsetDateTime::now_utc();
    let object = OssObject::new("photos", "a.jpg").unwrap();
    oss.handle(&put(&object, JPEG, now, "cn-hangzhou"), &issuer, "h", now);
    let sts = Keys {
        access_key_id: &key.access_key_id,
        secret: &key.access_key_secret,
        security_token: Some(&key.security_token),
    };
    let url = link(&object, sts, now, 3600);
    assert_eq!(status(&oss.handle(&get(&url), &issuer, "h", now)).0, 200);
    let after = key.expires + time::Duration::seconds(1);
    assert_eq!(
        status(&oss.handle(&get(&url), &issuer, "h", after)),
        (403, "SecurityTokenExpired".into())
    );
    let wrong_token = Keys {
        security_token: Some("CAISnot-the-token"),
        ..sts
    };
    let url = link(&object, wrong_token, now, 3600);
    assert_eq!(
        status(&oss.handle(&get(&url), &issuer, "h", now)),
        (403, "InvalidSecurityToken".into())
    );
}

#[test]
fn a_pinned_region_refuses_signatures_for_another() {
    let oss = oss(OssConfig {
        region: Some("cn-shanghai".into()),
        ..OssConfig::default()
    });
    let issuer = issuer();
    let now = OffsetDateTime::now_utc();
    let object = OssObject::new("photos", "a.jpg").unwrap();
    let elsewhere = oss.handle(&put(&object, JPEG, now, "cn-hangzhou"), &issuer, "h", now);
    assert_eq!(status(&elsewhere), (400, "InvalidArgument".into()));
    let here = oss.handle(&put(&object, JPEG, now, "cn-shanghai"), &issuer, "h", now);
    assert_eq!(status(&here).0, 200);
}

#[test]
fn the_service_downloads_its_own_objects_and_tells_refusals_apart() {
    let oss = oss(OssConfig::default());
    let issuer = issuer();
    let own: std::net::SocketAddr = "127.0.0.1:8686".parse().unwrap();
    let now = OffsetDateTime::now_utc();
    let photo = OssObject::new("photos", "a.jpg").unwrap();
    let text = OssObject::new("photos", "a.txt").unwrap();
    oss.handle(&put(&photo, JPEG, now, "cn-hangzhou"), &issuer, "h", now);
    oss.handle(
        &put(&text, b"not an image", now, "cn-hangzhou"),
        &issuer,
        "h",
        now,
    );
    let missing = OssObject::new("photos", "gone.jpg").unwrap();
    let fetch = |url: &str, at: OffsetDateTime| {
        oss.fetch_image(url, own, "RegisterCustomFace", &issuer, at)
    };
    assert_eq!(fetch("http://img.example/a.jpg", now), None);
    assert_eq!(fetch(&link(&photo, keys(), now, 60), now), Some(Ok(())));
    let late = now + time::Duration::seconds(61);
    let expired = fetch(&link(&photo, keys(), now, 60), late)
        .unwrap()
        .unwrap_err();
    assert!(expired.contains("the link has expired"), "{expired}");
    let gone = fetch(&link(&missing, keys(), now, 60), now)
        .unwrap()
        .unwrap_err();
    assert!(gone.contains("not found"), "{gone}");
    let not_image = fetch(&link(&text, keys(), now, 60), now)
        .unwrap()
        .unwrap_err();
    assert!(not_image.contains("not an image"), "{not_image}");
    let tampered = link(&photo, keys(), now, 60).replace("x-oss-expires=60", "x-oss-expires=600");
    let bad = fetch(&tampered, now).unwrap().unwrap_err();
    assert!(bad.contains("signature does not match"), "{bad}");
    let fetches = oss.snapshot().0.fetches;
    let refused: Vec<Option<&str>> = fetches.iter().map(|f| f.refused.as_deref()).collect();
    assert_eq!(
        refused,
        [
            None,
            Some("AccessDenied"),
            Some("NoSuchKey"),
            Some("NotAnImage"),
            Some("SignatureDoesNotMatch")
        ]
    );
    assert_eq!(
        fetches[0].link_expires_ms,
        Some((now.unix_timestamp() + 60) * 1000)
    );
    assert_eq!(
        oss.snapshot().0.requests.get,
        0,
        "downloads are not object requests"
    );
}
