use super::super::tests::{keys, signing_time, text, vectors};
use super::super::{Endpoint, OssObject, Presign, presign_get};
use super::*;
use serde_json::Value;

/// A URL's bucket, key and decoded query.
fn split(url: &str) -> (OssObject, Vec<(String, String)>) {
    let object = OssObject::from_url(url).unwrap();
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let pairs = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (object, pairs)
}

fn received<'a>(
    method: &'a str,
    object: &'a OssObject,
    query: &'a [(String, String)],
    headers: &'a [(String, String)],
) -> Received<'a> {
    Received {
        method,
        bucket: object.bucket(),
        key: object.key(),
        query,
        headers,
    }
}

/// The secret of the vector's key, and the token it came with, for `lookup`.
fn lookup_of(v: &Value) -> impl Fn(&str, Option<&str>) -> Option<String> + '_ {
    move |id: &str, token: Option<&str>| {
        assert_eq!(
            token,
            v["security_token"].as_str(),
            "the token handed to lookup"
        );
        (id == text(v, "access_key_id")).then(|| text(v, "access_key_secret").to_string())
    }
}

fn presigned(
    v: &Value,
    now: OffsetDateTime,
    url: &str,
    host: Option<&str>,
) -> Result<(), Rejection> {
    let (object, query) = split(url);
    let headers: Vec<(String, String)> = host
        .map(|h| ("Host".to_string(), h.to_string()))
        .into_iter()
        .collect();
    verify_presigned(
        &received("GET", &object, &query, &headers),
        text(v, "region"),
        now,
        lookup_of(v),
    )
}

fn all_presigned() -> Vec<Value> {
    let mut all = vectors("v4_presigned_get");
    assert!(all.len() >= 4, "the vector file lost entries");
    all.extend(vectors("v4_presigned_get_published_example"));
    all
}

fn host_of(v: &Value) -> Option<String> {
    v.get("additional_headers").map(|_| {
        format!(
            "{}.oss-{}.aliyuncs.com",
            text(v, "bucket"),
            text(v, "region")
        )
    })
}

#[test]
fn presigned_vectors_pass_from_their_signing_time_to_their_expiry() {
    for v in all_presigned() {
        let (at, url) = (signing_time(&v), text(&v, "url"));
        let expires = Duration::seconds(v["expires_s"].as_i64().unwrap());
        let host = host_of(&v);
        for now in [at, at + expires, at - Duration::minutes(15)] {
            assert_eq!(
                presigned(&v, now, url, host.as_deref()),
                Ok(()),
                "{url} at {now}"
            );
        }
    }
}

#[test]
fn an_expired_or_too_early_presigned_link_is_refused() {
    for v in all_presigned() {
        let (at, url) = (signing_time(&v), text(&v, "url"));
        let expires = Duration::seconds(v["expires_s"].as_i64().unwrap());
        let host = host_of(&v);
        let late = at + expires + Duration::seconds(1);
        assert_eq!(
            presigned(&v, late, url, host.as_deref()),
            Err(Rejection::Expired)
        );
        let early = at - MAX_SKEW - Duration::seconds(1);
        assert_eq!(
            presigned(&v, early, url, host.as_deref()),
            Err(Rejection::TooSkewed)
        );
    }
}

#[test]
fn a_tampered_signature_or_changed_key_or_host_is_refused() {
    for v in all_presigned() {
        let (at, url) = (signing_time(&v), text(&v, "url"));
        let host = host_of(&v);
        let last = url.chars().last().unwrap();
        let tampered = format!(
            "{}{}",
            &url[..url.len() - 1],
            if last == '0' { '1' } else { '0' }
        );
        assert!(
            matches!(
                presigned(&v, at, &tampered, host.as_deref()),
                Err(Rejection::BadSignature { .. })
            ),
            "{tampered}"
        );
        let (object, query) = split(url);
        let changed = OssObject::new(object.bucket(), &format!("{}x", object.key())).unwrap();
        let headers: Vec<(String, String)> = host
            .iter()
            .map(|h| ("host".to_string(), h.clone()))
            .collect();
        let result = verify_presigned(
            &received("GET", &changed, &query, &headers),
            text(&v, "region"),
            at,
            lookup_of(&v),
        );
        assert!(
            matches!(result, Err(Rejection::BadSignature { .. })),
            "{url}"
        );
        let result = verify_presigned(
            &received("PUT", &object, &query, &headers),
            text(&v, "region"),
            at,
            lookup_of(&v),
        );
        assert!(
            matches!(result, Err(Rejection::BadSignature { .. })),
            "PUT {url}"
        );
    }
    let v = &vectors("v4_presigned_get_published_example")[0];
    let (at, url) = (signing_time(v), text(v, "url"));
    assert!(matches!(
        presigned(v, at, url, Some("otherbucket.oss-cn-hangzhou.aliyuncs.com")),
        Err(Rejection::BadSignature { .. })
    ));
    assert_eq!(
        presigned(v, at, url, None),
        Err(Rejection::Missing("header named as signed"))
    );
}

#[test]
fn a_presigned_link_without_a_parameter_or_with_a_foreign_scope_is_refused() {
    let v = &vectors("v4_presigned_get")[0];
    let (at, url) = (signing_time(v), text(v, "url"));
    let (object, query) = split(url);
    let check = |query: &[(String, String)], region: &str| {
        verify_presigned(
            &received("GET", &object, query, &[]),
            region,
            at,
            lookup_of(v),
        )
    };
    for name in [
        "x-oss-signature-version",
        "x-oss-credential",
        "x-oss-date",
        "x-oss-expires",
        "x-oss-signature",
    ] {
        let without: Vec<_> = query.iter().filter(|(k, _)| k != name).cloned().collect();
        assert_eq!(
            check(&without, "cn-shanghai"),
            Err(Rejection::Missing(name))
        );
    }
    assert!(matches!(
        check(&query, "cn-beijing"),
        Err(Rejection::WrongScope { ref expected, .. }) if expected == "20261205/cn-beijing/oss/aliyun_v4_request"
    ));
    let replace = |name: &str, value: &str| -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if k == name {
                        value.to_string()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    };
    let other_day = replace(
        "x-oss-credential",
        "LTAI5tExampleKeyId/20261204/cn-shanghai/oss/aliyun_v4_request",
    );
    assert!(matches!(
        check(&other_day, "cn-shanghai"),
        Err(Rejection::WrongScope { .. })
    ));
    let other_service = replace(
        "x-oss-credential",
        "LTAI5tExampleKeyId/20261205/cn-shanghai/s3/aws4_request",
    );
    assert!(matches!(
        check(&other_service, "cn-shanghai"),
        Err(Rejection::WrongScope { .. })
    ));
    let other_id = replace(
        "x-oss-credential",
        "LTAI5tOther/20261205/cn-shanghai/oss/aliyun_v4_request",
    );
    assert_eq!(check(&other_id, "cn-shanghai"), Err(Rejection::UnknownKey));
    for (name, bad) in [
        ("x-oss-expires", "0"),
        ("x-oss-expires", "604801"),
        ("x-oss-expires", "+900"),
        ("x-oss-date", "2026-12-05T03:04:05Z"),
        ("x-oss-date", "20261305T030405Z"),
        ("x-oss-signature-version", "OSS2"),
        (
            "x-oss-credential",
            "/20261205/cn-shanghai/oss/aliyun_v4_request",
        ),
    ] {
        let got = check(&replace(name, bad), "cn-shanghai");
        assert!(
            matches!(got, Err(Rejection::Malformed(_))),
            "{name}={bad}: {got:?}"
        );
    }
}

#[test]
fn a_loopback_path_style_link_verifies_like_the_public_one() {
    let v = &vectors("v4_presigned_get")[2];
    let object = OssObject::new(text(v, "bucket"), text(v, "key")).unwrap();
    let endpoint: Endpoint = "http://127.0.0.1:9000".parse().unwrap();
    let url = presign_get(&Presign {
        object: &object,
        region: text(v, "region"),
        endpoint: &endpoint,
        keys: keys(v),
        signed_at: signing_time(v),
        expires_s: 604_800,
        sign_host: false,
    })
    .unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:9000/bkt-2/a%2Bb/"),
        "{url}"
    );
    assert_eq!(presigned(v, signing_time(v), &url, None), Ok(()));
}

fn header_vectors() -> Vec<Value> {
    let all = vectors("v4_header_signed");
    assert!(all.len() >= 2, "the vector file lost entries");
    all
}

fn headers_out(v: &Value) -> Vec<(String, String)> {
    v["headers_out"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

fn header_signed(
    v: &Value,
    key: &str,
    headers: &[(String, String)],
    now: OffsetDateTime,
) -> Result<(), Rejection> {
    let object = OssObject::new(text(v, "bucket"), key).unwrap();
    verify_header_signed(
        &received(text(v, "method"), &object, &[], headers),
        text(v, "region"),
        now,
        lookup_of(v),
    )
}

#[test]
fn header_signed_vectors_pass_within_fifteen_minutes_either_way() {
    for v in header_vectors() {
        let (at, key, headers) = (signing_time(&v), text(&v, "key"), headers_out(&v));
        for now in [at, at + MAX_SKEW, at - MAX_SKEW] {
            assert_eq!(
                header_signed(&v, key, &headers, now),
                Ok(()),
                "{key} at {now}"
            );
        }
        for now in [
            at + MAX_SKEW + Duration::seconds(1),
            at - MAX_SKEW - Duration::seconds(1),
        ] {
            assert_eq!(
                header_signed(&v, key, &headers, now),
                Err(Rejection::TooSkewed)
            );
        }
    }
}

#[test]
fn a_header_signed_request_with_anything_changed_is_refused() {
    for v in header_vectors() {
        let (at, key, headers) = (signing_time(&v), text(&v, "key"), headers_out(&v));
        let bad = |r: Result<(), Rejection>| matches!(r, Err(Rejection::BadSignature { .. }));
        assert!(bad(header_signed(&v, &format!("{key}x"), &headers, at)));
        let mut changed = headers.clone();
        changed.push(("x-oss-meta-extra".into(), "1".into()));
        assert!(
            bad(header_signed(&v, key, &changed, at)),
            "an unsigned x-oss header"
        );
        let tampered: Vec<_> = headers
            .iter()
            .map(|(k, val)| {
                let val = if k == "Authorization" {
                    val.replace("Signature=", "Signature=0")
                } else {
                    val.clone()
                };
                (k.clone(), val)
            })
            .collect();
        assert!(bad(header_signed(&v, key, &tampered, at)));
        for name in ["Authorization", "x-oss-date", "x-oss-content-sha256"] {
            let without: Vec<_> = headers.iter().filter(|(k, _)| k != name).cloned().collect();
            assert_eq!(
                header_signed(&v, key, &without, at),
                Err(Rejection::Missing(name))
            );
        }
    }
    let v = &header_vectors()[0];
    let (at, key) = (signing_time(v), text(v, "key"));
    let with_md5 = |md5: &str| -> Vec<(String, String)> {
        headers_out(v)
            .into_iter()
            .map(|(k, val)| {
                if k == "Content-MD5" {
                    (k, md5.to_string())
                } else {
                    (k, val)
                }
            })
            .collect()
    };
    assert!(matches!(
        header_signed(v, key, &with_md5("AAAAAAAAAAAAAAAAAAAAAA=="), at),
        Err(Rejection::BadSignature { .. })
    ));
}

#[test]
fn authorization_headers_parse_back_into_their_parts() {
    let parsed = parse_authorization(
        "OSS4-HMAC-SHA256 Credential=ak/20260101/cn-hangzhou/oss/aliyun_v4_request,AdditionalHeaders=host;range,Signature=ab",
    )
    .unwrap();
    assert_eq!(
        parsed.credential,
        "ak/20260101/cn-hangzhou/oss/aliyun_v4_request"
    );
    assert_eq!(parsed.additional_headers, ["host", "range"]);
    assert_eq!(parsed.signature, "ab");
    assert!(parse_authorization("OSS4-HMAC-SHA256 Credential=ak").is_none());
    assert!(parse_authorization("OSS ak:sig").is_none());
    assert!(parse_authorization("OSS4-HMAC-SHA256 Credential=a,Signature=b,Other=c").is_none());
}

fn v1(v: &Value, url: &str, now: i64) -> Result<(), Rejection> {
    let (object, query) = split(url);
    verify_v1_presigned(
        &received("GET", &object, &query, &[]),
        OffsetDateTime::from_unix_timestamp(now).unwrap(),
        lookup_of(v),
    )
}

#[test]
fn v1_presigned_vectors_pass_until_their_expires_and_not_after() {
    let all = vectors("v1_presigned_get");
    assert!(all.len() >= 3, "the vector file lost entries");
    for v in &all {
        let url = text(v, "url");
        let issued = v["now_epoch"].as_i64().unwrap();
        let expires_at = issued + v["expires_s"].as_i64().unwrap();
        assert_eq!(v1(v, url, issued), Ok(()), "{url}");
        assert_eq!(v1(v, url, expires_at), Ok(()), "{url}");
        assert_eq!(v1(v, url, expires_at + 1), Err(Rejection::Expired), "{url}");
    }
}

#[test]
fn a_v1_link_with_anything_changed_is_refused() {
    for v in &vectors("v1_presigned_get") {
        let (url, now) = (text(v, "url"), v["now_epoch"].as_i64().unwrap());
        let bad = |r: Result<(), Rejection>| matches!(r, Err(Rejection::BadSignature { .. }));
        assert!(
            bad(v1(v, &url.replace("Signature=", "Signature=A"), now)),
            "{url}"
        );
        assert!(bad(v1(v, &url.replace(".jpg?", ".png?"), now)), "{url}");
        let expires = url
            .split("Expires=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let later = (expires.parse::<i64>().unwrap() + 1).to_string();
        assert!(bad(v1(v, &url.replace(expires, &later), now)), "{url}");
        for name in ["OSSAccessKeyId", "Expires", "Signature"] {
            let (object, query) = split(url);
            let without: Vec<_> = query.into_iter().filter(|(k, _)| k != name).collect();
            let got = verify_v1_presigned(
                &received("GET", &object, &without, &[]),
                OffsetDateTime::from_unix_timestamp(now).unwrap(),
                lookup_of(v),
            );
            assert_eq!(got, Err(Rejection::Missing(name)));
        }
    }
    let sts = &vectors("v1_presigned_get")[2];
    let url = text(sts, "url").replace("abc&", "abd&");
    let (object, query) = split(&url);
    let got = verify_v1_presigned(
        &received("GET", &object, &query, &[]),
        OffsetDateTime::from_unix_timestamp(sts["now_epoch"].as_i64().unwrap()).unwrap(),
        |_: &str, token: Option<&str>| {
            assert_eq!(token, Some("CAIS+Example/Token==abd"));
            Some("StsSecretExample")
        },
    );
    assert!(
        matches!(got, Err(Rejection::BadSignature { .. })),
        "a changed STS token"
    );
}

#[test]
fn v1_sub_resources_are_signed_sorted_and_unencoded() {
    let query = vec![
        ("versionId".to_string(), "v 1".to_string()),
        ("acl".to_string(), String::new()),
        ("unrelated".to_string(), "x".to_string()),
    ];
    let headers = vec![
        ("X-OSS-Meta-B".to_string(), " 2 ".to_string()),
        ("x-oss-meta-a".to_string(), "1".to_string()),
        ("Content-Type".to_string(), "image/jpeg".to_string()),
    ];
    let request = Received {
        method: "GET",
        bucket: "b-1",
        key: "k 1",
        query: &query,
        headers: &headers,
    };
    assert_eq!(
        v1_string_to_sign(&request, "100"),
        "GET\n\nimage/jpeg\n100\nx-oss-meta-a:1\nx-oss-meta-b:2\n/b-1/k 1?acl&versionId=v 1"
    );
}

#[test]
fn signing_times_parse_only_in_their_exact_form() {
    let parsed = parse_datetime("20261205T030405Z").unwrap();
    assert_eq!(parsed.unix_timestamp(), 1_796_439_845);
    for bad in [
        "20261205T030405",
        "2026125T030405Z",
        "20261232T030405Z",
        "20261205T250405Z",
        "20261205t030405Z",
        "+0261205T030405Z",
    ] {
        assert_eq!(parse_datetime(bad), None, "{bad}");
    }
}
