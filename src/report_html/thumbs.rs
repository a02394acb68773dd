//! Thumbnails for the report: each photo fetched once (bounded in bytes and time), decoded
//! (JPEG or PNG, bounded in pixels), shrunk and re-encoded as a small JPEG `data:` URI, so the
//! page holds no link that can expire. A photo that cannot be had gets the reason instead.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;

/// The longest side of a thumbnail, in pixels.
const SIDE: u32 = 160;
/// A photo larger than this is not downloaded whole.
const MAX_BYTES: usize = 20 << 20;
/// Images wider or taller than this are not decoded.
const MAX_PIXELS_SIDE: u32 = 16_384;
/// One photo's fetch, from connecting to the last byte.
const PER_PHOTO: Duration = Duration::from_secs(15);
const CONNECT: Duration = Duration::from_secs(5);
/// Photos fetched at once.
const IN_FLIGHT: usize = 8;
/// After this many photos of one host could not be reached, the rest of it are not tried.
const HOST_FAILURES: u32 = 3;

/// One photo's thumbnail, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Thumb {
    /// A `data:image/jpeg;base64,…` URI.
    Image(String),
    Unreadable(String),
}

/// Thumbnails by the URL as the manifest writes it.
#[derive(Clone, Debug, Default)]
pub struct Thumbs(HashMap<String, Thumb>);

impl Thumbs {
    pub fn get(&self, url: &str) -> Option<&Thumb> {
        self.0.get(url)
    }
}

/// Whether the report can fetch this URL itself (http or https).
pub fn fetchable(url: &str) -> bool {
    let url = url.trim();
    let starts = |scheme: &str| {
        url.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
    };
    starts("https://") || starts("http://")
}

/// Why a photo the report cannot fetch has no thumbnail.
pub fn why_not_fetched(url: &str) -> String {
    if url.trim().starts_with("oss://") {
        "private OSS object: not fetched for the report".to_string()
    } else {
        "no http(s) URL: nothing to show".to_string()
    }
}

/// The URL to link a photo to (`--thumbnails link`), or why there is none.
pub fn link(url: &str) -> Result<&str, String> {
    if fetchable(url) {
        Ok(url.trim())
    } else {
        Err(why_not_fetched(url))
    }
}

fn client() -> Result<reqwest::Client, String> {
    // reqwest's `rustls-no-provider` feature needs a process-wide provider (as the API client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .connect_timeout(CONNECT)
        .timeout(PER_PHOTO)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("face-enroll/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Fetches and shrinks every photo of `urls`, a few at a time.
pub async fn fetch_thumbnails(urls: Vec<String>) -> Thumbs {
    let client = match client() {
        Ok(client) => client,
        Err(why) => {
            let thumbs = urls
                .into_iter()
                .map(|u| (u, Thumb::Unreadable(why.clone())));
            return Thumbs(thumbs.collect());
        }
    };
    let unreachable = std::sync::Mutex::new(HashMap::<String, u32>::new());
    let total = urls.len();
    let mut fetched = futures::stream::iter(urls)
        .map(|url| {
            let (client, unreachable) = (&client, &unreachable);
            async move {
                let host = host(&url);
                let failures = unreachable
                    .lock()
                    .map(|m| m.get(&host).copied().unwrap_or(0))
                    .unwrap_or(0);
                if failures >= HOST_FAILURES {
                    let why = format!("could not fetch: host {host} unreachable (earlier photos)");
                    return (url, Thumb::Unreadable(why));
                }
                let thumb = match fetch(client, &url).await {
                    Ok(bytes) => shrink_off_thread(bytes).await,
                    Err(Fetch::Unreachable(why)) => {
                        if let Ok(mut m) = unreachable.lock() {
                            *m.entry(host).or_insert(0) += 1;
                        }
                        Thumb::Unreadable(format!("could not fetch: {why}"))
                    }
                    Err(Fetch::Refused(why)) => {
                        Thumb::Unreadable(format!("could not fetch: {why}"))
                    }
                };
                (url, thumb)
            }
        })
        .buffer_unordered(IN_FLIGHT);
    let mut thumbs = HashMap::with_capacity(total);
    let mut logged = crate::clock::monotonic();
    while let Some((url, thumb)) = fetched.next().await {
        thumbs.insert(url, thumb);
        if logged.elapsed() >= crate::report::LOG_EVERY {
            crate::say!("face-enroll: thumbnails {}/{total}", thumbs.len());
            logged = crate::clock::monotonic();
        }
    }
    Thumbs(thumbs)
}

fn host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

enum Fetch {
    /// No answer (name, connection, time): other photos of the host would fare the same.
    Unreachable(String),
    /// An answer that was no photo (a status, too large).
    Refused(String),
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, Fetch> {
    let unreachable = |e: reqwest::Error| Fetch::Unreachable(root_cause(&e));
    let work = async {
        let mut response = client.get(url.trim()).send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(Fetch::Refused(format!("HTTP {}", status.as_u16())));
        }
        let too_large = || Fetch::Refused(format!("larger than {} MiB", MAX_BYTES >> 20));
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if bytes.len() + chunk.len() > MAX_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    // The client's own timeout bounds each request; this bounds the whole, body included.
    match tokio::time::timeout(PER_PHOTO + CONNECT, work).await {
        Ok(result) => result,
        Err(_) => Err(Fetch::Unreachable(format!(
            "no photo within {} s",
            (PER_PHOTO + CONNECT).as_secs()
        ))),
    }
}

/// The innermost cause of a failed request, which says what went wrong in the fewest words
/// ("Name or service not known", "Connection refused"); a time-out says so.
fn root_cause(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", PER_PHOTO.as_secs());
    }
    let mut cause: &dyn std::error::Error = error;
    // A chain is a few levels deep; the bound only guards against a cycle.
    for _ in 0..16 {
        match cause.source() {
            Some(next) => cause = next,
            None => break,
        }
    }
    let text = cause.to_string();
    let text = text
        .strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text);
    text.to_string()
}

async fn shrink_off_thread(bytes: Vec<u8>) -> Thumb {
    match tokio::task::spawn_blocking(move || shrink(&bytes)).await {
        Ok(Ok(data)) => Thumb::Image(data),
        Ok(Err(why)) => Thumb::Unreadable(why),
        Err(e) => Thumb::Unreadable(format!("could not decode: {e}")),
    }
}

/// Decodes a JPEG or PNG (bounded), shrinks it to [`SIDE`] and encodes it as a JPEG data URI.
pub fn shrink(bytes: &[u8]) -> Result<String, String> {
    use base64::Engine;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("could not read: {e}"))?;
    if reader.format().is_none() {
        return Err("not a JPEG or PNG image".to_string());
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_PIXELS_SIDE);
    limits.max_image_height = Some(MAX_PIXELS_SIDE);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| format!("not a readable image: {e}"))?;
    let small = decoded.thumbnail(SIDE, SIDE).to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 75)
        .encode_image(&small)
        .map_err(|e| format!("could not encode the thumbnail: {e}"))?;
    Ok(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(width, height, image::Rgb([200, 120, 40]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_large_png_becomes_a_small_jpeg_data_uri() {
        let data = shrink(&png(900, 600)).unwrap();
        let b64 = data.strip_prefix("data:image/jpeg;base64,").unwrap();
        use base64::Engine;
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let thumb = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (160, 107));
    }

    #[test]
    fn bytes_that_are_no_image_give_a_reason_instead() {
        assert!(
            shrink(b"<html>not found</html>")
                .unwrap_err()
                .contains("not a JPEG or PNG")
        );
        let mut cut = png(50, 50);
        cut.truncate(cut.len() / 2);
        assert!(shrink(&cut).unwrap_err().contains("not a readable image"));
    }

    #[test]
    fn only_web_urls_are_fetched_and_oss_objects_say_they_are_private() {
        assert!(fetchable("https://x.example.com/a.jpg"));
        assert!(fetchable("HTTP://127.0.0.1:9/a.png"));
        assert!(fetchable("http://é.example.com/a.png"));
        assert!(!fetchable("http:/x"));
        assert!(!fetchable("oss://bucket/a.jpg"));
        assert!(why_not_fetched("oss://bucket/a.jpg").contains("private"));
        assert!(link("images/a.jpg").is_err());
    }
}
