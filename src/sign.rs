//! RPC request signature version 1.0 (HMAC-SHA1), shared by the client and the sandbox.
//!
//! The rules are in api-notes §3; the known-answer vectors in `shared/vectors` pin them down.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Percent-encodes UTF-8 bytes by RFC 3986: unreserved characters stay, everything else is `%XY`.
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 2);
    percent_encode_into(&mut out, input);
    out
}

fn percent_encode_into(out: &mut String, input: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0x0f) as usize] as char);
        }
    }
}

/// Builds the canonical query: parameters sorted by name (byte order), each name and value
/// percent-encoded, joined with `&`. `Signature` itself must not be among `params`.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::with_capacity(params.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode_into(&mut out, name);
        out.push('=');
        percent_encode_into(&mut out, value);
    }
    out
}

/// `METHOD&%2F&percent_encode(canonical query)`.
pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    let canonical = canonical_query(params);
    format!("{method}&%2F&{}", percent_encode(&canonical))
}

/// `base64(HMAC-SHA1(secret + "&", string_to_sign))`.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    let key = format!("{secret}&");
    let mut mac =
        Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Signs `params` for `method` and returns the signature value (not yet percent-encoded).
pub fn sign(method: &str, secret: &str, params: &[(String, String)]) -> String {
    signature(secret, &string_to_sign(method, params))
}

/// Constant-time comparison, so the sandbox does not leak how much of a signature matched.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../tests/data/signature-v1.json");

    fn vectors() -> Vec<serde_json::Value> {
        let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        doc["vectors"].as_array().unwrap().clone()
    }

    fn params_of(v: &serde_json::Value) -> Vec<(String, String)> {
        v["params"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn every_known_answer_vector_matches_string_to_sign_and_signature() {
        let all = vectors();
        assert!(all.len() >= 6, "the vector file lost entries");
        for v in all {
            let name = v["name"].as_str().unwrap();
            let method = v["method"].as_str().unwrap();
            let params = params_of(&v);
            let sts = string_to_sign(method, &params);
            if let Some(expected) = v.get("expected_string_to_sign") {
                assert_eq!(sts, expected.as_str().unwrap(), "string-to-sign of {name}");
            }
            let sig = signature(v["secret"].as_str().unwrap(), &sts);
            assert_eq!(
                sig,
                v["expected_signature"].as_str().unwrap(),
                "signature of {name}"
            );
        }
    }

    #[test]
    fn mts_reference_example_from_api_notes_matches() {
        let params: Vec<(String, String)> = [
            ("AccessKeyId", "testId"),
            ("Action", "SearchTemplate"),
            ("Format", "XML"),
            ("PageSize", "2"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "4902260a-516a-4b6a-a455-45b653cf6150"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2015-05-14T09:03:45Z"),
            ("Version", "2014-06-18"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            sign("GET", "testKeySecret", &params),
            "kmDv4mWo806GWPjQMy2z4VhBBDQ="
        );
    }

    #[test]
    fn percent_encoding_keeps_unreserved_and_encodes_the_rest_uppercase() {
        assert_eq!(percent_encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(percent_encode(" *+/=&"), "%20%2A%2B%2F%3D%26");
        assert_eq!(percent_encode("张"), "%E5%BC%A0");
    }

    #[test]
    fn canonical_query_sorts_by_byte_order_case_sensitively() {
        let params = vec![
            ("Action".to_string(), "x".to_string()),
            ("AccessKeyId".to_string(), "y".to_string()),
            ("action".to_string(), "z".to_string()),
        ];
        assert_eq!(canonical_query(&params), "AccessKeyId=y&Action=x&action=z");
    }

    #[test]
    fn signatures_equal_rejects_any_changed_byte() {
        assert!(signatures_equal("abc=", "abc="));
        assert!(!signatures_equal("abc=", "abd="));
        assert!(!signatures_equal("abc=", "abc"));
    }
}
