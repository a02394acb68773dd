//! Gateway authentication, in the gateway's order: parameters present → key known → token →
//! timestamp → signature (the nonce is checked after, under the state lock, by [`NonceCache`]).

use std::collections::{HashSet, VecDeque};
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

/// The one credential the sandbox accepts.
pub(crate) struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: Option<String>,
}

fn incomplete(detail: &str) -> ApiError {
    ApiError::invalid(
        "IncompleteSignature",
        format!("The request signature does not conform to Aliyun standards: {detail}."),
    )
}

/// Everything but the nonce. `now` is the caller's clock, so tests can move it.
pub(crate) fn authenticate(
    params: &Params,
    method: &str,
    credentials: &Credentials,
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
    if key_id != credentials.access_key_id {
        return Err(ApiError::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ));
    }
    if let Some(expected) = &credentials.security_token
        && params.get("SecurityToken") != Some(expected.as_str())
    {
        return Err(ApiError::invalid(
            "InvalidSecurityToken.Mismatch",
            "Specified SecurityToken mismatch with the AccessKey.",
        ));
    }
    check_timestamp(params.get("Timestamp").unwrap_or_default(), now)?;
    check_signature(params, method, &credentials.access_key_secret)
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

    fn credentials() -> Credentials {
        Credentials {
            access_key_id: "kid".into(),
            access_key_secret: "secret".into(),
            security_token: None,
        }
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
        let mut with_token = credentials();
        with_token.security_token = Some("tok".into());
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
