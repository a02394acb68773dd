//! OSS signatures (api-notes §11), shared by the client and the sandbox: V4
//! (`OSS4-HMAC-SHA256`) presigned GET links and header-signed object requests, which the client
//! writes; their verification, and V1 presigned links (recognised, never written), in [`verify`];
//! `oss://BUCKET/KEY` and the URLs of OSS objects in [`object`].
//!
//! Everything here is pure: the signing time is a parameter, nothing is sent. The known-answer
//! vectors in `tests/data/oss-signing.json` (the official SDKs' signing code and the published
//! example) pin it down.

pub mod object;
pub mod verify;

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

pub use object::{Endpoint, EndpointError, ObjectError, OssObject};
pub use verify::{
    Received, Rejection, verify_header_signed, verify_presigned, verify_v1_presigned,
};

use super::percent_encode;

/// The algorithm name, first in `Authorization`, in the string-to-sign and in presigned links.
pub const ALGORITHM: &str = "OSS4-HMAC-SHA256";
/// The payload hash of every request this crate signs: the body is not hashed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The longest life of a presigned link: 7 days.
pub const MAX_EXPIRES_S: u64 = 604_800;

const SERVICE: &str = "oss";
const TERMINATOR: &str = "aliyun_v4_request";

/// The access key that signs. No `Debug` of its secret or token: they print as `(redacted)`.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a str,
    /// The STS token, for temporary credentials.
    pub security_token: Option<&'a str>,
}

impl fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"(redacted)")
            .field("security_token", &self.security_token.map(|_| "(redacted)"))
            .finish()
    }
}

/// Everything a V4 signature covers.
pub struct Request<'a> {
    pub method: &'a str,
    pub bucket: &'a str,
    /// The object key, decoded (it is encoded here).
    pub key: &'a str,
    /// Decoded query parameters, without `x-oss-signature` (they are encoded here).
    pub query: &'a [(String, String)],
    /// The request's headers, names in any case. Signed: `Content-Type`, `Content-MD5`, every
    /// `x-oss-*` one, and those named in `additional_headers`.
    pub headers: &'a [(String, String)],
    /// Lower-case names of the further headers signed (`x-oss-additional-headers`).
    pub additional_headers: &'a [&'a str],
}

/// A V4 signature cannot be made with these inputs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error(
        "a signed link lives 1 to {MAX_EXPIRES_S} seconds (7 days), not {0}: choose a shorter expiry"
    )]
    Expiry(u64),
    #[error(
        "'{0}' is not an OSS region: write it like cn-shanghai (lower-case letters, digits, hyphens)"
    )]
    Region(String),
}

/// Percent-encodes `/` + bucket + `/` + key, keeping `A-Za-z0-9-._~` and `/`.
pub fn canonical_uri(bucket: &str, key: &str) -> String {
    format!("/{}/{}", encode_path(bucket), encode_path(key))
}

/// Percent-encodes a path by RFC 3986, keeping unreserved characters and `/`.
pub fn encode_path(path: &str) -> String {
    let segments: Vec<String> = path.split('/').map(percent_encode).collect();
    segments.join("/")
}

/// The query sorted by name (byte order, then value), names and values RFC 3986-encoded,
/// `&`-joined; a parameter with an empty value is its bare name.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = query
        .iter()
        .map(|(name, value)| (percent_encode(name), percent_encode(value)))
        .collect();
    encoded.sort_unstable();
    let parts: Vec<String> = encoded
        .into_iter()
        .map(|(name, value)| {
            if value.is_empty() {
                name
            } else {
                format!("{name}={value}")
            }
        })
        .collect();
    parts.join("&")
}

/// Whether OSS signs a header of this lower-case name without being told to.
pub fn signed_by_default(name: &str) -> bool {
    name == "content-type" || name == "content-md5" || name.starts_with("x-oss-")
}

/// `METHOD \n URI \n query \n headers (each `name:value\n`) \n additional names \n payload hash`,
/// the payload hash being `x-oss-content-sha256` when sent, else `UNSIGNED-PAYLOAD`.
pub fn canonical_request(request: &Request<'_>) -> String {
    let mut headers: Vec<(String, &str)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .filter(|(name, _)| {
            signed_by_default(name) || request.additional_headers.contains(&name.as_str())
        })
        .collect();
    headers.sort_unstable();
    let payload = headers
        .iter()
        .find(|(name, _)| name == "x-oss-content-sha256")
        .map_or(UNSIGNED_PAYLOAD, |(_, value)| value);
    let mut block = String::new();
    for (name, value) in &headers {
        block.push_str(name);
        block.push(':');
        block.push_str(value);
        block.push('\n');
    }
    let mut additional = request.additional_headers.to_vec();
    additional.sort_unstable();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_uri(request.bucket, request.key),
        canonical_query(request.query),
        block,
        additional.join(";"),
        payload
    )
}

/// `YYYYMMDDTHHMMSSZ` in UTC, as sent in `x-oss-date`.
pub fn format_datetime(at: OffsetDateTime) -> String {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    at.to_offset(time::UtcOffset::UTC)
        .format(format)
        .expect("a four-digit year formats")
}

/// `Sat, 05 Dec 2026 03:04:05 GMT`, the `Date` header sent beside `x-oss-date`.
pub fn format_http_date(at: OffsetDateTime) -> String {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(format)
        .expect("a four-digit year formats")
}

/// `YYYYMMDD/region/oss/aliyun_v4_request`.
pub fn scope(day: &str, region: &str) -> String {
    format!("{day}/{region}/{SERVICE}/{TERMINATOR}")
}

/// `OSS4-HMAC-SHA256 \n x-oss-date \n scope \n hex(SHA256(canonical request))`.
pub fn string_to_sign(datetime: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{datetime}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `hex(HMAC-SHA256(key, string_to_sign))`, the key chained from `"aliyun_v4" + secret`
/// through the day (`YYYYMMDD`), the region, `oss` and `aliyun_v4_request`.
pub fn signature(secret: &str, day: &str, region: &str, string_to_sign: &str) -> String {
    let mut key = hmac_sha256(format!("aliyun_v4{secret}").as_bytes(), day);
    for part in [region, SERVICE, TERMINATOR] {
        key = hmac_sha256(&key, part);
    }
    hex::encode(hmac_sha256(&key, string_to_sign))
}

/// Whether `region` has the shape of one: lower-case letters, digits and inner hyphens.
pub fn is_region(region: &str) -> bool {
    !region.is_empty()
        && !region.starts_with('-')
        && !region.ends_with('-')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What a presigned GET link is made of.
pub struct Presign<'a> {
    pub object: &'a OssObject,
    pub region: &'a str,
    pub endpoint: &'a Endpoint,
    pub keys: Keys<'a>,
    pub signed_at: OffsetDateTime,
    /// 1 to [`MAX_EXPIRES_S`]. With STS keys the link dies with the token, whatever this says.
    pub expires_s: u64,
    /// Sign the `Host` header too (`x-oss-additional-headers=host`), as the published example
    /// does. Nothing needs it: a link is bound to its bucket and key without it.
    pub sign_host: bool,
}

/// A presigned V4 GET link: the object's URL with the `x-oss-*` parameters, in the order the
/// official SDK writes them, the signature last.
pub fn presign_get(presign: &Presign<'_>) -> Result<String, SignError> {
    if !(1..=MAX_EXPIRES_S).contains(&presign.expires_s) {
        return Err(SignError::Expiry(presign.expires_s));
    }
    if !is_region(presign.region) {
        return Err(SignError::Region(presign.region.to_string()));
    }
    let (bucket, key) = (presign.object.bucket(), presign.object.key());
    let datetime = format_datetime(presign.signed_at);
    let day = &datetime[..8];
    let scope = scope(day, presign.region);
    let keys = presign.keys;
    let mut query: Vec<(String, String)> = vec![
        ("x-oss-signature-version".into(), ALGORITHM.into()),
        ("x-oss-date".into(), datetime.clone()),
        ("x-oss-expires".into(), presign.expires_s.to_string()),
        (
            "x-oss-credential".into(),
            format!("{}/{scope}", keys.access_key_id),
        ),
    ];
    if let Some(token) = keys.security_token {
        query.push(("x-oss-security-token".into(), token.into()));
    }
    let host = presign.endpoint.host_for(bucket);
    let mut headers = Vec::new();
    let mut additional: &[&str] = &[];
    if presign.sign_host {
        query.push(("x-oss-additional-headers".into(), "host".into()));
        headers.push(("host".to_string(), host.clone()));
        additional = &["host"];
    }
    let canonical = canonical_request(&Request {
        method: "GET",
        bucket,
        key,
        query: &query,
        headers: &headers,
        additional_headers: additional,
    });
    let string_to_sign = string_to_sign(&datetime, &scope, &canonical);
    let signature = signature(keys.secret, day, presign.region, &string_to_sign);
    query.push(("x-oss-signature".into(), signature));
    let pairs: Vec<String> = query
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect();
    Ok(format!(
        "{}?{}",
        presign.endpoint.object_url(bucket, key),
        pairs.join("&")
    ))
}

/// An object request (PUT, HEAD, GET … by the client itself) to sign in its headers.
pub struct ObjectRequest<'a> {
    pub method: &'a str,
    pub object: &'a OssObject,
    /// Decoded query parameters; usually none.
    pub query: &'a [(String, String)],
    /// `Content-Type`, `Content-MD5`, `x-oss-*` …, without the ones [`sign_request`] adds.
    pub headers: &'a [(String, String)],
}

/// What [`sign_request`] adds to a request.
#[derive(Clone, PartialEq, Eq)]
pub struct HeaderSignature {
    /// The `Authorization` value.
    pub authorization: String,
    /// `x-oss-date`, `Date`, `x-oss-security-token` (STS), `x-oss-content-sha256`.
    pub headers: Vec<(&'static str, String)>,
}

impl fmt::Debug for HeaderSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("HeaderSignature")
            .field("headers", &names)
            .finish_non_exhaustive()
    }
}

/// Signs `request` in its headers: `Authorization: OSS4-HMAC-SHA256 Credential=…,Signature=…`.
pub fn sign_request(
    request: &ObjectRequest<'_>,
    region: &str,
    keys: Keys<'_>,
    at: OffsetDateTime,
) -> Result<HeaderSignature, SignError> {
    if !is_region(region) {
        return Err(SignError::Region(region.to_string()));
    }
    let datetime = format_datetime(at);
    let day = datetime[..8].to_string();
    let mut added: Vec<(&'static str, String)> = vec![
        ("x-oss-date", datetime.clone()),
        ("Date", format_http_date(at)),
    ];
    if let Some(token) = keys.security_token {
        added.push(("x-oss-security-token", token.to_string()));
    }
    added.push(("x-oss-content-sha256", UNSIGNED_PAYLOAD.to_string()));
    let mut headers = request.headers.to_vec();
    headers.extend(
        added
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone())),
    );
    let canonical = canonical_request(&Request {
        method: request.method,
        bucket: request.object.bucket(),
        key: request.object.key(),
        query: request.query,
        headers: &headers,
        additional_headers: &[],
    });
    let scope = scope(&day, region);
    let string_to_sign = string_to_sign(&datetime, &scope, &canonical);
    let signature = signature(keys.secret, &day, region, &string_to_sign);
    Ok(HeaderSignature {
        authorization: format!(
            "{ALGORITHM} Credential={}/{scope},Signature={signature}",
            keys.access_key_id
        ),
        headers: added,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;
    use time::format_description::well_known::Rfc3339;

    pub(crate) const VECTORS: &str = include_str!("../../tests/data/oss-signing.json");

    pub(crate) fn vectors(name: &str) -> Vec<Value> {
        let doc: Value = serde_json::from_str(VECTORS).unwrap();
        match &doc[name] {
            Value::Array(all) => all.clone(),
            one => vec![one.clone()],
        }
    }

    pub(crate) fn text<'v>(v: &'v Value, name: &str) -> &'v str {
        v[name].as_str().unwrap_or_else(|| panic!("{name} missing"))
    }

    pub(crate) fn keys(v: &Value) -> Keys<'_> {
        Keys {
            access_key_id: text(v, "access_key_id"),
            secret: text(v, "access_key_secret"),
            security_token: v["security_token"].as_str(),
        }
    }

    pub(crate) fn signing_time(v: &Value) -> OffsetDateTime {
        match v.get("signing_time_epoch") {
            Some(epoch) => OffsetDateTime::from_unix_timestamp(epoch.as_i64().unwrap()).unwrap(),
            None => OffsetDateTime::parse(text(v, "signing_time"), &Rfc3339).unwrap(),
        }
    }

    pub(crate) fn object(v: &Value) -> OssObject {
        OssObject::new(text(v, "bucket"), text(v, "key")).unwrap()
    }

    fn public_endpoint(v: &Value) -> Endpoint {
        Endpoint::for_region(text(v, "region")).unwrap()
    }

    #[test]
    fn every_presigned_get_vector_gives_its_url() {
        let mut all = vectors("v4_presigned_get");
        assert!(all.len() >= 4, "the vector file lost entries");
        all.extend(vectors("v4_presigned_get_published_example"));
        for v in &all {
            let (object, endpoint) = (object(v), public_endpoint(v));
            let url = presign_get(&Presign {
                object: &object,
                region: text(v, "region"),
                endpoint: &endpoint,
                keys: keys(v),
                signed_at: signing_time(v),
                expires_s: v["expires_s"].as_u64().unwrap(),
                sign_host: v.get("additional_headers").is_some(),
            })
            .unwrap();
            assert_eq!(url, text(v, "url"), "{}", object);
        }
    }

    fn pairs(v: &Value) -> Vec<(String, String)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    }

    /// The string-to-sign rebuilt from a vector's own URL (its query minus the signature).
    #[test]
    fn every_presigned_vector_query_gives_its_string_to_sign() {
        for v in &vectors("v4_presigned_get") {
            let url = text(v, "url");
            let query: Vec<(String, String)> =
                form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
                    .filter(|(name, _)| name != "x-oss-signature")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
            let canonical = canonical_request(&Request {
                method: "GET",
                bucket: text(v, "bucket"),
                key: text(v, "key"),
                query: &query,
                headers: &[],
                additional_headers: &[],
            });
            let datetime = format_datetime(signing_time(v));
            let got = string_to_sign(
                &datetime,
                &scope(&datetime[..8], text(v, "region")),
                &canonical,
            );
            assert_eq!(got, text(v, "string_to_sign"), "{url}");
        }
    }

    #[test]
    fn every_header_signed_vector_gives_its_authorization_and_headers() {
        let all = vectors("v4_header_signed");
        assert!(all.len() >= 2, "the vector file lost entries");
        for v in &all {
            let object = object(v);
            let headers_in = pairs(&v["headers_in"]);
            let signed = sign_request(
                &ObjectRequest {
                    method: text(v, "method"),
                    object: &object,
                    query: &[],
                    headers: &headers_in,
                },
                text(v, "region"),
                keys(v),
                signing_time(v),
            )
            .unwrap();
            let expected = pairs(&v["headers_out"]);
            let authorization = expected.iter().find(|(k, _)| k == "Authorization").unwrap();
            assert_eq!(signed.authorization, authorization.1, "{object}");
            let mut got = headers_in.clone();
            got.extend(
                signed
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone())),
            );
            got.push(("Authorization".into(), signed.authorization.clone()));
            let (mut got, mut expected) = (got, expected);
            got.sort();
            expected.sort();
            assert_eq!(got, expected, "{object}");

            let datetime = format_datetime(signing_time(v));
            let canonical = canonical_request(&Request {
                method: text(v, "method"),
                bucket: object.bucket(),
                key: object.key(),
                query: &[],
                headers: &pairs(&v["headers_out"]),
                additional_headers: &[],
            });
            let sts = string_to_sign(
                &datetime,
                &scope(&datetime[..8], text(v, "region")),
                &canonical,
            );
            assert_eq!(sts, text(v, "string_to_sign"), "{object}");
        }
    }

    #[test]
    fn presigned_links_live_one_second_to_seven_days_in_a_region_shaped_region() {
        let v = &vectors("v4_presigned_get")[0];
        let (object, endpoint) = (object(v), public_endpoint(v));
        let link = |expires_s: u64, region: &str| {
            presign_get(&Presign {
                object: &object,
                region,
                endpoint: &endpoint,
                keys: keys(v),
                signed_at: signing_time(v),
                expires_s,
                sign_host: false,
            })
        };
        assert_eq!(link(0, "cn-shanghai"), Err(SignError::Expiry(0)));
        assert_eq!(
            link(604_801, "cn-shanghai"),
            Err(SignError::Expiry(604_801))
        );
        assert!(
            link(1, "cn-shanghai")
                .unwrap()
                .contains("&x-oss-expires=1&")
        );
        assert!(
            link(604_800, "cn-shanghai")
                .unwrap()
                .contains("&x-oss-expires=604800&")
        );
        for bad in ["", "cn/shanghai", "CN-SHANGHAI", "-cn"] {
            assert_eq!(link(900, bad), Err(SignError::Region(bad.into())));
        }
    }

    #[test]
    fn a_loopback_link_carries_the_same_signature_as_the_public_one() {
        let v = &vectors("v4_presigned_get")[1];
        let object = object(v);
        let link = |endpoint: &Endpoint| {
            presign_get(&Presign {
                object: &object,
                region: text(v, "region"),
                endpoint,
                keys: keys(v),
                signed_at: signing_time(v),
                expires_s: 3600,
                sign_host: false,
            })
            .unwrap()
        };
        let local = link(&"http://localhost:8080/".parse().unwrap());
        let public = text(v, "url");
        assert_eq!(
            local.split_once('?').unwrap().1,
            public.split_once('?').unwrap().1
        );
        assert!(
            local.starts_with("http://localhost:8080/media-faces/%E4%BA%BA%E8%84%B8/"),
            "{local}"
        );
    }

    #[test]
    fn an_oss_address_and_its_v4_and_v1_links_name_the_same_object() {
        let v4 = vectors("v4_presigned_get");
        let v1 = vectors("v1_presigned_get");
        for v in v4.iter().chain(&v1) {
            let expected = object(v);
            let address = format!("oss://{}/{}", text(v, "bucket"), text(v, "key"));
            assert_eq!(address.parse::<OssObject>(), Ok(expected.clone()));
            assert_eq!(expected.to_string(), address);
            assert_eq!(
                OssObject::from_url(text(v, "url")),
                Some(expected.clone()),
                "{address}"
            );
        }
        let published = &vectors("v4_presigned_get_published_example")[0];
        assert_eq!(
            OssObject::from_url(text(published, "url")),
            Some(object(published))
        );
    }

    #[test]
    fn canonical_queries_sort_encode_and_leave_empty_values_bare() {
        let query = vec![
            ("x-oss-b".to_string(), "a/b c".to_string()),
            ("acl".to_string(), String::new()),
            ("X-Oss-A".to_string(), "+".to_string()),
        ];
        assert_eq!(canonical_query(&query), "X-Oss-A=%2B&acl&x-oss-b=a%2Fb%20c");
        assert_eq!(canonical_uri("b-1", "x/%41 ?/"), "/b-1/x/%2541%20%3F/");
    }

    #[test]
    fn only_content_headers_x_oss_headers_and_named_ones_are_signed() {
        let headers = vec![
            ("Host".to_string(), "h".to_string()),
            ("Range".to_string(), "bytes=0-1".to_string()),
            ("X-OSS-Meta-A".to_string(), "  1 ".to_string()),
            ("Content-Type".to_string(), "image/png".to_string()),
        ];
        let request = |additional: &'static [&'static str]| Request {
            method: "GET",
            bucket: "b-1",
            key: "k",
            query: &[],
            headers: &headers,
            additional_headers: additional,
        };
        assert_eq!(
            canonical_request(&request(&[])),
            "GET\n/b-1/k\n\ncontent-type:image/png\nx-oss-meta-a:1\n\n\nUNSIGNED-PAYLOAD"
        );
        assert_eq!(
            canonical_request(&request(&["range", "host"])),
            "GET\n/b-1/k\n\ncontent-type:image/png\nhost:h\nrange:bytes=0-1\nx-oss-meta-a:1\n\nhost;range\nUNSIGNED-PAYLOAD"
        );
    }

    #[test]
    fn secrets_and_tokens_never_reach_debug_output() {
        let keys = Keys {
            access_key_id: "ak",
            secret: "TopSecretValue",
            security_token: Some("TokenValue"),
        };
        let shown = format!("{keys:?}");
        assert!(shown.contains("ak"), "{shown}");
        assert!(
            !shown.contains("TopSecretValue") && !shown.contains("TokenValue"),
            "{shown}"
        );
        let object = OssObject::new("b-1", "k").unwrap();
        let signed = sign_request(
            &ObjectRequest {
                method: "HEAD",
                object: &object,
                query: &[],
                headers: &[],
            },
            "cn-shanghai",
            keys,
            signing_time(&vectors("v4_header_signed")[0]),
        )
        .unwrap();
        let shown = format!("{signed:?}");
        assert!(shown.contains("x-oss-security-token"), "{shown}");
        assert!(
            !shown.contains("TokenValue") && !shown.contains("Signature="),
            "{shown}"
        );
    }
}
