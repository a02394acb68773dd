//! Thumbnails for the report: each photo read once (bounded in bytes and time) — an http(s)
//! URL fetched as it is, an `oss://` object through a GET signed for that one request, a local
//! photo no run has uploaded yet from disk — decoded (JPEG or PNG, bounded in pixels), shrunk
//! and re-encoded as a small JPEG `data:` URI, so the page holds no link that can expire. A
//! photo that cannot be had gets the reason instead. With `--thumbnails link`, `oss://` objects
//! get a link signed for the page instead, and the page says until when they work.
//!
//! A signed link is a secret: it goes into its one GET (embed) or into the page's `img`
//! (link), never into a message, a log line or a `Debug` print.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use time::OffsetDateTime;

use crate::api::{ApiError, Client, ErrorClass};

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
/// After this many photos of one host (or bucket) could not be reached, the rest of it are not
/// tried.
const HOST_FAILURES: u32 = 3;

/// One photo's thumbnail, or why there is none.
#[derive(Clone, PartialEq, Eq)]
pub enum Thumb {
    /// A `data:image/jpeg;base64,…` URI.
    Image(String),
    /// A link signed for the page (`--thumbnails link`): a secret, written only into the page.
    Link(String),
    Unreadable(String),
}

impl std::fmt::Debug for Thumb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Thumb::Image(data) => write!(f, "Image({} bytes)", data.len()),
            Thumb::Link(_) => f.write_str("Link(signed link, not shown)"),
            Thumb::Unreadable(why) => f.debug_tuple("Unreadable").field(why).finish(),
        }
    }
}

/// Thumbnails by the URL as the manifest writes it; with signed links, until when they work.
#[derive(Clone, Debug, Default)]
pub struct Thumbs {
    by_url: HashMap<String, Thumb>,
    /// The earliest expiry of the links signed for the page.
    links_until: Option<OffsetDateTime>,
}

impl Thumbs {
    pub fn get(&self, url: &str) -> Option<&Thumb> {
        self.by_url.get(url)
    }

    /// When the first of the page's signed links stops working, if it has any.
    pub fn links_until(&self) -> Option<OffsetDateTime> {
        self.links_until
    }
}

/// Where a photo's thumbnail is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An http(s) URL, fetched as it is.
    Web,
    /// `oss://BUCKET/KEY`, read through a link signed for one GET.
    Object,
    /// A local photo no run has uploaded yet.
    File(PathBuf),
}

/// Where the photo of `url` (and `file`, a local photo not uploaded yet) can be read from.
pub fn source(url: &str, file: Option<&std::path::Path>) -> Option<Source> {
    if let Some(path) = file {
        return Some(Source::File(path.to_path_buf()));
    }
    if fetchable(url) {
        Some(Source::Web)
    } else if is_object(url) {
        Some(Source::Object)
    } else {
        None
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

/// `oss://BUCKET/KEY`.
pub fn is_object(url: &str) -> bool {
    url.trim().starts_with("oss://")
}

/// Why a photo that has no source has no thumbnail.
pub const NO_SOURCE: &str = "no http(s) URL, oss:// object or local photo: nothing to show";

/// The URL to link a photo to (`--thumbnails link`) when it is a web URL, or why there is none
/// (an `oss://` object's link is signed beforehand: see [`sign_links`]).
pub fn link<'a>(url: &'a str, file: Option<&std::path::Path>) -> Result<&'a str, NoLink> {
    if file.is_some() {
        Err(NoLink::LocalPhoto)
    } else if fetchable(url) {
        Ok(url.trim())
    } else if is_object(url) {
        Err(NoLink::UnsignedObject)
    } else {
        Err(NoLink::NoSource)
    }
}

/// Why a photo has no link (`--thumbnails link`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoLink {
    #[error("local photo, not uploaded yet: not linked (--thumbnails embed shows it)")]
    LocalPhoto,
    #[error("oss:// object: no link could be signed")]
    UnsignedObject,
    #[error("{NO_SOURCE}")]
    NoSource,
}

/// Why a photo that was read has no thumbnail.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("could not read: {0}")]
    Read(std::io::Error),
    #[error("not a JPEG or PNG image")]
    NotAnImage,
    #[error("not a readable image: {0}")]
    Decode(image::ImageError),
    #[error("could not encode the thumbnail: {0}")]
    Encode(image::ImageError),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// Signs a GET link for each `oss://` object of `addresses` (with `--link-ttl`), to put in the
/// page; `oss` is the client that signs, or why there is none.
pub async fn sign_links(addresses: Vec<String>, oss: Result<&Client, &str>) -> Thumbs {
    let mut thumbs = Thumbs::default();
    for address in addresses {
        let thumb = match oss {
            Err(why) => Thumb::Unreadable(format!("no link signed: {why}")),
            Ok(client) => match client.sign_link(&address).await {
                Ok(signed) => {
                    let until = thumbs.links_until.get_or_insert(signed.expires);
                    *until = (*until).min(signed.expires);
                    Thumb::Link(signed.url)
                }
                // The error names the address, never a link.
                Err(e) => Thumb::Unreadable(format!("no link could be signed: {e}")),
            },
        };
        thumbs.by_url.insert(address, thumb);
    }
    thumbs
}

fn client() -> Result<reqwest::Client, ThumbError> {
    // reqwest's `rustls-no-provider` feature needs a process-wide provider (as the API client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .connect_timeout(CONNECT)
        .timeout(PER_PHOTO)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("face-enroll/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ThumbError::Client)
}

/// Reads and shrinks every photo of `wanted` (URL as the manifest writes it, and where to read
/// it), a few at a time; `oss` reads `oss://` objects, or says why they cannot be read.
pub async fn fetch_thumbnails(wanted: Vec<(String, Source)>, oss: Result<&Client, &str>) -> Thumbs {
    let web = client();
    let unreachable = std::sync::Mutex::new(HashMap::<String, u32>::new());
    let total = wanted.len();
    let mut fetched = futures::stream::iter(wanted)
        .map(|(url, source)| {
            let (web, unreachable) = (&web, &unreachable);
            async move {
                let host = host(&url);
                let failures = unreachable
                    .lock()
                    .map(|m| m.get(&host).copied().unwrap_or(0))
                    .unwrap_or(0);
                let (verb, place) = match source {
                    Source::Web => ("could not fetch", "host"),
                    Source::Object => ("could not read", "bucket"),
                    Source::File(_) => ("could not read", "folder"),
                };
                if failures >= HOST_FAILURES {
                    let why = format!("{verb}: {place} {host} unreachable (earlier photos)");
                    return (url, Thumb::Unreadable(why));
                }
                let got = match (&source, web) {
                    (Source::Web, Ok(web)) => fetch(web, &url).await,
                    (Source::Web, Err(why)) => Err(Fetch::Refused(why.to_string())),
                    (Source::Object, _) => match oss {
                        Ok(client) => read_object(client, &url).await,
                        Err(why) => Err(Fetch::Refused(why.to_string())),
                    },
                    (Source::File(path), _) => {
                        let path = path.clone();
                        let read = tokio::task::spawn_blocking(move || {
                            crate::upload::read_local_photo(&path)
                        });
                        match read.await {
                            Ok(Ok(bytes)) => Ok(bytes),
                            Ok(Err(why)) => Err(Fetch::Refused(why.to_string())),
                            Err(e) => Err(Fetch::Refused(format!("could not read: {e}"))),
                        }
                    }
                };
                let thumb = match got {
                    Ok(bytes) => shrink_off_thread(bytes).await,
                    Err(Fetch::Unreachable(why)) => {
                        if let Ok(mut m) = unreachable.lock() {
                            *m.entry(host).or_insert(0) += 1;
                        }
                        Thumb::Unreadable(format!("{verb}: {why}"))
                    }
                    Err(Fetch::Refused(why)) => Thumb::Unreadable(format!("{verb}: {why}")),
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
    Thumbs {
        by_url: thumbs,
        links_until: None,
    }
}

/// Reads `oss://BUCKET/KEY` through a GET signed for this request with the run's credentials
/// (the link goes into that request only; errors name the address).
async fn read_object(client: &Client, address: &str) -> Result<Vec<u8>, Fetch> {
    let fetched = client
        .fetch_image(address, MAX_BYTES as u64, PER_PHOTO + CONNECT)
        .await
        .map_err(|e| match e.class() {
            ErrorClass::Transient | ErrorClass::OutcomeUnknown | ErrorClass::RunFatal => {
                Fetch::Unreachable(object_error(&e))
            }
            _ => Fetch::Refused(object_error(&e)),
        })?;
    if !(200..300).contains(&fetched.status) {
        let code = fetched
            .oss_code()
            .map_or_else(String::new, |code| format!(" ({code})"));
        return Err(Fetch::Refused(format!("HTTP {}{code}", fetched.status)));
    }
    if fetched.truncated {
        return Err(Fetch::Refused(format!(
            "larger than {} MiB",
            MAX_BYTES >> 20
        )));
    }
    Ok(fetched.bytes)
}

/// An error of an object's read in a few words: the message, and the code where it says more.
fn object_error(error: &ApiError) -> String {
    match error.code() {
        "ConnectFailed" | "Timeout" => error.message().to_string(),
        code => format!("{code}: {}", error.message()),
    }
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
        Ok(Err(why)) => Thumb::Unreadable(why.to_string()),
        Err(e) => Thumb::Unreadable(format!("could not decode: {e}")),
    }
}

/// Decodes a JPEG or PNG (bounded), shrinks it to [`SIDE`] and encodes it as a JPEG data URI.
pub fn shrink(bytes: &[u8]) -> Result<String, ThumbError> {
    use base64::Engine;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(ThumbError::Read)?;
    if reader.format().is_none() {
        return Err(ThumbError::NotAnImage);
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_PIXELS_SIDE);
    limits.max_image_height = Some(MAX_PIXELS_SIDE);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    let decoded = reader.decode().map_err(ThumbError::Decode)?;
    let small = decoded.thumbnail(SIDE, SIDE).to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 75)
        .encode_image(&small)
        .map_err(ThumbError::Encode)?;
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
                .to_string()
                .contains("not a JPEG or PNG")
        );
        let mut cut = png(50, 50);
        cut.truncate(cut.len() / 2);
        assert!(
            shrink(&cut)
                .unwrap_err()
                .to_string()
                .contains("not a readable image")
        );
    }

    #[test]
    fn web_urls_oss_objects_and_local_photos_have_a_source_and_other_cells_none() {
        assert_eq!(
            source("https://x.example.com/a.jpg", None),
            Some(Source::Web)
        );
        assert_eq!(source("HTTP://127.0.0.1:9/a.png", None), Some(Source::Web));
        assert_eq!(
            source("http://é.example.com/a.png", None),
            Some(Source::Web)
        );
        assert_eq!(source("http:/x", None), None);
        assert_eq!(source("oss://bucket/a.jpg", None), Some(Source::Object));
        let file = std::path::Path::new("/photos/a.jpg");
        assert_eq!(
            source("photos/a.jpg", Some(file)),
            Some(Source::File(file.to_path_buf()))
        );
        assert_eq!(source("ftp://x/a.jpg", None), None);
        assert!(link("images/a.jpg", None).is_err());
        assert!(link("oss://bucket/a.jpg", None).is_err());
        assert!(
            link("a.jpg", Some(file))
                .unwrap_err()
                .to_string()
                .contains("local photo")
        );
    }

    #[test]
    fn a_signed_link_is_never_in_a_debug_print() {
        let thumb = Thumb::Link("http://127.0.0.1/b/a.jpg?x-oss-signature=abc".into());
        assert!(!format!("{thumb:?}").contains("signature"));
    }

    #[tokio::test]
    async fn a_local_photo_is_read_from_disk_and_one_that_is_no_photo_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("a.png");
        std::fs::write(&good, png(300, 200)).unwrap();
        let bad = dir.path().join("b.jpg");
        std::fs::write(&bad, b"not a photo").unwrap();
        let wanted = vec![
            ("a.png".to_string(), Source::File(good)),
            ("b.jpg".to_string(), Source::File(bad)),
        ];
        let thumbs = fetch_thumbnails(wanted, Err("no OSS here")).await;
        assert!(
            matches!(thumbs.get("a.png"), Some(Thumb::Image(d)) if d.starts_with("data:image/jpeg"))
        );
        match thumbs.get("b.jpg") {
            Some(Thumb::Unreadable(why)) => assert!(why.contains("not a JPEG or PNG"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn without_a_client_an_oss_photo_says_why_and_gets_no_link() {
        let wanted = vec![("oss://b/a.jpg".to_string(), Source::Object)];
        let thumbs = fetch_thumbnails(wanted, Err("no credentials")).await;
        assert_eq!(
            thumbs.get("oss://b/a.jpg"),
            Some(&Thumb::Unreadable("could not read: no credentials".into()))
        );
        let links = sign_links(vec!["oss://b/a.jpg".into()], Err("no credentials")).await;
        assert_eq!(links.links_until(), None);
        assert!(matches!(
            links.get("oss://b/a.jpg"),
            Some(Thumb::Unreadable(_))
        ));
    }
}
