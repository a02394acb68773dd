//! What the sandbox puts on the wire: API errors, success bodies (JSON, or XML without
//! `Format=JSON`), and the broken bodies that faults substitute.

use bytes::Bytes;
use serde_json::{Map, Value};

/// A refusal as the gateway or the service phrases it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Sent as `x-acs-retry-after` (throttling only).
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// 400 with the given code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(400, code, message)
    }

    /// 400 `MissingParameter` naming the parameter.
    pub fn missing(name: &str) -> Self {
        ApiError::invalid(
            "MissingParameter",
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    pub fn internal() -> Self {
        ApiError::new(
            500,
            "InternalError",
            "The request processing has failed due to some unknown error, exception or failure.",
        )
    }

    pub fn throttled(retry_after_ms: Option<u64>) -> Self {
        ApiError {
            retry_after_ms,
            ..ApiError::invalid(
                "Throttling.User",
                "Request was denied due to user flow control.",
            )
        }
    }
}

/// How the caller asked to be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    Json,
    Xml,
}

impl BodyFormat {
    /// `Format=JSON` (any case) gives JSON; anything else, absence included, gives XML.
    pub fn of(format: Option<&str>) -> Self {
        match format {
            Some(f) if f.eq_ignore_ascii_case("json") => BodyFormat::Json,
            _ => BodyFormat::Xml,
        }
    }
}

/// A complete answer, independent of hyper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
    pub request_id: Option<String>,
    pub retry_after_ms: Option<u64>,
}

const JSON: &str = "application/json;charset=utf-8";
const XML: &str = "text/xml;charset=utf-8";
const HTML: &str = "text/html";
const TEXT: &str = "text/plain";

const GATEWAY_PAGE: &str = "<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n\
<body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>Tengine</center>\n</body>\n</html>\n";

impl Reply {
    fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Reply {
            status,
            content_type,
            body: body.into(),
            request_id: None,
            retry_after_ms: None,
        }
    }

    /// 200 with `RequestId` added to the action's fields.
    pub fn success(
        format: BodyFormat,
        action: &str,
        request_id: String,
        fields: Map<String, Value>,
    ) -> Self {
        let mut object = Map::with_capacity(fields.len() + 1);
        object.insert("RequestId".into(), Value::String(request_id.clone()));
        object.extend(fields);
        let mut reply = Reply::render(
            200,
            format,
            &format!("{action}Response"),
            &Value::Object(object),
        );
        reply.request_id = Some(request_id);
        reply
    }

    /// The error body of api-notes §4 with the error's status.
    pub fn error(format: BodyFormat, host_id: &str, request_id: String, error: &ApiError) -> Self {
        let body = serde_json::json!({
            "RequestId": request_id,
            "HostId": host_id,
            "Code": error.code,
            "Message": error.message,
            "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}", error.code),
        });
        let mut reply = Reply::render(error.status, format, "Error", &body);
        reply.request_id = Some(request_id);
        reply.retry_after_ms = error.retry_after_ms;
        reply
    }

    /// Plain text (the ECS metadata service answers so).
    pub fn text(status: u16, body: String) -> Self {
        Reply::new(status, TEXT, body)
    }

    /// Plain JSON, for the sandbox's own paths.
    pub fn json(status: u16, value: &Value) -> Self {
        Reply::new(status, JSON, serde_json::to_vec(value).unwrap_or_default())
    }

    /// A load balancer's 502 page: what a client sees when the gateway itself fails.
    pub fn gateway_page() -> Self {
        Reply::new(502, HTML, GATEWAY_PAGE)
    }

    /// A 200 whose body cannot be parsed, the `turn`-th kind in a cycle of three.
    pub fn malformed(turn: u64, request_id: String) -> Self {
        match turn % 3 {
            0 => Reply::new(
                200,
                JSON,
                format!("{{\"RequestId\":\"{request_id}\",\"FaceId\":"),
            ),
            1 => Reply::new(200, JSON, Bytes::new()),
            _ => Reply::new(
                200,
                HTML,
                GATEWAY_PAGE.replace("502 Bad Gateway", "Service Temporarily Unavailable"),
            ),
        }
    }

    fn render(status: u16, format: BodyFormat, root: &str, value: &Value) -> Self {
        match format {
            BodyFormat::Json => Reply::json(status, value),
            BodyFormat::Xml => {
                let mut out = String::from("<?xml version='1.0' encoding='UTF-8'?>");
                write_xml(&mut out, root, value);
                Reply::new(status, XML, out)
            }
        }
    }
}

/// Alibaba's XML shape: object fields become elements, an array repeats its field's element.
fn write_xml(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| write_xml(out, name, item)),
        Value::Null => {}
        _ => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            match value {
                Value::Object(fields) => fields.iter().for_each(|(k, v)| write_xml(out, k, v)),
                Value::String(s) => escape_into(out, s),
                other => out.push_str(&other.to_string()),
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
}

fn escape_into(out: &mut String, text: &str) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_five_documented_fields() {
        let reply = Reply::error(
            BodyFormat::Json,
            "mts.aliyuncs.com",
            "RID".into(),
            &ApiError::internal(),
        );
        assert_eq!(reply.status, 500);
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        for field in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
            assert!(body.get(field).is_some(), "{field} missing");
        }
        assert_eq!(body["Code"], "InternalError");
    }

    #[test]
    fn without_format_json_the_answer_is_xml_with_repeated_array_elements() {
        let fields = serde_json::json!({"Faces": {"Face": [{"FaceId": "a&b"}, {"FaceId": "c"}]}});
        let Value::Object(fields) = fields else {
            unreachable!()
        };
        let reply = Reply::success(
            BodyFormat::of(None),
            "ListCustomPersons",
            "RID".into(),
            fields,
        );
        let text = String::from_utf8(reply.body.to_vec()).unwrap();
        assert!(
            text.starts_with("<?xml version='1.0' encoding='UTF-8'?><ListCustomPersonsResponse>"),
            "{text}"
        );
        assert!(
            text.contains("<RequestId>RID</RequestId>")
                && text.ends_with("</ListCustomPersonsResponse>")
        );
        assert!(text.contains(
            "<Faces><Face><FaceId>a&amp;b</FaceId></Face><Face><FaceId>c</FaceId></Face></Faces>"
        ));
    }

    #[test]
    fn malformed_bodies_cycle_and_never_parse_as_json() {
        let kinds: Vec<Reply> = (0..3)
            .map(|turn| Reply::malformed(turn, "RID".into()))
            .collect();
        for reply in &kinds {
            assert_eq!(reply.status, 200);
            assert!(serde_json::from_slice::<Value>(&reply.body).is_err());
        }
        assert!(kinds[1].body.is_empty());
        assert_eq!(kinds[2].content_type, HTML);
    }
}
