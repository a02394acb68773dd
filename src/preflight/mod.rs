//! Pre-flight: reads each image a run would send and says, before the service's budget is
//! spent on it, whether the service would refuse it — not an image, a format other than JPEG or
//! PNG, over 5 MB, too small or too large in pixels, the same photo filed under two persons —
//! and what only deserves a warning (an EXIF rotation, a suffix naming another format, a small
//! photo, the same photo twice for one person).
//!
//! [`inspect`] checks one image's bytes (pure); [`cross`] compares the images' hashes across
//! rows (pure); [`sweep`] fetches them (paced, a few at a time) and runs both.

pub mod cross;
pub mod exif;
pub mod inspect;
pub mod recorded;
pub mod sweep;

use std::fmt;

pub use inspect::{Body, Inspection, inspect};
pub use recorded::{Prior, Recorded, Remembered, recorded};
pub use sweep::{Checked, Report, Settings, sweep};

/// The image formats pre-flight tells apart by their first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    Webp,
    Bmp,
    Tiff,
    Heif,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::Jpeg,
        Format::Png,
        Format::Gif,
        Format::Webp,
        Format::Bmp,
        Format::Tiff,
        Format::Heif,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Gif => "GIF",
            Format::Webp => "WebP",
            Format::Bmp => "BMP",
            Format::Tiff => "TIFF",
            Format::Heif => "HEIF",
        }
    }

    /// The format `bytes` start as, if any of these.
    pub fn sniff(bytes: &[u8]) -> Option<Format> {
        let at = |range: std::ops::Range<usize>| bytes.get(range).unwrap_or_default();
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Format::Gif)
        } else if bytes.starts_with(b"RIFF") && at(8..12) == b"WEBP" {
            Some(Format::Webp)
        } else if bytes.starts_with(b"BM") && bytes.len() >= 26 {
            Some(Format::Bmp)
        } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
            Some(Format::Tiff)
        } else if at(4..8) == b"ftyp"
            && matches!(
                at(8..12),
                b"heic" | b"heix" | b"hevc" | b"heim" | b"heis" | b"mif1" | b"msf1" | b"avif"
            )
        {
            Some(Format::Heif)
        } else {
            None
        }
    }

    /// The format a file suffix (lower-case, no dot) names, if one of these.
    pub fn by_suffix(suffix: &str) -> Option<Format> {
        Some(match suffix {
            "jpg" | "jpeg" | "jpe" | "jfif" => Format::Jpeg,
            "png" => Format::Png,
            "gif" => Format::Gif,
            "webp" => Format::Webp,
            "bmp" => Format::Bmp,
            "tif" | "tiff" => Format::Tiff,
            "heic" | "heif" | "avif" => Format::Heif,
            _ => return None,
        })
    }

    /// `--accept-formats`' words: a format's name in any case, `jpg` too.
    pub fn parse(word: &str) -> Option<Format> {
        let word = word.trim().to_ascii_lowercase();
        Format::by_suffix(&word)
    }
}

/// The limits an image is held to; each is a flag, with these defaults (the documented limits
/// of the sibling face API, the most conservative guide there is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest file (5 MB, in 1,024s).
    pub max_bytes: u64,
    /// Shorter side under this: refused.
    pub min_side: u32,
    /// Shorter side under this: a warning.
    pub warn_side: u32,
    /// Longer side over this: refused.
    pub max_side: u32,
    /// Formats accepted.
    pub formats: Vec<Format>,
}

impl Limits {
    /// The limits in one line of words, recorded with a verdict: a later run reuses the
    /// verdict only when its limits read the same.
    pub fn fingerprint(&self) -> String {
        let formats: Vec<&str> = self.formats.iter().map(|f| f.name()).collect();
        format!(
            "bytes<={} side>={} warn<{} side<={} formats={}",
            self.max_bytes,
            self.min_side,
            self.warn_side,
            self.max_side,
            formats.join(",")
        )
    }
}

pub const DEFAULT_MAX_BYTES: u64 = 5 << 20;
pub const DEFAULT_MIN_SIDE: u32 = 64;
pub const DEFAULT_WARN_SIDE: u32 = 200;
pub const DEFAULT_MAX_SIDE: u32 = 4096;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: DEFAULT_MAX_BYTES,
            min_side: DEFAULT_MIN_SIDE,
            warn_side: DEFAULT_WARN_SIDE,
            max_side: DEFAULT_MAX_SIDE,
            formats: vec![Format::Jpeg, Format::Png],
        }
    }
}

/// How much a finding weighs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The service would refuse the row (or register the wrong face): not sent.
    Error,
    /// Worth a look; the row is sent.
    Warning,
}

/// One thing pre-flight found about an image, in words.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// What kind of problem, in a few fixed words (`not an image`, `too small`): how findings
    /// are grouped and counted. (Read back from the ledger when a verdict is reused.)
    pub kind: std::borrow::Cow<'static, str>,
    pub message: String,
}

impl Finding {
    pub fn error(kind: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Error,
            kind: kind.into(),
            message: message.into(),
        }
    }

    pub fn warning(kind: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            kind: kind.into(),
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{word}: {}", self.message)
    }
}

#[cfg(test)]
mod testing {
    //! The sandbox's minimal photos, untagged.
    use crate::sandbox::photos;

    pub fn jpeg(width: u16, height: u16, orientation: Option<u16>) -> Vec<u8> {
        photos::jpeg(width, height, orientation, "")
    }

    pub fn png(width: u32, height: u32) -> Vec<u8> {
        photos::png(width, height, "")
    }

    pub fn gif(width: u16, height: u16) -> Vec<u8> {
        photos::gif(width, height, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_first_bytes_and_named_by_suffix() {
        assert_eq!(
            Format::sniff(&testing::jpeg(1, 1, None)),
            Some(Format::Jpeg)
        );
        assert_eq!(Format::sniff(&testing::png(1, 1)), Some(Format::Png));
        assert_eq!(Format::sniff(&testing::gif(1, 1)), Some(Format::Gif));
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::Webp));
        assert_eq!(Format::sniff(b"\0\0\0\x18ftypheic\0\0"), Some(Format::Heif));
        assert_eq!(Format::sniff(b"<html>"), None);
        assert_eq!(Format::sniff(b""), None);
        assert_eq!(Format::parse("JPG"), Some(Format::Jpeg));
        assert_eq!(Format::parse("webp"), Some(Format::Webp));
        assert_eq!(Format::parse("svg"), None);
    }
}
