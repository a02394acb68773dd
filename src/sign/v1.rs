//! RPC request signature version 1.0 (HMAC-SHA1), shared by the client and the sandbox.
//!
//! The rules are in api-notes §3; the known-answer vectors in `tests/data/signature-v1.json`
//! pin them down.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use super::{canonical_query, percent_encode};

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

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../../tests/data/signature-v1.json");

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
}
