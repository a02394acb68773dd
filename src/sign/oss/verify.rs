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
#[path = "verify_tests.rs"]
mod tests;
