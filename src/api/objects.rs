//! Requests to OSS itself, signed in their headers (V4) with the run's credentials: `check
//! --probe` asks whether an `oss://` object is there and readable (HEAD) before an import spends
//! the service's budget on a photo it cannot download; `run --upload-to` puts a local photo in
//! the bucket (PUT, never over an existing object). Nothing here goes to the face service.

use base64::Engine as _;

use super::{ApiError, Client, ErrorClass};
use crate::sign::oss::{ObjectRequest, OssObject, sign_request};

/// What OSS said about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectProbe {
    /// There, and these credentials may read it.
    Found {
        size: Option<u64>,
        content_type: Option<String>,
    },
    /// No such object or bucket (404): the service could not download it either.
    Missing { code: String },
    /// 403: these credentials may not read it (no `oss:GetObject` on it), or the request was
    /// refused for its signature or clock.
    Denied { code: String, message: String },
    /// Any other answer.
    Other { status: u16, code: String },
}

/// What a PUT did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uploaded {
    /// Stored now.
    Stored,
    /// An object already had the key (409 `FileAlreadyExists`): for a key named by the
    /// content's hash, the same bytes are there.
    AlreadyThere,
}

impl Client {
    /// HEADs `address` (`oss://BUCKET/KEY`) on the OSS endpoint links are made on, signed with
    /// the credentials the run uses. A transport failure is an error (the caller reports it).
    pub async fn probe_object(&self, address: &str) -> Result<ObjectProbe, ApiError> {
        let request = self.object_request("HEAD", address, &[]).await?;
        let response = request.send().await.map_err(transport)?;
        Ok(judge(response.status().as_u16(), response.headers()))
    }

    /// Puts `body` at `address` (`oss://BUCKET/KEY`) unless an object is there already
    /// (`x-oss-forbid-overwrite`), with `Content-MD5` so OSS refuses a damaged body.
    pub async fn put_object(
        &self,
        address: &str,
        body: bytes::Bytes,
        content_type: &str,
        content_md5: &str,
    ) -> Result<Uploaded, ApiError> {
        let headers = [
            ("Content-MD5".to_string(), content_md5.to_string()),
            ("Content-Type".to_string(), content_type.to_string()),
            ("x-oss-forbid-overwrite".to_string(), "true".to_string()),
        ];
        let request = self.object_request("PUT", address, &headers).await?;
        let response = request.body(body).send().await.map_err(transport)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(Uploaded::Stored);
        }
        let text = response.text().await.unwrap_or_default();
        let code = element(&text, "Code").unwrap_or_else(|| format!("HTTP{status}"));
        if status == 409 && code == "FileAlreadyExists" {
            return Ok(Uploaded::AlreadyThere);
        }
        let message = element(&text, "Message").unwrap_or_default();
        Err(ApiError::new(Some(status), code, message))
    }

    /// A request to `address` on the OSS endpoint, signed in its headers; `headers` are sent
    /// and signed too.
    pub(super) async fn object_request(
        &self,
        method: &str,
        address: &str,
        headers: &[(String, String)],
    ) -> Result<reqwest::RequestBuilder, ApiError> {
        let links = self.inner.oss.get().ok_or_else(|| {
            ApiError::config(
                "NoOssEndpoint",
                "no OSS region or endpoint is set (--oss-region, --oss-endpoint)",
            )
        })?;
        let object: OssObject = address.parse().map_err(|e| {
            ApiError::with_class(
                ErrorClass::RowRejected,
                None,
                "InvalidOssObject",
                format!("{e}"),
            )
        })?;
        let creds = self
            .inner
            .credentials
            .credentials()
            .await
            .map_err(super::unavailable)?;
        let signed = sign_request(
            &ObjectRequest {
                method,
                object: &object,
                query: &[],
                headers,
            },
            &links.region,
            super::links::keys(&creds),
            crate::clock::now_utc(),
        )
        .map_err(|e| ApiError::config("OssSigning", e.to_string()))?;
        let url = links.endpoint.object_url(object.bucket(), object.key());
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| ApiError::config("OssMethod", e.to_string()))?;
        let mut request = self
            .inner
            .http
            .request(method, &url)
            .header("Authorization", signed.authorization);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        for (name, value) in &signed.headers {
            request = request.header(*name, value);
        }
        Ok(request)
    }
}

/// OSS's answer to a HEAD: the status, and for a refusal the code carried base64-encoded in
/// `x-oss-err` (a HEAD has no body).
fn judge(status: u16, headers: &reqwest::header::HeaderMap) -> ObjectProbe {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if (200..300).contains(&status) {
        return ObjectProbe::Found {
            size: header("content-length").and_then(|v| v.parse().ok()),
            content_type: header("content-type").map(str::to_string),
        };
    }
    let xml = header("x-oss-err")
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let code = element(&xml, "Code").unwrap_or_else(|| format!("HTTP{status}"));
    match status {
        404 => ObjectProbe::Missing { code },
        403 => ObjectProbe::Denied {
            code,
            message: element(&xml, "Message").unwrap_or_default(),
        },
        _ => ObjectProbe::Other { status, code },
    }
}

/// The text of the first `<name>…</name>` of an OSS error body.
pub(super) fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    xml.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(value, _)| value.trim().to_string())
}

/// A request to OSS that got no answer. No connection: nothing was sent, and the message says
/// what failed and where (the line on-call reads when OSS cannot be reached). Anything later:
/// a PUT may have been stored.
fn transport(error: reqwest::Error) -> ApiError {
    transport_to(error, " (OSS: --oss-endpoint, --oss-region)")
}

/// [`transport`] for any request outside the service's API; `note` follows the host in the
/// message (what that host is).
pub(super) fn transport_to(error: reqwest::Error, note: &str) -> ApiError {
    let host = error
        .url()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)));
    let connect = error.is_connect();
    let error = error.without_url();
    let message = crate::net::describe(&error);
    if connect {
        let what = crate::net::connect_failure(&error);
        let host = host.as_deref().unwrap_or("the OSS endpoint");
        ApiError::with_class(
            ErrorClass::Transient,
            None,
            "ConnectFailed",
            format!("{what} connecting to {host}{note}: {message}"),
        )
    } else {
        ApiError::with_class(ErrorClass::OutcomeUnknown, None, "ConnectionReset", message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn with_error(xml: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(xml);
        headers.insert("x-oss-err", HeaderValue::from_str(&encoded).unwrap());
        headers
    }

    #[test]
    fn a_head_answer_says_found_missing_or_denied_with_osss_code() {
        let mut found = HeaderMap::new();
        found.insert("content-length", HeaderValue::from_static("2048"));
        found.insert("content-type", HeaderValue::from_static("image/jpeg"));
        assert_eq!(
            judge(200, &found),
            ObjectProbe::Found {
                size: Some(2048),
                content_type: Some("image/jpeg".into())
            }
        );
        let missing = with_error("<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>");
        assert_eq!(
            judge(404, &missing),
            ObjectProbe::Missing {
                code: "NoSuchKey".into()
            }
        );
        let denied =
            with_error("<Error><Code>AccessDenied</Code><Message>no right</Message></Error>");
        assert_eq!(
            judge(403, &denied),
            ObjectProbe::Denied {
                code: "AccessDenied".into(),
                message: "no right".into()
            }
        );
        assert_eq!(
            judge(500, &HeaderMap::new()),
            ObjectProbe::Other {
                status: 500,
                code: "HTTP500".into()
            }
        );
    }
}
