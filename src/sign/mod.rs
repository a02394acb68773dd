//! Request signatures, shared by the client and the sandbox: RPC v1 (HMAC-SHA1, [`v1`]) and
//! ACS3-HMAC-SHA256 ([`v3`]). Both encode and sort the query the same way, which lives here.
//! OSS objects have their own ([`oss`]: V4 links and headers, V1 links recognised).
//!
//! The rules are in api-notes §3, §8 and §11; the known-answer vectors in `tests/data` pin them
//! down.

pub mod oss;
pub mod v1;
pub mod v3;

use std::fmt;
use std::str::FromStr;

pub use v1::{sign, signature, string_to_sign};

/// Which signature the client puts on its requests.
///
/// The default is [`SignatureVersion::V3`]: it is what the official SDKs send by default today,
/// so it is the path the gateways are exercised on most; it keeps the STS token out of the URL
/// (a header instead of a query parameter, so it never lands in a proxy's access log); and it
/// hashes with SHA-256 over the payload too. `V1` stays available (`--signature v1`) for
/// gateways or proxies that only know the older scheme; the services accept both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SignatureVersion {
    /// RPC signature 1.0: HMAC-SHA1 over the sorted query, sent as the `Signature` parameter.
    V1,
    /// ACS3-HMAC-SHA256: HMAC-SHA256 over a canonical request, sent in `Authorization`.
    #[default]
    V3,
}

impl SignatureVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureVersion::V1 => "v1",
            SignatureVersion::V3 => "v3",
        }
    }
}

impl fmt::Display for SignatureVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signature version that is neither v1 nor v3.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a signature version: use v1 or v3")]
pub struct UnknownSignature(pub String);

impl FromStr for SignatureVersion {
    type Err = UnknownSignature;

    fn from_str(text: &str) -> Result<Self, UnknownSignature> {
        match text.to_ascii_lowercase().as_str() {
            "v1" | "1" | "1.0" | "hmac-sha1" => Ok(SignatureVersion::V1),
            "v3" | "3" | "acs3-hmac-sha256" => Ok(SignatureVersion::V3),
            _ => Err(UnknownSignature(text.to_string())),
        }
    }
}

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
/// percent-encoded, joined with `&` (an empty value gives `name=`). `Signature` itself must not
/// be among `params`.
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

    #[test]
    fn signature_versions_parse_from_their_flag_values_and_default_to_v3() {
        assert_eq!("v1".parse(), Ok(SignatureVersion::V1));
        assert_eq!("V3".parse(), Ok(SignatureVersion::V3));
        assert!("v2".parse::<SignatureVersion>().is_err());
        assert_eq!(SignatureVersion::default(), SignatureVersion::V3);
        assert_eq!(SignatureVersion::V1.to_string(), "v1");
    }
}
