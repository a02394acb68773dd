//! Turning an HTTP answer into JSON or an `ApiError`, and reading the XML-heritage JSON shapes
//! (`Categories.Category[]` and friends) without ever panicking on what the server sends.

use std::time::Duration;

use serde_json::{Map, Value};

use super::error::ApiError;

/// How much of a non-JSON body is quoted in an error message.
pub(crate) const SNIPPET_CHARS: usize = 160;

/// The parts of an answer that matter, already out of the transport's types.
pub(crate) struct Answer<'a> {
    pub status: u16,
    pub body: &'a [u8],
    /// `x-acs-retry-after`, milliseconds.
    pub retry_after: Option<&'a [u8]>,
    pub request_id: Option<&'a str>,
}

/// 2xx with a JSON object → the object; anything else → an error classified by its code.
pub(crate) fn interpret(answer: Answer<'_>) -> Result<Value, ApiError> {
    let parsed: Option<Value> = serde_json::from_slice(answer.body).ok();
    let status = answer.status;
    if (200..300).contains(&status) {
        return match parsed {
            Some(v @ Value::Object(_)) => Ok(v),
            _ => Err(ApiError::malformed(
                Some(status),
                format!(
                    "HTTP {status} answer is not a JSON object: {}",
                    snippet(answer.body)
                ),
            )),
        };
    }
    Err(failure(answer, parsed.as_ref()))
}

/// The error a non-2xx answer stands for, classified by its code (`parsed`: its body as JSON,
/// if it is JSON).
pub(crate) fn failure(answer: Answer<'_>, parsed: Option<&Value>) -> ApiError {
    let status = answer.status;
    let header_request_id = answer.request_id.map(str::to_string);
    let retry_after = answer.retry_after.and_then(parse_retry_after);
    let error = match parsed.and_then(Value::as_object) {
        Some(obj) if text(obj, "Code").is_some() => {
            let code = text(obj, "Code").unwrap_or_default();
            let message = text(obj, "Message").unwrap_or_default();
            ApiError::new(Some(status), code, message)
                .with_request_id(text(obj, "RequestId").or(header_request_id))
        }
        _ => ApiError::new(
            Some(status),
            format!("HTTP{status}"),
            format!(
                "HTTP {status} without an error code: {}",
                snippet(answer.body)
            ),
        )
        .with_request_id(header_request_id),
    };
    error.with_retry_after(retry_after)
}

fn parse_retry_after(raw: &[u8]) -> Option<Duration> {
    let ms: u64 = std::str::from_utf8(raw).ok()?.trim().parse().ok()?;
    Some(Duration::from_millis(ms))
}

/// The start of a body, printable, for an error message (HTML pages can be long).
pub(crate) fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".to_string();
    }
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    format!("{:?}", out.trim())
}

/// A string field; numbers are accepted too (ids have been seen as both). Empty counts as absent.
pub(crate) fn text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A number field, given as a number or a numeric string.
pub(crate) fn number(obj: &Map<String, Value>, key: &str) -> Option<u64> {
    match obj.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `obj[wrapper][item]` as a list of objects. The wrapper or the array may be missing, null or an
/// empty object (all mean empty); a wrapper may be the array itself; a lone object is one item.
/// Non-object items are skipped.
pub(crate) fn list<'a>(
    obj: &'a Map<String, Value>,
    wrapper: &str,
    item: &str,
) -> Vec<&'a Map<String, Value>> {
    let inner = match obj.get(wrapper) {
        Some(Value::Object(w)) => match w.get(item) {
            Some(v) => v,
            None => return Vec::new(),
        },
        Some(v) => v,
        None => return Vec::new(),
    };
    match inner {
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        Value::Object(one) if !one.is_empty() => vec![one],
        _ => Vec::new(),
    }
}

/// The top-level object of a successful answer (`interpret` guarantees it is one).
pub(crate) fn object(v: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    v.as_object().unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorClass;

    fn answer(status: u16, body: &str) -> Answer<'_> {
        Answer {
            status,
            body: body.as_bytes(),
            retry_after: None,
            request_id: None,
        }
    }

    #[test]
    fn json_object_with_2xx_is_returned() {
        let v = interpret(answer(200, r#"{"FaceId":"f1","RequestId":"r"}"#)).unwrap();
        assert_eq!(v["FaceId"], "f1");
    }

    #[test]
    fn json_error_body_gives_code_message_and_request_id() {
        let e = interpret(answer(400, r#"{"RequestId":"R","HostId":"h","Code":"InvalidParameter","Message":"bad","Recommend":"x"}"#))
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message(), e.request_id(), e.status()),
            ("InvalidParameter", "bad", Some("R"), Some(400))
        );
        assert_eq!(e.class(), ErrorClass::RowRejected);
    }

    #[test]
    fn html_page_with_5xx_leaves_the_outcome_unknown() {
        let e = interpret(answer(502, "<html><body>Bad Gateway</body></html>")).unwrap_err();
        assert_eq!(
            (e.code(), e.class()),
            ("HTTP502", ErrorClass::OutcomeUnknown)
        );
        assert!(e.message().contains("Bad Gateway"));
    }

    #[test]
    fn html_page_with_4xx_rejects_the_row_with_an_http_code() {
        let e = interpret(answer(404, "<html>Not Found</html>")).unwrap_err();
        assert_eq!((e.code(), e.class()), ("HTTP404", ErrorClass::RowRejected));
    }

    #[test]
    fn empty_body_with_5xx_leaves_the_outcome_unknown() {
        let e = interpret(answer(500, "")).unwrap_err();
        assert_eq!(
            (e.code(), e.class()),
            ("HTTP500", ErrorClass::OutcomeUnknown)
        );
        assert!(e.message().contains("empty body"));
    }

    #[test]
    fn json_error_body_without_a_code_is_treated_like_a_bare_status() {
        let e = interpret(answer(503, r#"{"Message":"busy"}"#)).unwrap_err();
        assert_eq!(
            (e.code(), e.class()),
            ("HTTP503", ErrorClass::OutcomeUnknown)
        );
    }

    #[test]
    fn non_json_2xx_is_malformed_with_unknown_outcome() {
        for body in [
            "",
            "<xml/>",
            "[1,2]",
            "\"text\"",
            "{\"FaceId\":",
            "\u{0}\u{1}garbage",
        ] {
            let e = interpret(answer(200, body)).unwrap_err();
            assert_eq!(
                (e.code(), e.class()),
                ("MalformedResponse", ErrorClass::OutcomeUnknown),
                "{body:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_body_never_panics() {
        let body = [0xff, 0xfe, b'<', 0x80];
        let e = interpret(Answer {
            status: 500,
            body: &body,
            retry_after: None,
            request_id: None,
        })
        .unwrap_err();
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown);
    }

    #[test]
    fn retry_after_header_is_read_as_milliseconds() {
        let body = r#"{"Code":"Throttling.User","Message":"slow down"}"#;
        let e = interpret(Answer {
            status: 429,
            body: body.as_bytes(),
            retry_after: Some(b"250"),
            request_id: Some("H"),
        })
        .unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_millis(250)));
        assert_eq!(
            (e.class(), e.request_id()),
            (ErrorClass::Throttled, Some("H"))
        );
    }

    #[test]
    fn unparsable_retry_after_is_ignored() {
        let body = r#"{"Code":"Throttling"}"#;
        let e = interpret(Answer {
            status: 400,
            body: body.as_bytes(),
            retry_after: Some(b"soon"),
            request_id: None,
        })
        .unwrap_err();
        assert_eq!(e.retry_after(), None);
    }

    #[test]
    fn long_bodies_are_cut_in_messages() {
        let body = "x".repeat(10_000);
        let e = interpret(answer(500, &body)).unwrap_err();
        assert!(e.message().len() < 400);
    }

    fn obj(json: &str) -> Map<String, Value> {
        serde_json::from_str::<Value>(json)
            .unwrap()
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn list_reads_wrapped_arrays() {
        let o = obj(r#"{"Faces":{"Face":[{"FaceId":"a"},{"FaceId":"b"}]}}"#);
        assert_eq!(list(&o, "Faces", "Face").len(), 2);
    }

    #[test]
    fn list_treats_missing_null_and_empty_wrappers_as_empty() {
        for json in [
            r#"{}"#,
            r#"{"Faces":null}"#,
            r#"{"Faces":{}}"#,
            r#"{"Faces":{"Face":null}}"#,
            r#"{"Faces":{"Face":[]}}"#,
            r#"{"Faces":""}"#,
            r#"{"Faces":{"Face":{}}}"#,
        ] {
            assert!(list(&obj(json), "Faces", "Face").is_empty(), "{json}");
        }
    }

    #[test]
    fn list_accepts_an_unwrapped_array_and_a_lone_object() {
        assert_eq!(
            list(&obj(r#"{"Faces":[{"FaceId":"a"}]}"#), "Faces", "Face").len(),
            1
        );
        assert_eq!(
            list(
                &obj(r#"{"Faces":{"Face":{"FaceId":"a"}}}"#),
                "Faces",
                "Face"
            )
            .len(),
            1
        );
        assert_eq!(
            list(
                &obj(r#"{"Faces":{"Face":[1,"x",{"FaceId":"a"}]}}"#),
                "Faces",
                "Face"
            )
            .len(),
            1
        );
    }

    #[test]
    fn text_and_number_accept_strings_and_numbers() {
        let o = obj(r#"{"A":"x","B":7,"C":"","D":"12","E":true}"#);
        assert_eq!(text(&o, "A").as_deref(), Some("x"));
        assert_eq!(text(&o, "B").as_deref(), Some("7"));
        assert_eq!(text(&o, "C"), None);
        assert_eq!(text(&o, "E"), None);
        assert_eq!(
            (number(&o, "B"), number(&o, "D"), number(&o, "A")),
            (Some(7), Some(12), None)
        );
    }
}
