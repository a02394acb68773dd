//! The image as a value: what identifies it in the ledger ([`ImageId`]: the manifest's
//! `image_key`, else where it is), where it is in canonical form ([`Locator`]: what a server's
//! listing is matched by), and the map back from a URL the server lists to that locator (the
//! services return the URL exactly as it was sent, signature and all).
//!
//! Nothing outside this module canonicalises a URL; the ledger, the plan, the pipeline and the
//! commands ask an image for its identity or its locator.

mod key;
mod url;

use std::borrow::{Borrow, Cow};
use std::fmt;

pub use key::{fold_id, library_key, person_key};

/// Where an image is, in canonical form: scheme and host lower-cased, the default port, user
/// info and fragment dropped, query parameters sorted with those that only grant access
/// removed. The same object linked afresh has one locator; text that is no http(s) URL is its
/// own locator (trimmed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locator<'a>(Cow<'a, str>);

impl<'a> Locator<'a> {
    /// The locator of an image source as the manifest or the ledger writes it.
    pub fn of(source: &'a str) -> Self {
        Locator(url::canonical_url(source))
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
        ImageId(url::canonical_url(image_key.unwrap_or(image_url)))
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

/// True when `url` is an http(s) URL already in canonical form (one pass, no allocation): the
/// manifest's validation takes it as its fast path.
pub(crate) fn is_canonical_url(url: &str) -> bool {
    url::is_canonical(url)
}

#[cfg(test)]
mod tests {
    use super::*;

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
