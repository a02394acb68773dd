//! Pre-flight's download of an image: a GET of an `oss://` object through a link signed with
//! the run's credentials (as the service will get it), or of an http(s) URL as it is, reading
//! at most a byte cap within a timeout. Nothing is sent to the face service.

use std::time::Duration;

use super::{ApiError, Client, ErrorClass};

/// What came back for one image.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    pub status: u16,
    pub content_type: Option<String>,
    /// `Content-Length`, when the server sent it.
    pub declared_len: Option<u64>,
    /// The body, at most the cap.
    pub bytes: Vec<u8>,
    /// More followed than the cap: the rest was not read.
    pub truncated: bool,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// What tells one version of an image from another without reading it: the server's `ETag`,
/// `Last-Modified` and size (as a HEAD or the GET's headers give them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub size: Option<u64>,
}

impl Validators {
    /// Whether `now` names the bytes `self` was taken from: the same `ETag` (and the same size
    /// when both give one), or, without an `ETag`, the same `Last-Modified` and size. Anything
    /// less proves nothing: the image is read again.
    pub fn same_as_before(&self, now: &Validators) -> bool {
        let sizes_agree = match (self.size, now.size) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        match (&self.etag, &now.etag) {
            (Some(a), Some(b)) => a == b && sizes_agree,
            (None, None) => {
                self.last_modified.is_some()
                    && self.last_modified == now.last_modified
                    && self.size.is_some()
                    && self.size == now.size
            }
            _ => false,
        }
    }

    /// Whether these can ever prove an image unchanged.
    pub fn usable(&self) -> bool {
        self.etag.is_some() || (self.last_modified.is_some() && self.size.is_some())
    }
}

impl Fetched {
    /// The validators the download's headers gave.
    pub fn validators(&self) -> Validators {
        Validators {
            etag: self.etag.clone(),
            last_modified: self.last_modified.clone(),
            size: self.declared_len,
        }
    }

    /// OSS's error code in the body of a refusal (`NoSuchKey`, `AccessDenied`), if it sent one.
    pub fn oss_code(&self) -> Option<String> {
        let text = std::str::from_utf8(&self.bytes).ok()?;
        super::objects::element(text, "Code").filter(|code| !code.is_empty())
    }
}

impl Client {
    /// GETs `source` (`oss://BUCKET/KEY` through a freshly signed link, else the URL), reading
    /// at most `cap` bytes, all within `timeout`. Errors never carry a signed link.
    pub async fn fetch_image(
        &self,
        source: &str,
        cap: u64,
        timeout: Duration,
    ) -> Result<Fetched, ApiError> {
        let oss = source.starts_with("oss://");
        let url = if oss {
            self.sign_link(source).await?.url
        } else {
            source.to_string()
        };
        let note = if oss {
            " (OSS: --oss-endpoint, --oss-region)"
        } else {
            ""
        };
        match tokio::time::timeout(timeout, self.get_capped(&url, cap, note)).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::with_class(
                ErrorClass::Transient,
                None,
                "Timeout",
                format!(
                    "no whole answer within {}",
                    humantime::format_duration(timeout)
                ),
            )),
        }
    }

    /// HEADs `source` (`oss://BUCKET/KEY` with a request signed in its headers, else the URL)
    /// within `timeout`: its validators, or `None` when the answer was not a success (the
    /// image is then read, and judged, as usual).
    pub async fn head_image(
        &self,
        source: &str,
        timeout: Duration,
    ) -> Result<Option<Validators>, ApiError> {
        let request = if source.starts_with("oss://") {
            self.object_request("HEAD", source, &[]).await?
        } else {
            self.inner.http.head(source)
        };
        let response = match tokio::time::timeout(timeout, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(super::objects::transport_to(e, "")),
            Err(_) => {
                return Err(ApiError::with_class(
                    ErrorClass::Transient,
                    None,
                    "Timeout",
                    "no answer to a HEAD in time".to_string(),
                ));
            }
        };
        if !response.status().is_success() {
            return Ok(None);
        }
        let header = |name: &str| header_text(&response, name);
        Ok(Some(Validators {
            etag: header("etag"),
            last_modified: header("last-modified"),
            size: header("content-length").and_then(|v| v.parse().ok()),
        }))
    }

    async fn get_capped(&self, url: &str, cap: u64, note: &str) -> Result<Fetched, ApiError> {
        // What failed and where (never the link itself: it may be signed).
        let failed = |e: reqwest::Error| {
            let error = super::objects::transport_to(e, note);
            // No connection, or an answer cut short: either way no photo, read again next run.
            ApiError::with_class(ErrorClass::Transient, None, error.code(), error.message())
        };
        let mut response = self.inner.http.get(url).send().await.map_err(failed)?;
        let header = |name: &str| header_text(&response, name);
        let mut fetched = Fetched {
            status: response.status().as_u16(),
            content_type: header("content-type"),
            declared_len: header("content-length").and_then(|v| v.parse().ok()),
            etag: header("etag"),
            last_modified: header("last-modified"),
            ..Fetched::default()
        };
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            let room = cap - fetched.bytes.len();
            if chunk.len() > room {
                fetched.bytes.extend_from_slice(&chunk[..room]);
                fetched.truncated = true;
                break;
            }
            fetched.bytes.extend_from_slice(&chunk);
        }
        Ok(fetched)
    }
}

/// A response header's value as text, when it is text.
fn header_text(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
