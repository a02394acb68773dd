//! The checks on one image's bytes, with no network: what it is by its first bytes, its format,
//! size and header dimensions, its EXIF orientation, whether its name's suffix says the same,
//! and its SHA-256. Each finding is an error (the row would be refused) or a warning.

use sha2::{Digest as _, Sha256};

use super::{Finding, Format, Limits};

/// What was read of an image: at most the size limit and one byte more.
#[derive(Clone, Debug, Default)]
pub struct Body<'a> {
    pub bytes: &'a [u8],
    /// More bytes followed than were read: the image is over the size limit.
    pub truncated: bool,
    /// The whole size when the server said it (`Content-Length`).
    pub declared_len: Option<u64>,
    /// The server's `Content-Type`.
    pub content_type: Option<&'a str>,
}

/// What the checks found in one image.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Inspection {
    /// `None`: not an image this tool knows by its first bytes.
    pub format: Option<Format>,
    /// Bytes read (all of them unless over the limit).
    pub bytes: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// EXIF orientation (1 … 8) when the image carries one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orientation: Option<u16>,
    /// Lower-case hex of the whole image's SHA-256 (`None` when it was not read whole).
    pub sha256: Option<String>,
    pub findings: Vec<Finding>,
}

impl Inspection {
    pub fn refused(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }
}

/// Checks `body`, read from `name` (a URL or `oss://` address: its suffix is compared with the
/// format), against `limits`.
pub fn inspect(name: &str, body: &Body<'_>, limits: &Limits) -> Inspection {
    let bytes = body.bytes;
    let mut out = Inspection {
        bytes: bytes.len() as u64,
        ..Inspection::default()
    };
    let Some(format) = Format::sniff(bytes) else {
        out.findings.push(Finding::error(
            "not an image",
            format!(
                "not an image: {}",
                looks_like(bytes, body.content_type, body.declared_len)
            ),
        ));
        return out;
    };
    out.format = Some(format);
    out.findings.extend(format_finding(format, limits));
    match size_finding(body, limits) {
        Some(finding) => out.findings.push(finding),
        None => out.sha256 = Some(hex::encode(Sha256::digest(bytes))),
    }
    read_dimensions(bytes, format, limits, &mut out);
    if format == Format::Jpeg {
        read_orientation(bytes, &mut out);
    }
    out.findings.extend(suffix_finding(name, format));
    out
}

/// An error when `format` is not one the limits accept.
fn format_finding(format: Format, limits: &Limits) -> Option<Finding> {
    (!limits.formats.contains(&format)).then(|| {
        Finding::error(
            "format not accepted",
            format!(
                "format {}: convert to JPEG first (accepted: {}; --accept-formats widens)",
                format.name(),
                limits
                    .formats
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// An error when the image is over the size limit (or was cut off there, so its whole size is
/// the server's word, if it said one).
fn size_finding(body: &Body<'_>, limits: &Limits) -> Option<Finding> {
    let size = body
        .declared_len
        .filter(|_| body.truncated)
        .unwrap_or(body.bytes.len() as u64);
    if !body.truncated && size <= limits.max_bytes {
        return None;
    }
    let over = if body.truncated && body.declared_len.is_none() {
        format!("more than {}", human_bytes(limits.max_bytes))
    } else {
        human_bytes(size)
    };
    Some(Finding::error(
        "over the size limit",
        format!(
            "too large: {over}, over the {} limit (--max-image-bytes)",
            human_bytes(limits.max_bytes)
        ),
    ))
}

/// Reads the header's width and height into `out` and checks them, or finds the header damaged.
fn read_dimensions(bytes: &[u8], format: Format, limits: &Limits, out: &mut Inspection) {
    match imagesize::blob_size(bytes) {
        Ok(size) => {
            let (w, h) = (clamp(size.width), clamp(size.height));
            out.width = Some(w);
            out.height = Some(h);
            check_dimensions(w, h, limits, &mut out.findings);
        }
        Err(_) => out.findings.push(Finding::error(
            "damaged header",
            format!(
                "a {} whose header gives no dimensions (damaged or cut short)",
                format.name()
            ),
        )),
    }
}

/// Reads a JPEG's EXIF orientation into `out`, with a warning when it is not upright.
fn read_orientation(bytes: &[u8], out: &mut Inspection) {
    out.orientation = super::exif::jpeg_orientation(bytes);
    if let Some(o) = out.orientation.filter(|&o| o != 1) {
        out.findings.push(Finding::warning(
            "rotated",
            format!(
                "EXIF orientation {o} ({}): the service may not rotate it; save it upright",
                super::exif::describe(o)
            ),
        ));
    }
}

/// A warning when `name`'s suffix names a format other than the one the bytes are.
fn suffix_finding(name: &str, format: Format) -> Option<Finding> {
    let suffix = suffix(name)?;
    Format::by_suffix(&suffix)
        .is_some_and(|named| named != format)
        .then(|| {
            Finding::warning(
                "suffix names another format",
                format!(
                    "the name ends in .{suffix} but the file is {} (MTS checks types by suffix elsewhere)",
                    format.name()
                ),
            )
        })
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn check_dimensions(w: u32, h: u32, limits: &Limits, findings: &mut Vec<Finding>) {
    let (short, long) = (w.min(h), w.max(h));
    if short < limits.min_side {
        findings.push(Finding::error(
            "too small",
            format!(
                "too small: {w}×{h} px, the short side under {} px (--min-side)",
                limits.min_side
            ),
        ));
    } else if short < limits.warn_side {
        findings.push(Finding::warning(
            "small",
            format!(
                "small: {w}×{h} px, the short side under {} px (--warn-side): the face may be too \
             small to find",
                limits.warn_side
            ),
        ));
    }
    if long > limits.max_side {
        findings.push(Finding::error(
            "too large in pixels",
            format!(
                "too large: {w}×{h} px, the long side over {} px (--max-side)",
                limits.max_side
            ),
        ));
    }
}

/// The suffix of the last path segment of `name` (query and fragment dropped), lower-cased.
fn suffix(name: &str) -> Option<String> {
    let path = name.split(['?', '#']).next().unwrap_or(name);
    let last = path.rsplit('/').next().unwrap_or(path);
    let (stem, ext) = last.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty() && ext.len() <= 5).then(|| ext.to_ascii_lowercase())
}

/// What bytes that are no image look like: their type and size, e.g. `text/html, 1.2 kB`.
pub fn looks_like(bytes: &[u8], content_type: Option<&str>, declared: Option<u64>) -> String {
    let size = declared.unwrap_or(bytes.len() as u64);
    if bytes.is_empty() {
        return "empty (0 bytes)".to_string();
    }
    let sniffed = sniff_text(bytes);
    // The server's word, unless it claims an image the bytes are not.
    let kind = content_type
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && !t.starts_with("image/"))
        .unwrap_or_else(|| sniffed.to_string());
    format!("{kind}, {}", human_bytes(size))
}

fn sniff_text(bytes: &[u8]) -> &'static str {
    let head = &bytes[..bytes.len().min(512)];
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let lower = trimmed.get(..trimmed.len().min(64)).unwrap_or("");
    let lower = lower.to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") || lower.contains("<head")
    {
        "text/html"
    } else if lower.starts_with("<?xml") || lower.starts_with('<') {
        "application/xml"
    } else if lower.starts_with('{') || lower.starts_with('[') {
        "application/json"
    } else if head
        .iter()
        .all(|&b| b == b'\n' || b == b'\r' || b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
        && std::str::from_utf8(head).is_ok()
    {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

/// Bytes as people read them: `812 B`, `1.2 kB`, `6.0 MB` (powers of 1,024, as the limit is).
pub fn human_bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} kB", f / K)
    } else {
        format!("{:.1} MB", f / (K * K))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn check(name: &str, bytes: &[u8]) -> Inspection {
        inspect(
            name,
            &Body {
                bytes,
                ..Body::default()
            },
            &Limits::default(),
        )
    }

    fn messages(i: &Inspection) -> Vec<String> {
        i.findings.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn a_plain_jpeg_of_a_fair_size_passes_with_its_dimensions_and_hash() {
        let bytes = jpeg(640, 480, None);
        let i = check("oss://b/a.jpg", &bytes);
        assert!(i.findings.is_empty(), "{:?}", i.findings);
        assert_eq!((i.width, i.height), (Some(640), Some(480)));
        assert_eq!(i.format, Some(Format::Jpeg));
        assert_eq!(
            i.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&bytes)).as_str())
        );
    }

    #[test]
    fn an_html_page_is_not_an_image_and_says_what_it_is_and_how_big() {
        let page = format!(
            "<!DOCTYPE html><html><body>{}</body></html>",
            "x".repeat(1200)
        );
        let i = check("http://x/a.jpg", page.as_bytes());
        assert!(i.refused());
        assert_eq!(messages(&i), ["error: not an image: text/html, 1.2 kB"]);
        let i = inspect(
            "http://x/a.jpg",
            &Body {
                bytes: b"oops",
                content_type: Some("text/html; charset=utf-8"),
                ..Body::default()
            },
            &Limits::default(),
        );
        assert_eq!(messages(&i), ["error: not an image: text/html, 4 B"]);
    }

    #[test]
    fn an_empty_body_is_not_an_image() {
        let i = check("oss://b/a.jpg", b"");
        assert_eq!(messages(&i), ["error: not an image: empty (0 bytes)"]);
    }

    #[test]
    fn a_gif_is_refused_unless_accepted() {
        let bytes = gif(300, 300);
        let i = check("oss://b/a.gif", &bytes);
        assert_eq!(
            messages(&i),
            [
                "error: format GIF: convert to JPEG first (accepted: JPEG, PNG; --accept-formats widens)"
            ]
        );
        let mut limits = Limits::default();
        limits.formats.push(Format::Gif);
        let i = inspect(
            "oss://b/a.gif",
            &Body {
                bytes: &bytes,
                ..Body::default()
            },
            &limits,
        );
        assert!(i.findings.is_empty(), "{:?}", i.findings);
    }

    #[test]
    fn an_image_over_the_size_limit_is_refused_and_not_hashed() {
        let mut bytes = jpeg(1000, 1000, None);
        let limits = Limits {
            max_bytes: 1000,
            ..Limits::default()
        };
        bytes.resize(1001, 0);
        let i = inspect(
            "a.jpg",
            &Body {
                bytes: &bytes,
                truncated: true,
                declared_len: Some(6 << 20),
                content_type: None,
            },
            &limits,
        );
        assert_eq!(
            messages(&i),
            ["error: too large: 6.0 MB, over the 1000 B limit (--max-image-bytes)"]
        );
        assert_eq!(i.sha256, None);
        let i = inspect(
            "a.jpg",
            &Body {
                bytes: &bytes,
                truncated: true,
                ..Body::default()
            },
            &limits,
        );
        assert_eq!(
            messages(&i),
            ["error: too large: more than 1000 B, over the 1000 B limit (--max-image-bytes)"]
        );
    }

    #[test]
    fn dimensions_are_held_to_the_short_and_long_side_limits() {
        let i = check("a.png", &png(40, 40));
        assert_eq!(
            messages(&i),
            ["error: too small: 40×40 px, the short side under 64 px (--min-side)"]
        );
        let i = check("a.jpg", &jpeg(5000, 300, None));
        assert_eq!(
            messages(&i),
            ["error: too large: 5000×300 px, the long side over 4096 px (--max-side)"]
        );
        let i = check("a.png", &png(150, 900));
        assert!(!i.refused());
        assert!(
            messages(&i)[0].starts_with("warning: small: 150×900 px"),
            "{i:?}"
        );
        let i = check("a.png", &png(64, 4096));
        assert!(!i.refused(), "{i:?}");
    }

    #[test]
    fn a_rotated_jpeg_is_a_warning() {
        let i = check("a.jpg", &jpeg(640, 480, Some(6)));
        assert_eq!(i.orientation, Some(6));
        assert!(!i.refused());
        assert_eq!(
            messages(&i),
            [
                "warning: EXIF orientation 6 (rotated 90° clockwise to view): the service may not \
              rotate it; save it upright"
            ]
        );
        let upright = check("a.jpg", &jpeg(640, 480, Some(1)));
        assert_eq!(upright.orientation, Some(1));
        assert!(upright.findings.is_empty());
    }

    #[test]
    fn a_suffix_that_names_another_format_is_a_warning() {
        let i = check("oss://b/dir.png/face.PNG?x=1", &jpeg(640, 480, None));
        assert_eq!(
            messages(&i),
            [
                "warning: the name ends in .png but the file is JPEG (MTS checks types by suffix \
              elsewhere)"
            ]
        );
        assert!(
            check("oss://b/face.jpeg", &jpeg(640, 480, None))
                .findings
                .is_empty()
        );
        assert!(
            check("oss://b/face", &jpeg(640, 480, None))
                .findings
                .is_empty()
        );
        assert!(
            check("oss://b/face.v2", &jpeg(640, 480, None))
                .findings
                .is_empty()
        );
    }

    #[test]
    fn a_jpeg_without_a_frame_header_is_damaged() {
        let i = check("a.jpg", &[0xFF, 0xD8, 0xFF, 0xD9]);
        assert!(i.refused());
        assert!(
            messages(&i)[0].contains("header gives no dimensions"),
            "{i:?}"
        );
    }

    #[test]
    fn the_size_is_the_servers_word_only_when_the_read_was_cut_off() {
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let whole = |bytes, declared_len| Body {
            bytes,
            truncated: false,
            declared_len,
            content_type: None,
        };
        // Read whole: the bytes read are the size, whatever the server declared.
        assert_eq!(size_finding(&whole(&[0; 10], Some(1 << 30)), &limits), None);
        let over = size_finding(&whole(&[0; 11], None), &limits).unwrap();
        assert_eq!(over.kind, "over the size limit");
        assert_eq!(
            over.message,
            "too large: 11 B, over the 10 B limit (--max-image-bytes)"
        );
        let cut = Body {
            truncated: true,
            ..whole(&[0; 11], Some(2048))
        };
        assert_eq!(
            size_finding(&cut, &limits).unwrap().message,
            "too large: 2.0 kB, over the 10 B limit (--max-image-bytes)"
        );
    }

    #[test]
    fn only_a_known_suffix_naming_another_format_is_found() {
        let found = suffix_finding("https://h/x/face.PNG#top", Format::Jpeg).unwrap();
        assert_eq!(found.kind, "suffix names another format");
        assert!(
            found
                .message
                .starts_with("the name ends in .png but the file is JPEG")
        );
        assert_eq!(suffix_finding("https://h/x/face.jfif", Format::Jpeg), None);
        assert_eq!(suffix_finding("https://h/x/face.dat", Format::Jpeg), None);
        assert_eq!(suffix_finding("https://h/x.png/face", Format::Jpeg), None);
    }

    #[test]
    fn the_format_finding_lists_what_is_accepted() {
        let limits = Limits::default();
        assert_eq!(format_finding(Format::Png, &limits), None);
        assert_eq!(
            format_finding(Format::Webp, &limits).unwrap().message,
            "format WebP: convert to JPEG first (accepted: JPEG, PNG; --accept-formats widens)"
        );
    }

    #[test]
    fn bytes_are_shown_in_units_people_read() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1229), "1.2 kB");
        assert_eq!(human_bytes(6 << 20), "6.0 MB");
    }
}
