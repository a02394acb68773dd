//! What the sandbox's OSS puts on the wire: an object's answer with its headers, and refusals as
//! OSS phrases them (`<Error><Code>…</Code><Message>…</Message><RequestId>…</RequestId>
//! <HostId>…</HostId>…</Error>`, `application/xml`, the request id also in `x-oss-request-id`).

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;

/// A complete answer, independent of hyper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OssReply {
    pub status: u16,
    /// Sent as they are, `Content-Type` and `Content-Length` among them when set.
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// Send the body over this long instead of at once (a `slow_body` fault).
    pub trickle: Option<Duration>,
}

impl OssReply {
    #[cfg(test)]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A refusal: status, OSS's code and message, and the further elements OSS adds for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OssError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// `Key`, `BucketName`, `StringToSign` …, in order.
    pub details: Vec<(&'static str, String)>,
}

impl OssError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        OssError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.details.push((name, value.into()));
        self
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        OssError::new(403, "AccessDenied", message)
    }

    /// A presigned link past its expiry: OSS's words.
    pub fn expired() -> Self {
        OssError::access_denied("Request has expired.")
    }

    pub fn no_such_key(key: &str) -> Self {
        OssError::new(404, "NoSuchKey", "The specified key does not exist.").with("Key", key)
    }

    pub fn no_such_bucket(bucket: &str) -> Self {
        OssError::new(404, "NoSuchBucket", "The specified bucket does not exist.")
            .with("BucketName", bucket)
    }

    pub fn invalid_digest() -> Self {
        OssError::new(
            400,
            "InvalidDigest",
            "The Content-MD5 you specified was invalid.",
        )
    }

    pub fn already_exists() -> Self {
        OssError::new(
            409,
            "FileAlreadyExists",
            "The object you specified already exists and can not be overwritten.",
        )
    }

    pub fn internal() -> Self {
        OssError::new(
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
        )
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        OssError::new(400, "InvalidArgument", message)
    }

    pub fn method_not_allowed() -> Self {
        OssError::new(
            405,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource (the sandbox serves PUT, \
             GET and HEAD of objects).",
        )
    }

    /// The answer: the XML as the body, or for HEAD (no body on the wire) base64-encoded in
    /// `x-oss-err`, as OSS sends it; the request id in the body and in `x-oss-request-id`.
    pub fn into_reply(self, request_id: &str, host_id: &str, head: bool) -> OssReply {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n");
        let fields = [
            ("Code", self.code.to_string()),
            ("Message", self.message),
            ("RequestId", request_id.to_string()),
            ("HostId", host_id.to_string()),
        ];
        for (name, value) in fields.iter().map(|(n, v)| (*n, v.as_str())).chain(
            self.details
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        ) {
            xml.push_str(&format!("  <{name}>{}</{name}>\n", escape(value)));
        }
        xml.push_str("</Error>\n");
        let mut headers = vec![
            ("Content-Type", "application/xml".to_string()),
            ("x-oss-request-id", request_id.to_string()),
            ("Server", "AliyunOSS".to_string()),
        ];
        let body = if head {
            headers.push((
                "x-oss-err",
                base64::engine::general_purpose::STANDARD.encode(&xml),
            ));
            Bytes::new()
        } else {
            Bytes::from(xml)
        };
        OssReply {
            status: self.status,
            headers,
            body,
            trickle: None,
        }
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A fresh OSS-style request id: 24 upper-case hex digits.
pub(crate) fn request_id() -> String {
    let id = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_ascii_uppercase();
    id[..24].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_is_oss_xml_with_code_message_request_id_and_host_id() {
        let reply = OssError::no_such_key("a<b.jpg").into_reply("RID", "127.0.0.1:9", false);
        let text = String::from_utf8(reply.body.to_vec()).unwrap();
        assert_eq!(reply.status, 404);
        for part in [
            "<Error>",
            "<Code>NoSuchKey</Code>",
            "<Message>The specified key does not exist.</Message>",
            "<RequestId>RID</RequestId>",
            "<HostId>127.0.0.1:9</HostId>",
            "<Key>a&lt;b.jpg</Key>",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert_eq!(reply.header("x-oss-request-id"), Some("RID"));
        assert_eq!(reply.header("content-type"), Some("application/xml"));
        let head = OssError::expired().into_reply("RID", "h", true);
        assert!(head.body.is_empty() && head.status == 403);
        let carried = base64::engine::general_purpose::STANDARD
            .decode(head.header("x-oss-err").unwrap())
            .unwrap();
        assert!(
            String::from_utf8(carried)
                .unwrap()
                .contains("<Code>AccessDenied</Code>")
        );
    }

    #[test]
    fn request_ids_are_24_upper_case_hex_digits() {
        let id = request_id();
        assert_eq!(id.len(), 24);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        );
    }
}
