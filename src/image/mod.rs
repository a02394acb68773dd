//! The image as a value: what identifies it in the ledger ([`ImageId`]: the manifest's
//! `image_key`, else where it is), where it is in canonical form ([`Locator`]: what a server's
//! listing is matched by), and the map back from a URL the server lists to that locator (the
//! services return the URL exactly as it was sent, signature and all).
//!
//! An OSS object is `oss://BUCKET/KEY` however it is written: every http(s) form of it
//! (virtual-hosted or path style, internal and accelerate hosts, signed with V1 or V4 or not)
//! has that locator, so a link signed afresh, or a manifest moved from signed links to
//! `oss://`, names the same image.
//!
//! Nothing outside this module canonicalises a URL; the ledger, the plan, the pipeline and the
//! commands ask an image for its identity or its locator.

mod key;
mod url;

use std::borrow::{Borrow, Cow};
use std::fmt;

pub use crate::sign::oss::OssObject;

pub use key::{fold_id, library_key, person_key};

/// An image as a manifest row names it and a ledger record keeps it: where it is (`source`:
/// an http(s) URL, `oss://BUCKET/KEY`, or the object a local photo was uploaded to) and the
/// row's `image_key`, when it has one. Its identity, its locator and the form it may be shown
/// in all come from here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Image {
    /// Where the image is, as written (trimmed).
    pub source: String,
    /// The manifest's `image_key`: an identity of the image's own, when its source does not
    /// say it (`sha256:<hex>` for a row with an `image_sha256`).
    pub key: Option<String>,
}

/// Writes an image in the tool's JSON rows as its source alone, as it may be shown (their
/// `image_url`; a signed link is written as what it names): the identity is the ledger's
/// business.
pub fn as_shown<S: serde::Serializer>(image: &Image, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&image.shown())
}

impl Image {
    pub fn new(source: impl Into<String>, key: Option<String>) -> Image {
        Image {
            source: source.into(),
            key,
        }
    }

    /// An image named by where it is alone.
    pub fn at(source: impl Into<String>) -> Image {
        Image::new(source, None)
    }

    /// What makes this image this image: its `image_key`, else its locator.
    pub fn id(&self) -> ImageId<'_> {
        ImageId::new(&self.source, self.key.as_deref())
    }

    /// Where it is, in canonical form: what a server's listing is matched by.
    pub fn locator(&self) -> Locator<'_> {
        Locator::of(&self.source)
    }

    /// The source as it may be stored or shown (a signed link becomes what it names).
    pub fn shown(&self) -> Cow<'_, str> {
        shown(&self.source)
    }

    /// The image's key in `category_id`/`person_id`.
    pub fn key_in(&self, category_id: &str, person_id: &str) -> u128 {
        self.id().key(category_id, person_id)
    }
}

/// Where an image is, in canonical form: scheme and host lower-cased, the default port, user
/// info and fragment dropped, query parameters sorted with those that only grant access
/// removed. The same object linked afresh has one locator; text that is no http(s) URL is its
/// own locator (trimmed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locator<'a>(Cow<'a, str>);

impl<'a> Locator<'a> {
    /// The locator of an image source as the manifest or the ledger writes it.
    pub fn of(source: &'a str) -> Self {
        match oss_object(source) {
            Some(object) => Locator(Cow::Owned(object.to_string())),
            None => Locator(url::canonical_url(source)),
        }
    }

    /// The locator a URL the server lists stands for: the service answers with the URL it was
    /// sent, so a presigned link maps back to the object it names.
    pub fn listed(url: &'a str) -> Self {
        Locator::of(url)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The owned text, for maps that outlive the source.
    pub fn into_string(self) -> String {
        self.0.into_owned()
    }
}

impl Borrow<str> for Locator<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Locator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What makes an image this image within its person: the manifest's `image_key` when the row
/// has one (taken as written, trimmed), else its [`Locator`]. The ledger keys an image by it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageId<'a>(Cow<'a, str>);

impl<'a> ImageId<'a> {
    /// The identity of an image whose source is `image_url` and whose `image_key` column (if
    /// any) says `image_key`.
    pub fn new(image_url: &'a str, image_key: Option<&'a str>) -> Self {
        // A key is no URL, so its "canonical form" is itself trimmed; one function serves both
        // and keeps ledgers written before this module byte-for-byte keyed the same.
        ImageId(Locator::of(image_key.unwrap_or(image_url)).0)
    }

    /// The identity an image the server lists stands for when nothing else names it: the
    /// locator its URL maps back to.
    pub fn listed(url: &'a str) -> Self {
        ImageId(Locator::listed(url).0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The image's key in `category_id`/`person_id` (ids folded as the service compares them).
    pub fn key(&self, category_id: &str, person_id: &str) -> u128 {
        key::image_key(category_id, person_id, &self.0)
    }

    /// The person's key and the image's key at once, hashing the ids once.
    pub fn person_and_key(&self, category_id: &str, person_id: &str) -> (u128, u128) {
        key::person_and_image_key(category_id, person_id, &self.0)
    }
}

impl fmt::Display for ImageId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A URL the server lists, as it may be stored or shown: a signed link (its signature is a
/// secret with a short life) becomes what it names, `oss://BUCKET/KEY` for an OSS object, else
/// the URL without its access parameters; any other URL is returned as it is.
pub fn shown(url: &str) -> Cow<'_, str> {
    if !url::grants_access(url) {
        return Cow::Borrowed(url);
    }
    match oss_object(url) {
        Some(object) => Cow::Owned(object.to_string()),
        None => url::canonical_url(url),
    }
}

/// A fingerprint of a link that grants access by itself (one the user signed), for telling
/// later whether the manifest's link for the image changed: 8 hex digits of a hash of the link
/// whole. `None` for every other address. The link is a secret; the fingerprint tells nothing
/// of it.
pub fn link_fingerprint(url: &str) -> Option<u32> {
    url::grants_access(url).then(|| fingerprint(url))
}

fn fingerprint(url: &str) -> u32 {
    // Never 0: 0 means "no fingerprint" in the replay's state.
    (xxhash_rust::xxh3::xxh3_64(url.trim().as_bytes()) as u32).max(1)
}

/// [`link_fingerprint`] as written in a ledger record.
pub fn link_fingerprint_text(url: &str) -> Option<String> {
    link_fingerprint(url).map(|f| format!("{f:08x}"))
}

/// A fingerprint read back from a ledger record; 0 when absent or unreadable.
pub fn parse_link_fingerprint(text: Option<&str>) -> u32 {
    text.and_then(|t| u32::from_str_radix(t, 16).ok())
        .unwrap_or(0)
}

/// [`shown`] for a string the caller owns or borrows for longer.
pub fn shown_cow(url: Cow<'_, str>) -> Cow<'_, str> {
    match url {
        Cow::Borrowed(text) => shown(text),
        Cow::Owned(text) if !url::grants_access(&text) => Cow::Owned(text),
        Cow::Owned(text) => Cow::Owned(shown(&text).into_owned()),
    }
}

/// The OSS object `text` names: `oss://BUCKET/KEY` as written, or an http(s) URL on an OSS
/// host (`….aliyuncs.com`), or a loopback emulator's path-style URL that carries an OSS
/// signature (an unsigned loopback URL is any local web server's, not an object).
pub fn oss_object(text: &str) -> Option<OssObject> {
    let text = text.trim();
    if text.starts_with("oss://") {
        return text.parse().ok();
    }
    let rest = split_scheme(text)
        .filter(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")
        })?
        .1;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // `rsplit_once('@')` and `rsplit_once(':')` as plain loops over a few bytes: a searcher's
    // set-up costs more than the search on an authority this short, once per manifest row.
    let host = match authority.bytes().rposition(|b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let host = match host.bytes().rposition(|b| b == b':') {
        Some(at)
            if !host.starts_with('[') && host[at + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &host[..at]
        }
        _ => host,
    };
    let on_oss = host.len() > ".aliyuncs.com".len()
        && host[host.len() - ".aliyuncs.com".len()..].eq_ignore_ascii_case(".aliyuncs.com");
    let signed_loopback = (host.starts_with("127.") || host.eq_ignore_ascii_case("localhost"))
        && url::grants_access(text);
    if !on_oss && !signed_loopback {
        return None;
    }
    OssObject::from_url(text)
}

/// `text.split_once("://")`, found byte by byte: a substring search sets up its searcher on
/// every call, and this runs once for every manifest row (a tenth of `check`'s time at ten
/// million rows).
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let at = text.as_bytes().windows(3).position(|w| w == b"://")?;
    // `at` starts an ASCII ':' and `at + 3` follows an ASCII '/': both are char boundaries.
    Some((&text[..at], &text[at + 3..]))
}

/// True when `url` is an http(s) URL already in canonical form (one pass, no allocation): the
/// manifest's validation takes it as its fast path.
pub(crate) fn is_canonical_url(url: &str) -> bool {
    url::is_canonical(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_splits_where_split_once_splits() {
        for text in [
            "",
            ":",
            "://",
            "a://",
            "https://x/y",
            "https:/x://y",
            "oss:://b",
            "é://ü://",
            "no scheme",
            "x:/ /://",
        ] {
            assert_eq!(split_scheme(text), text.split_once("://"), "{text}");
        }
    }

    #[test]
    fn every_form_of_an_oss_object_has_its_oss_address_as_locator() {
        let address = "oss://media-faces/faces/alice/01.jpg";
        for form in [
            address,
            " oss://media-faces/faces/alice/01.jpg ",
            "https://media-faces.oss-cn-shanghai.aliyuncs.com/faces/alice/01.jpg",
            "https://Media-Faces.OSS-cn-shanghai.aliyuncs.com:443/faces/alice/01.jpg",
            "https://media-faces.oss-cn-shanghai-internal.aliyuncs.com/faces/alice/01.jpg",
            "https://media-faces.oss-accelerate.aliyuncs.com/faces/alice/01.jpg",
            "https://oss-cn-shanghai.aliyuncs.com/media-faces/faces/alice/01.jpg",
            "https://media-faces.oss-cn-shanghai.aliyuncs.com/faces/alice/01.jpg?x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-date=20261205T030405Z&x-oss-expires=900&x-oss-credential=AK%2F20261205%2Fcn-shanghai%2Foss%2Faliyun_v4_request&x-oss-signature=ab",
            "https://media-faces.oss-cn-shanghai.aliyuncs.com/faces/alice/01.jpg?OSSAccessKeyId=AK&Expires=1&Signature=s%3D",
            "http://127.0.0.1:8686/media-faces/faces/alice/01.jpg?x-oss-date=d&x-oss-signature=s",
        ] {
            assert_eq!(Locator::of(form).as_str(), address, "{form}");
            assert_eq!(ImageId::new(form, None).as_str(), address, "{form}");
        }
        // An unsigned loopback URL is a local web server's, not an object.
        assert_eq!(
            Locator::of("http://127.0.0.1:8686/media-faces/a.jpg").as_str(),
            "http://127.0.0.1:8686/media-faces/a.jpg"
        );
        // A processed image is another image.
        assert!(
            Locator::of(
                "https://bkt1.oss-cn-hangzhou.aliyuncs.com/a.jpg?x-oss-process=image/resize"
            )
            .as_str()
            .starts_with("https://")
        );
    }

    #[test]
    fn a_ledger_key_recorded_for_a_signed_link_still_names_the_object() {
        // Ledgers written before objects had oss:// locators recorded a signed link's canonical
        // https form as its image_key; it keys the same image as the oss:// row.
        let old_key = "https://bkt1.oss-cn-hangzhou.aliyuncs.com/p/1.jpg";
        let signed = "https://bkt1.oss-cn-hangzhou.aliyuncs.com/p/1.jpg?Expires=1&OSSAccessKeyId=A&Signature=s";
        assert_eq!(
            ImageId::new(signed, Some(old_key)).key("lib", "alice"),
            ImageId::new("oss://bkt1/p/1.jpg", None).key("lib", "alice")
        );
    }

    #[test]
    fn an_image_key_column_is_the_identity_and_the_url_its_locator() {
        let with_key = ImageId::new("https://x.example.com/a.jpg?Signature=s", Some(" k1 "));
        assert_eq!(with_key.as_str(), "k1");
        let without = ImageId::new("https://X.example.com/a.jpg?Signature=s", None);
        assert_eq!(without.as_str(), "https://x.example.com/a.jpg");
        assert_eq!(
            Locator::of("https://X.example.com/a.jpg?Signature=s").as_str(),
            without.as_str()
        );
        assert_ne!(with_key.key("l", "p"), without.key("l", "p"));
    }

    #[test]
    fn a_listed_presigned_link_maps_back_to_the_locator_of_its_object() {
        let sent = "https://b.oss-cn-shanghai.aliyuncs.com/p/1.jpg?x-oss-date=d&x-oss-signature=s";
        assert_eq!(
            Locator::listed(sent),
            Locator::of("https://b.oss-cn-shanghai.aliyuncs.com/p/1.jpg")
        );
    }
}
