//! ACS3-HMAC-SHA256, the signature the official SDKs send by default (api-notes §8), shared by
//! the client and the sandbox. The known-answer vectors in `tests/data/signature-v3.json`
//! (the published example and vectors of the official signing code) pin it down.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::canonical_query;

/// The algorithm name, first in `Authorization` and in the string-to-sign.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Everything the signature covers. `headers` are the signed ones only; names in any case.
pub struct Request<'a> {
    pub method: &'a str,
    /// `/` for RPC.
    pub path: &'a str,
    /// Decoded query parameters (they are encoded here).
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    /// Lower-case hex SHA-256 of the body, as sent in `x-acs-content-sha256`.
    pub hashed_payload: &'a str,
}

/// Lower-case hex SHA-256 of `body` (`e3b0c442…b855` for an empty one).
pub fn hashed_payload(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The signed header names: lower-case, sorted, joined with `;`.
pub fn signed_headers(headers: &[(String, String)]) -> String {
    names(&sorted_headers(headers))
}

/// Names lower-cased, values trimmed, sorted (by name, then value).
fn sorted_headers(headers: &[(String, String)]) -> Vec<(String, &str)> {
    let mut sorted: Vec<(String, &str)> = headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .collect();
    sorted.sort_unstable();
    sorted
}

fn names(sorted: &[(String, &str)]) -> String {
    let names: Vec<&str> = sorted.iter().map(|(name, _)| name.as_str()).collect();
    names.join(";")
}

/// `METHOD \n URI \n query \n headers (each `name:value\n`) \n signed names \n payload hash`.
pub fn canonical_request(request: &Request<'_>) -> String {
    canonical_and_names(request).0
}

/// The canonical request and the signed names, from one sort of the headers.
fn canonical_and_names(request: &Request<'_>) -> (String, String) {
    let headers = sorted_headers(request.headers);
    let names = names(&headers);
    let mut block = String::new();
    for (name, value) in &headers {
        block.push_str(name);
        block.push(':');
        block.push_str(value);
        block.push('\n');
    }
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        request.path,
        canonical_query(request.query),
        block,
        names,
        request.hashed_payload
    );
    (canonical, names)
}

/// `ACS3-HMAC-SHA256 \n hex(SHA256(canonical request))`.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// `hex(HMAC-SHA256(secret, string_to_sign))` — the key is the bare secret, no `&`.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value for `request`.
pub fn authorization(access_key_id: &str, secret: &str, request: &Request<'_>) -> String {
    let (canonical, names) = canonical_and_names(request);
    let signature = signature(secret, &string_to_sign(&canonical));
    format!("{ALGORITHM} Credential={access_key_id},SignedHeaders={names},Signature={signature}")
}

/// The three parts of an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Parses `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`; `None` when malformed.
pub fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.trim_start();
    let (mut id, mut names, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        match key {
            "Credential" => id = Some(value),
            "SignedHeaders" => names = Some(value),
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    let names = names?;
    Some(Authorization {
        access_key_id: id.filter(|s| !s.is_empty())?,
        signed_headers: names.split(';').filter(|s| !s.is_empty()).collect(),
        signature: signature.filter(|s| !s.is_empty())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../../tests/data/signature-v3.json");

    fn pairs(v: &Value) -> Vec<(String, String)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn every_known_answer_vector_gives_its_authorization_header() {
        let doc: Value = serde_json::from_str(VECTORS).unwrap();
        let all = doc["vectors"].as_array().unwrap();
        assert!(all.len() >= 4, "the vector file lost entries");
        for v in all {
            let name = v["name"].as_str().unwrap();
            let headers = pairs(&v["headers"]);
            let body = v["body"].as_str().unwrap();
            let hashed = hashed_payload(body.as_bytes());
            let sent_hash = headers
                .iter()
                .find(|(k, _)| k == "x-acs-content-sha256")
                .map(|(_, v)| v.as_str());
            assert_eq!(sent_hash, Some(hashed.as_str()), "payload hash of {name}");
            let request = Request {
                method: v["method"].as_str().unwrap(),
                path: v["path"].as_str().unwrap(),
                query: &pairs(&v["query"]),
                headers: &headers,
                hashed_payload: &hashed,
            };
            let got = authorization(
                v["access_key_id"].as_str().unwrap(),
                v["access_key_secret"].as_str().unwrap(),
                &request,
            );
            assert_eq!(got, v["authorization"].as_str().unwrap(), "{name}");
        }
    }

    #[test]
    fn the_published_run_instances_example_matches() {
        let query = [
            (
                "ImageId".to_string(),
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd".to_string(),
            ),
            ("RegionId".to_string(), "cn-shanghai".to_string()),
        ];
        let hashed = hashed_payload(b"");
        let headers: Vec<(String, String)> = [
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-content-sha256", hashed.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let request = Request {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            hashed_payload: &hashed,
        };
        let sts = string_to_sign(&canonical_request(&request));
        assert_eq!(
            signature("YourAccessKeySecret", &sts),
            "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
        assert_eq!(
            hashed,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn canonical_headers_are_lower_case_trimmed_sorted_and_end_with_a_newline() {
        let headers = vec![
            ("X-Acs-Version".to_string(), " 1 ".to_string()),
            ("Host".to_string(), "h".to_string()),
        ];
        let request = Request {
            method: "GET",
            path: "/",
            query: &[],
            headers: &headers,
            hashed_payload: "p",
        };
        assert_eq!(
            canonical_request(&request),
            "GET\n/\n\nhost:h\nx-acs-version:1\n\nhost;x-acs-version\np"
        );
    }

    #[test]
    fn authorization_headers_parse_back_into_their_parts() {
        let parsed = parse_authorization(
            "ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host;x-acs-date,Signature=ab",
        )
        .unwrap();
        assert_eq!(parsed.access_key_id, "id");
        assert_eq!(parsed.signed_headers, ["host", "x-acs-date"]);
        assert_eq!(parsed.signature, "ab");
        assert!(parse_authorization("ACS3-HMAC-SHA256 Credential=id").is_none());
        assert!(
            parse_authorization("HMAC-SHA1 Credential=id,SignedHeaders=host,Signature=a").is_none()
        );
    }
}
