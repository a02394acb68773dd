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
}

impl Fetched {
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
        let url = if source.starts_with("oss://") {
            self.sign_link(source).await?.url
        } else {
            source.to_string()
        };
        match tokio::time::timeout(timeout, self.get_capped(&url, cap)).await {
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

    async fn get_capped(&self, url: &str, cap: u64) -> Result<Fetched, ApiError> {
        let failed = |e: reqwest::Error| {
            ApiError::with_class(
                ErrorClass::Transient,
                None,
                "ConnectFailed",
                e.without_url().to_string(),
            )
        };
        let mut response = self.inner.http.get(url).send().await.map_err(failed)?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut fetched = Fetched {
            status: response.status().as_u16(),
            content_type: header("content-type"),
            declared_len: header("content-length").and_then(|v| v.parse().ok()),
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
