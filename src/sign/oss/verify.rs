//! Checking OSS signatures as OSS does, for the sandbox: V4 presigned links and header-signed
//! requests, and V1 presigned links (`OSSAccessKeyId`, `Expires`, `Signature`), which the client
//! never writes but must recognise (api-notes §11).

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::{
    ALGORITHM, MAX_EXPIRES_S, Request, canonical_request, scope, signature, string_to_sign,
};
use crate::sign::signatures_equal;

/// How far a signing time may be from the server's clock (a presigned link: ahead of it only).
pub const MAX_SKEW: Duration = Duration::minutes(15);

/// A request as the server received it.
pub struct Received<'a> {
    pub method: &'a str,
    /// From the host (virtual-hosted) or the first path segment (path-style).
    pub bucket: &'a str,
    /// The rest of the path, percent-decoded.
    pub key: &'a str,
    /// The decoded query parameters, the signature among them.
    pub query: &'a [(String, String)],
    /// Names in any case.
    pub headers: &'a [(String, String)],
}

/// Why a signed request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the request has no {0}")]
    Missing(&'static str),
    #[error("the request's {0} is malformed")]
    Malformed(&'static str),
    #[error("the credential scope {scope} is not {expected}")]
    WrongScope { scope: String, expected: String },
    #[error("the AccessKey id is not known")]
    UnknownKey,
    #[error("the link has expired")]
    Expired,
    #[error("the request time differs from the server's by more than 15 minutes")]
    TooSkewed,
    #[error("the signature does not match; the string to sign is {string_to_sign:?}")]
    BadSignature { string_to_sign: String },
}

fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Parses exactly `YYYYMMDDTHHMMSSZ`.
pub fn parse_datetime(text: &str) -> Option<OffsetDateTime> {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 16
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text[range].parse::<u16>().ok();
    let date = Date::from_calendar_date(
        i32::from(number(0..4)?),
        Month::try_from(u8::try_from(number(4..6)?).ok()?).ok()?,
        u8::try_from(number(6..8)?).ok()?,
    )
    .ok()?;
    let time = Time::from_hms(
        u8::try_from(number(9..11)?).ok()?,
        u8::try_from(number(11..13)?).ok()?,
        u8::try_from(number(13..15)?).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// `AccessKeyId/YYYYMMDD/region/oss/aliyun_v4_request`, split.
struct Credential<'a> {
    access_key_id: &'a str,
    /// Everything after the id.
    scope: &'a str,
}

fn parse_credential(text: &str) -> Option<Credential<'_>> {
    let (access_key_id, scope) = text.split_once('/')?;
    (!access_key_id.is_empty()).then_some(Credential {
        access_key_id,
        scope,
    })
}

/// The scope must be the signing day's, the server's region's, OSS's.
fn check_scope(credential: &Credential<'_>, datetime: &str, region: &str) -> Result<(), Rejection> {
    let expected = scope(&datetime[..8], region);
    if credential.scope == expected {
        return Ok(());
    }
    Err(Rejection::WrongScope {
        scope: credential.scope.to_string(),
        expected,
    })
}

/// The three parts of a V4 `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub credential: &'a str,
    pub additional_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Parses `OSS4-HMAC-SHA256 Credential=…[,AdditionalHeaders=…],Signature=…`; `None` when
/// malformed.
pub fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut credential, mut additional, mut signature) = (None, Vec::new(), None);
    for part in rest.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(value),
            "AdditionalHeaders" => {
                additional = value.split(';').filter(|s| !s.is_empty()).collect()
            }
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    Some(Authorization {
        credential: credential.filter(|s| !s.is_empty())?,
        additional_headers: additional,
        signature: signature.filter(|s| !s.is_empty())?,
    })
}

/// What both V4 forms share once their parts are found: the scope, the key, the signature.
struct V4Check<'a> {
    request: &'a Received<'a>,
    query: &'a [(String, String)],
    region: &'a str,
    datetime: &'a str,
    credential: Credential<'a>,
    additional_headers: Vec<String>,
    signature: &'a str,
    security_token: Option<&'a str>,
}

fn check_v4<S: AsRef<str>>(
    check: V4Check<'_>,
    lookup: impl FnOnce(&str, Option<&str>) -> Option<S>,
) -> Result<(), Rejection> {
    let secret = lookup(check.credential.access_key_id, check.security_token)
        .ok_or(Rejection::UnknownKey)?;
    let additional: Vec<&str> = check
        .additional_headers
        .iter()
        .map(String::as_str)
        .collect();
    if additional
        .iter()
        .any(|name| header(check.request.headers, name).is_none())
    {
        return Err(Rejection::Missing("header named as signed"));
    }
    let canonical = canonical_request(&Request {
        method: check.request.method,
        bucket: check.request.bucket,
        key: check.request.key,
        query: check.query,
        headers: check.request.headers,
        additional_headers: &additional,
    });
    let scope = scope(&check.datetime[..8], check.region);
    let string_to_sign = string_to_sign(check.datetime, &scope, &canonical);
    let expected = signature(
        secret.as_ref(),
        &check.datetime[..8],
        check.region,
        &string_to_sign,
    );
    if signatures_equal(&expected, check.signature) {
        Ok(())
    } else {
        Err(Rejection::BadSignature { string_to_sign })
    }
}

/// Checks a V4 presigned link (`x-oss-signature-version=OSS4-HMAC-SHA256` …) received by a
/// server of `region` at `now`. `lookup` gives the secret of an AccessKey id (and STS token).
pub fn verify_presigned<S: AsRef<str>>(
    request: &Received<'_>,
    region: &str,
    now: OffsetDateTime,
    lookup: impl FnOnce(&str, Option<&str>) -> Option<S>,
) -> Result<(), Rejection> {
    let get = |name: &'static str| param(request.query, name).ok_or(Rejection::Missing(name));
    let version = get("x-oss-signature-version")?;
    let credential = get("x-oss-credential")?;
    let datetime = get("x-oss-date")?;
    let expires = get("x-oss-expires")?;
    let signature = get("x-oss-signature")?;
    if version != ALGORITHM {
        return Err(Rejection::Malformed("x-oss-signature-version"));
    }
    let signed_at = parse_datetime(datetime).ok_or(Rejection::Malformed("x-oss-date"))?;
    let expires: i64 = Some(expires)
        .filter(|e| e.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|e| e.parse().ok())
        .filter(|e| (1..=MAX_EXPIRES_S as i64).contains(e))
        .ok_or(Rejection::Malformed("x-oss-expires"))?;
    let credential =
        parse_credential(credential).ok_or(Rejection::Malformed("x-oss-credential"))?;
    check_scope(&credential, datetime, region)?;
    if signed_at - now > MAX_SKEW {
        return Err(Rejection::TooSkewed);
    }
    if signed_at + Duration::seconds(expires) < now {
        return Err(Rejection::Expired);
    }
    let additional_headers = param(request.query, "x-oss-additional-headers")
        .map(|names| {
            names
                .split(';')
                .filter(|s| !s.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    let query: Vec<(String, String)> = request
        .query
        .iter()
        .filter(|(name, _)| name != "x-oss-signature")
        .cloned()
        .collect();
    check_v4(
        V4Check {
            request,
            query: &query,
            region,
            datetime,
            credential,
            additional_headers,
            signature,
            security_token: param(request.query, "x-oss-security-token"),
        },
        lookup,
    )
}

/// Checks a V4 header-signed request (`Authorization: OSS4-HMAC-SHA256 …`) received by a server
/// of `region` at `now`: `x-oss-date` must be within [`MAX_SKEW`] of `now`, either way.
pub fn verify_header_signed<S: AsRef<str>>(
    request: &Received<'_>,
    region: &str,
    now: OffsetDateTime,
    lookup: impl FnOnce(&str, Option<&str>) -> Option<S>,
) -> Result<(), Rejection> {
    let get = |name: &'static str| header(request.headers, name).ok_or(Rejection::Missing(name));
    let authorization = get("Authorization")?;
    let datetime = get("x-oss-date")?;
    get("x-oss-content-sha256")?;
    let auth = parse_authorization(authorization).ok_or(Rejection::Malformed("Authorization"))?;
    let signed_at = parse_datetime(datetime).ok_or(Rejection::Malformed("x-oss-date"))?;
    let credential =
        parse_credential(auth.credential).ok_or(Rejection::Malformed("Authorization"))?;
    check_scope(&credential, datetime, region)?;
    if (signed_at - now).abs() > MAX_SKEW {
        return Err(Rejection::TooSkewed);
    }
    check_v4(
        V4Check {
            request,
            query: request.query,
            region,
            datetime,
            credential,
            additional_headers: auth
                .additional_headers
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
            signature: auth.signature,
            security_token: header(request.headers, "x-oss-security-token"),
        },
        lookup,
    )
}

/// The query parameters a V1 signature covers (its sub-resources), among those a GET of an
/// object may carry.
const V1_SUBRESOURCES: [&str; 14] = [
    "acl",
    "objectMeta",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "security-token",
    "symlink",
    "tagging",
    "versionId",
    "x-oss-process",
];

/// `METHOD \n Content-MD5 \n Content-Type \n Expires \n` + the `x-oss-*` headers (each
/// `name:value\n`, sorted) + `/bucket/key` with its sub-resources (`?name=value&name`, sorted,
/// not encoded).
pub fn v1_string_to_sign(request: &Received<'_>, expires: &str) -> String {
    let mut oss_headers: Vec<(String, &str)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .filter(|(name, _)| name.starts_with("x-oss-"))
        .collect();
    oss_headers.sort_unstable();
    let mut out = format!(
        "{}\n{}\n{}\n{expires}\n",
        request.method,
        header(request.headers, "content-md5").unwrap_or_default(),
        header(request.headers, "content-type").unwrap_or_default(),
    );
    for (name, value) in oss_headers {
        out.push_str(&format!("{name}:{value}\n"));
    }
    out.push_str(&format!("/{}/{}", request.bucket, request.key));
    let mut subresources: Vec<&(String, String)> = request
        .query
        .iter()
        .filter(|(name, _)| V1_SUBRESOURCES.contains(&name.as_str()))
        .collect();
    subresources.sort_unstable();
    for (i, (name, value)) in subresources.into_iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        if !value.is_empty() {
            out.push('=');
            out.push_str(value);
        }
    }
    out
}

/// `base64(HMAC-SHA1(secret, string_to_sign))`.
pub fn v1_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a V1 presigned link (`OSSAccessKeyId`, `Expires` in Unix seconds, `Signature`, and
/// `security-token` with STS) received at `now`.
pub fn verify_v1_presigned<S: AsRef<str>>(
    request: &Received<'_>,
    now: OffsetDateTime,
    lookup: impl FnOnce(&str, Option<&str>) -> Option<S>,
) -> Result<(), Rejection> {
    let get = |name: &'static str| param(request.query, name).ok_or(Rejection::Missing(name));
    let access_key_id = get("OSSAccessKeyId")?;
    let expires = get("Expires")?;
    let signature = get("Signature")?;
    let expires_at: i64 = Some(expires)
        .filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|e| e.parse().ok())
        .ok_or(Rejection::Malformed("Expires"))?;
    if now.unix_timestamp() > expires_at {
        return Err(Rejection::Expired);
    }
    let secret = lookup(access_key_id, param(request.query, "security-token"))
        .ok_or(Rejection::UnknownKey)?;
    let string_to_sign = v1_string_to_sign(request, expires);
    let expected = v1_signature(secret.as_ref(), &string_to_sign);
    if signatures_equal(&expected, signature) {
        Ok(())
    } else {
        Err(Rejection::BadSignature { string_to_sign })
    }
}

#[cfg(test)]
mod tests {
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
}
