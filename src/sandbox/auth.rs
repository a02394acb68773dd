//! Gateway authentication, in the gateway's order: parameters present → key known → token →
//! timestamp → signature (the nonce is checked after, under the state lock, by [`NonceCache`]).
//! Requests signed with RPC v1 (the `Signature` parameter) and with ACS3-HMAC-SHA256 (the
//! `Authorization` header) are both verified; keys are the configured one and every STS
//! credential the sandbox issued ([`Keyring`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::params::Params;
use super::response::ApiError;
use crate::sign;

/// How far a timestamp may be from now, and how long a nonce stays used.
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);
/// At most this many nonces are remembered; past it the oldest are forgotten early.
const NONCE_CAP: usize = 250_000;

/// The configured credential the sandbox accepts.
pub(crate) struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: Option<String>,
}

/// A temporary credential the sandbox handed out (STS, metadata, credentials URI).
#[derive(Clone, Debug)]
pub(crate) struct IssuedKey {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    pub expires: OffsetDateTime,
}

/// Every key the sandbox accepts: the configured one and the issued ones (kept a while after
/// they expire, so they are refused as expired rather than unknown).
pub(crate) struct Keyring {
    fixed: Credentials,
    issued: HashMap<String, IssuedKey>,
}

/// What authentication needs of a key.
struct Key<'a> {
    secret: &'a str,
    token: Option<&'a str>,
    expires: Option<OffsetDateTime>,
}

impl Keyring {
    pub fn new(fixed: Credentials) -> Keyring {
        Keyring {
            fixed,
            issued: HashMap::new(),
        }
    }

    fn find(&self, id: &str) -> Option<Key<'_>> {
        if id == self.fixed.access_key_id {
            return Some(Key {
                secret: &self.fixed.access_key_secret,
                token: self.fixed.security_token.as_deref(),
                expires: None,
            });
        }
        self.issued.get(id).map(|k| Key {
            secret: &k.access_key_secret,
            token: Some(&k.security_token),
            expires: Some(k.expires),
        })
    }

    pub fn issued(&self) -> impl Iterator<Item = &IssuedKey> {
        self.issued.values()
    }

    /// Remembers `key` (and forgets keys that expired more than [`WINDOW`] ago).
    pub fn add(&mut self, key: IssuedKey, now: OffsetDateTime) {
        self.issued.retain(|_, k| now - k.expires < WINDOW);
        self.issued.insert(key.access_key_id.clone(), key);
    }
}

fn incomplete(detail: &str) -> ApiError {
    ApiError::invalid(
        "IncompleteSignature",
        format!("The request signature does not conform to Aliyun standards: {detail}."),
    )
}

/// Why a key is refused, whichever protocol (the API's, OSS's) asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyRefusal {
    Unknown,
    TokenMismatch,
    TokenExpired,
}

impl Keyring {
    /// The key `id` with the token that came with the request, checked: known, same token,
    /// unexpired.
    fn check(
        &self,
        id: &str,
        token: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Key<'_>, KeyRefusal> {
        let key = self.find(id).ok_or(KeyRefusal::Unknown)?;
        if let Some(expected) = key.token
            && token != Some(expected)
        {
            return Err(KeyRefusal::TokenMismatch);
        }
        if key.expires.is_some_and(|at| now >= at) {
            return Err(KeyRefusal::TokenExpired);
        }
        Ok(key)
    }

    /// The secret of key `id`, checked as [`Keyring::check`] does.
    pub fn secret(
        &self,
        id: &str,
        token: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<&str, KeyRefusal> {
        self.check(id, token, now).map(|key| key.secret)
    }

    /// When the temporary key `id` expires; `None` for the configured key or an unknown one.
    pub fn expiry(&self, id: &str) -> Option<OffsetDateTime> {
        self.find(id).and_then(|key| key.expires)
    }
}

/// [`Keyring::check`] with the gateway's answers.
fn check_key<'k>(
    keys: &'k Keyring,
    id: &str,
    token: Option<&str>,
    now: OffsetDateTime,
) -> Result<Key<'k>, ApiError> {
    keys.check(id, token, now).map_err(|refusal| match refusal {
        KeyRefusal::Unknown => ApiError::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ),
        KeyRefusal::TokenMismatch => ApiError::invalid(
            "InvalidSecurityToken.Mismatch",
            "Specified SecurityToken mismatch with the AccessKey.",
        ),
        KeyRefusal::TokenExpired => ApiError::invalid(
            "InvalidSecurityToken.Expired",
            "Specified SecurityToken is expired.",
        ),
    })
}

/// Everything but the nonce, for an RPC v1 request. `now` is the caller's clock, so tests can
/// move it.
pub(crate) fn authenticate(
    params: &Params,
    method: &str,
    keys: &Keyring,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let key_id = params
        .non_empty("AccessKeyId")
        .ok_or_else(|| ApiError::missing("AccessKeyId"))?;
    for name in [
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "Signature",
    ] {
        if params.non_empty(name).is_none() {
            return Err(incomplete(&format!("{name} is missing")));
        }
    }
    if params.get("SignatureMethod") != Some("HMAC-SHA1") {
        return Err(incomplete("SignatureMethod must be HMAC-SHA1"));
    }
    if params.get("SignatureVersion") != Some("1.0") {
        return Err(incomplete("SignatureVersion must be 1.0"));
    }
    let key = check_key(keys, key_id, params.get("SecurityToken"), now)?;
    check_timestamp(params.get("Timestamp").unwrap_or_default(), now)?;
    check_signature(params, method, key.secret)
}

/// What an ACS3-HMAC-SHA256 request brings, as received.
pub(crate) struct V3Request {
    pub method: String,
    pub path: String,
    /// The URL's query, decoded (a form body is covered by the payload hash instead).
    pub query: Vec<(String, String)>,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Lower-case hex SHA-256 of the body as received.
    pub body_hash: String,
}

impl V3Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// The headers every V3 request sends and signs (with `host`).
const V3_REQUIRED: [&str; 5] = [
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
];

/// Everything but the nonce, for an ACS3-HMAC-SHA256 request (api-notes §8).
pub(crate) fn authenticate_v3(
    request: &V3Request,
    keys: &Keyring,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let value = request.header("authorization").unwrap_or_default();
    let auth = sign::v3::parse_authorization(value).ok_or_else(|| {
        incomplete("the Authorization header must read ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…")
    })?;
    for name in V3_REQUIRED {
        if request.header(name).is_none() {
            return Err(incomplete(&format!("the {name} header is missing")));
        }
    }
    let must_sign = request
        .headers
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("x-acs-"))
        .chain(["host"]);
    for name in must_sign {
        if !auth.signed_headers.contains(&name) {
            return Err(incomplete(&format!("the {name} header is not signed")));
        }
    }
    if request.header("x-acs-content-sha256") != Some(request.body_hash.as_str()) {
        return Err(incomplete(
            "x-acs-content-sha256 is not the SHA-256 of the body",
        ));
    }
    let key = check_key(
        keys,
        auth.access_key_id,
        request.header("x-acs-security-token"),
        now,
    )?;
    check_timestamp(request.header("x-acs-date").unwrap_or_default(), now)?;
    let mut signed = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let value = request
            .header(name)
            .ok_or_else(|| incomplete(&format!("the signed header {name} is missing")))?;
        signed.push((name.to_string(), value.to_string()));
    }
    let canonical = sign::v3::canonical_request(&sign::v3::Request {
        method: &request.method,
        path: &request.path,
        query: &request.query,
        headers: &signed,
        hashed_payload: &request.body_hash,
    });
    let string_to_sign = sign::v3::string_to_sign(&canonical);
    let expected = sign::v3::signature(key.secret, &string_to_sign);
    if sign::signatures_equal(&expected, auth.signature) {
        return Ok(());
    }
    Err(ApiError::invalid(
        "SignatureDoesNotMatch",
        format!(
            "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
        ),
    ))
}

fn check_timestamp(text: &str, now: OffsetDateTime) -> Result<(), ApiError> {
    let at = parse_timestamp(text).ok_or_else(|| {
        ApiError::invalid(
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        )
    })?;
    if (now - at).unsigned_abs() > WINDOW {
        return Err(ApiError::invalid(
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    Ok(())
}

/// Exactly `YYYY-MM-DDThh:mm:ssZ`: no fractions, no offset, no lower-case separators.
pub(crate) fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 20 {
        return None;
    }
    let shape_ok = bytes.iter().enumerate().all(|(i, &b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    if !shape_ok {
        return None;
    }
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(&text[..19], format)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn check_signature(params: &Params, method: &str, secret: &str) -> Result<(), ApiError> {
    let string_to_sign = sign::string_to_sign(method, &params.signed_pairs());
    let expected = sign::signature(secret, &string_to_sign);
    if sign::signatures_equal(&expected, params.get("Signature").unwrap_or_default()) {
        return Ok(());
    }
    Err(ApiError::invalid(
        "SignatureDoesNotMatch",
        format!(
            "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
        ),
    ))
}

/// Nonces seen within [`WINDOW`], oldest first so pruning is cheap.
#[derive(Default)]
pub(crate) struct NonceCache {
    seen: HashSet<String>,
    order: VecDeque<(Instant, String)>,
}

impl NonceCache {
    /// Records `nonce`; false when it was already used within the window.
    pub fn insert(&mut self, nonce: &str, now: Instant) -> bool {
        self.prune(now);
        if self.seen.contains(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_string());
        self.order.push_back((now, nonce.to_string()));
        true
    }

    fn prune(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            let expired = now.saturating_duration_since(*at) >= WINDOW;
            if !expired && self.order.len() < NONCE_CAP {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2024-05-14 09:03:45 UTC);

    fn credentials() -> Keyring {
        Keyring::new(Credentials {
            access_key_id: "kid".into(),
            access_key_secret: "secret".into(),
            security_token: None,
        })
    }

    /// A correctly signed request, with `edit` applied to the pairs before signing.
    fn signed(method: &str, edit: impl FnOnce(&mut Vec<(String, String)>)) -> Params {
        let mut pairs: Vec<(String, String)> = [
            ("AccessKeyId", "kid"),
            ("Action", "ListCustomPersons"),
            ("Format", "JSON"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "n-1"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2024-05-14T09:03:45Z"),
            ("Version", "2014-06-18"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        edit(&mut pairs);
        let signature = sign::sign(method, "secret", &pairs);
        pairs.push(("Signature".into(), signature));
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Params::from_pairs(&borrowed)
    }

    fn code(params: &Params, method: &str) -> &'static str {
        authenticate(params, method, &credentials(), NOW).map_or_else(|e| e.code, |()| "ok")
    }

    #[test]
    fn a_correctly_signed_request_passes() {
        assert_eq!(code(&signed("POST", |_| {}), "POST"), "ok");
        assert_eq!(code(&signed("GET", |_| {}), "GET"), "ok");
    }

    #[test]
    fn the_method_on_the_wire_is_part_of_the_signature() {
        let err = authenticate(&signed("GET", |_| {}), "POST", &credentials(), NOW).unwrap_err();
        assert_eq!(err.code, "SignatureDoesNotMatch");
        assert!(err.message.ends_with("server string to sign is:POST&%2F&AccessKeyId%3Dkid%26Action%3DListCustomPersons%26Format%3DJSON%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3Dn-1%26SignatureVersion%3D1.0%26Timestamp%3D2024-05-14T09%253A03%253A45Z%26Version%3D2014-06-18"), "{}", err.message);
    }

    #[test]
    fn a_missing_access_key_id_is_a_missing_parameter() {
        let params = signed("POST", |p| p.retain(|(k, _)| k != "AccessKeyId"));
        assert_eq!(code(&params, "POST"), "MissingParameter");
    }

    #[test]
    fn missing_or_unsupported_signature_params_are_an_incomplete_signature() {
        for name in [
            "SignatureMethod",
            "SignatureVersion",
            "SignatureNonce",
            "Timestamp",
        ] {
            let params = signed("POST", |p| p.retain(|(k, _)| k != name));
            assert_eq!(
                code(&params, "POST"),
                "IncompleteSignature",
                "without {name}"
            );
        }
        let unsigned =
            Params::from_pairs(&[("AccessKeyId", "kid"), ("SignatureMethod", "HMAC-SHA1")]);
        assert_eq!(code(&unsigned, "POST"), "IncompleteSignature");
        let sha256 = signed("POST", |p| p[3].1 = "HMAC-SHA256".into());
        assert_eq!(code(&sha256, "POST"), "IncompleteSignature");
        let v2 = signed("POST", |p| p[5].1 = "2.0".into());
        assert_eq!(code(&v2, "POST"), "IncompleteSignature");
    }

    #[test]
    fn an_unknown_key_is_not_found_with_status_404() {
        let params = signed("POST", |p| p[0].1 = "other".into());
        let err = authenticate(&params, "POST", &credentials(), NOW).unwrap_err();
        assert_eq!((err.status, err.code), (404, "InvalidAccessKeyId.NotFound"));
    }

    #[test]
    fn a_changed_parameter_breaks_the_signature() {
        let mut params = signed("POST", |_| {});
        params = Params::from_pairs(
            &params
                .signed_pairs()
                .iter()
                .map(|(k, v)| (k.as_str(), if k == "Format" { "XML" } else { v.as_str() }))
                .chain([("Signature", params.get("Signature").unwrap())])
                .collect::<Vec<_>>(),
        );
        assert_eq!(code(&params, "POST"), "SignatureDoesNotMatch");
    }

    #[test]
    fn timestamps_must_have_the_exact_shape() {
        for bad in [
            "2024-05-14T09:03:45.000Z",
            "2024-05-14 09:03:45Z",
            "2024-05-14T09:03:45+00:00",
            "2024-13-14T09:03:45Z",
            "2024-05-14t09:03:45z",
        ] {
            let params = signed("POST", |p| p[6].1 = bad.into());
            assert_eq!(code(&params, "POST"), "InvalidTimeStamp.Format", "{bad}");
        }
    }

    #[test]
    fn timestamps_more_than_fifteen_minutes_away_have_expired() {
        for (stamp, expected) in [
            ("2024-05-14T08:48:45Z", "ok"),
            ("2024-05-14T09:18:45Z", "ok"),
            ("2024-05-14T08:48:44Z", "InvalidTimeStamp.Expired"),
            ("2024-05-14T09:18:46Z", "InvalidTimeStamp.Expired"),
        ] {
            let params = signed("POST", |p| p[6].1 = stamp.into());
            assert_eq!(code(&params, "POST"), expected, "{stamp}");
        }
    }

    #[test]
    fn an_sts_key_needs_the_same_security_token() {
        let with_token = Keyring::new(Credentials {
            access_key_id: "kid".into(),
            access_key_secret: "secret".into(),
            security_token: Some("tok".into()),
        });
        let check = |params: &Params| {
            authenticate(params, "POST", &with_token, NOW).map_or_else(|e| e.code, |()| "ok")
        };
        assert_eq!(
            check(&signed("POST", |_| {})),
            "InvalidSecurityToken.Mismatch"
        );
        assert_eq!(
            check(&signed("POST", |p| p.push(("SecurityToken".into(), "bad".into())))),
            "InvalidSecurityToken.Mismatch"
        );
        assert_eq!(
            check(&signed("POST", |p| p.push(("SecurityToken".into(), "tok".into())))),
            "ok"
        );
    }

    /// A V3 request signed with `secret`, `edit` applied to the headers after signing.
    fn v3(
        key_id: &str,
        secret: &str,
        token: Option<&str>,
        edit: impl FnOnce(&mut Vec<(String, String)>),
    ) -> V3Request {
        let body_hash = sign::v3::hashed_payload(b"");
        let mut headers: Vec<(String, String)> = [
            ("host", "127.0.0.1:1"),
            ("x-acs-action", "ListCustomPersons"),
            ("x-acs-version", "2014-06-18"),
            ("x-acs-date", "2024-05-14T09:03:45Z"),
            ("x-acs-signature-nonce", "n-1"),
            ("x-acs-content-sha256", body_hash.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(token) = token {
            headers.push(("x-acs-security-token".into(), token.into()));
        }
        let query = vec![("PersonId".to_string(), "a b".to_string())];
        let authorization = sign::v3::authorization(
            key_id,
            secret,
            &sign::v3::Request {
                method: "POST",
                path: "/",
                query: &query,
                headers: &headers,
                hashed_payload: &body_hash,
            },
        );
        headers.push(("authorization".into(), authorization));
        headers.push(("user-agent".into(), "unsigned is fine".into()));
        edit(&mut headers);
        V3Request {
            method: "POST".into(),
            path: "/".into(),
            query,
            headers,
            body_hash,
        }
    }

    fn v3_code(request: &V3Request, keys: &Keyring, now: OffsetDateTime) -> &'static str {
        authenticate_v3(request, keys, now).map_or_else(|e| e.code, |()| "ok")
    }

    #[test]
    fn a_correct_v3_request_passes_and_any_changed_signed_header_breaks_it() {
        let keys = credentials();
        assert_eq!(
            v3_code(&v3("kid", "secret", None, |_| {}), &keys, NOW),
            "ok"
        );
        let changed = v3("kid", "secret", None, |h| {
            h[1].1 = "UnregisterCustomFace".into()
        });
        assert_eq!(v3_code(&changed, &keys, NOW), "SignatureDoesNotMatch");
        let wrong = v3("kid", "other", None, |_| {});
        let err = authenticate_v3(&wrong, &keys, NOW).unwrap_err();
        assert!(
            err.message.contains("string to sign is:ACS3-HMAC-SHA256\n"),
            "{}",
            err.message
        );
    }

    #[test]
    fn v3_requests_without_a_signed_acs_header_or_with_a_wrong_payload_hash_are_incomplete() {
        let keys = credentials();
        let unsigned = v3("kid", "secret", None, |h| {
            h.push(("x-acs-extra".into(), "1".into()))
        });
        assert_eq!(v3_code(&unsigned, &keys, NOW), "IncompleteSignature");
        let missing = v3("kid", "secret", None, |h| {
            h.retain(|(k, _)| k != "x-acs-date")
        });
        assert_eq!(v3_code(&missing, &keys, NOW), "IncompleteSignature");
        let mut hashed = v3("kid", "secret", None, |_| {});
        hashed.body_hash = sign::v3::hashed_payload(b"x");
        assert_eq!(v3_code(&hashed, &keys, NOW), "IncompleteSignature");
        let garbled = v3("kid", "secret", None, |h| {
            h.iter_mut().find(|(k, _)| k == "authorization").unwrap().1 =
                "ACS3-HMAC-SHA256 x".into()
        });
        assert_eq!(v3_code(&garbled, &keys, NOW), "IncompleteSignature");
    }

    #[test]
    fn an_issued_key_works_with_its_token_until_it_expires_then_is_refused_as_expired() {
        let mut keys = credentials();
        keys.add(
            IssuedKey {
                access_key_id: "STS.k".into(),
                access_key_secret: "s2".into(),
                security_token: "t2".into(),
                expires: NOW + Duration::from_secs(3),
            },
            NOW,
        );
        let request = v3("STS.k", "s2", Some("t2"), |_| {});
        assert_eq!(v3_code(&request, &keys, NOW), "ok");
        let later = NOW + Duration::from_secs(3);
        assert_eq!(
            v3_code(&request, &keys, later),
            "InvalidSecurityToken.Expired"
        );
        let other_token = v3("STS.k", "s2", Some("t3"), |_| {});
        assert_eq!(
            v3_code(&other_token, &keys, NOW),
            "InvalidSecurityToken.Mismatch"
        );
        let v1 = signed("POST", |p| {
            p[0].1 = "STS.k".into();
            p.push(("SecurityToken".into(), "t2".into()));
        });
        // Signed with the fixed key's secret: the issued key's secret does not match.
        assert_eq!(
            authenticate(&v1, "POST", &keys, NOW).unwrap_err().code,
            "SignatureDoesNotMatch"
        );
        assert_eq!(
            authenticate(&v1, "POST", &keys, later).unwrap_err().code,
            "InvalidSecurityToken.Expired"
        );
    }

    #[test]
    fn a_nonce_is_refused_while_remembered_and_forgotten_after_the_window() {
        let mut nonces = NonceCache::default();
        let start = Instant::now();
        assert!(nonces.insert("a", start));
        assert!(!nonces.insert("a", start + Duration::from_secs(60)));
        assert!(nonces.insert("b", start + Duration::from_secs(61)));
        assert!(nonces.insert("a", start + WINDOW));
        assert_eq!(nonces.len(), 2, "the first 'a' was pruned, not kept twice");
        assert!(nonces.insert("c", start + WINDOW * 3));
        assert_eq!(
            nonces.len(),
            1,
            "old nonces are pruned so memory stays bounded"
        );
    }
}
