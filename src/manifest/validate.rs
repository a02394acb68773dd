//! Validation of single values (ids, image URLs) and the case-insensitive keys that identify
//! libraries, persons and images everywhere else in the tool.

use xxhash_rust::xxh3::Xxh3Default;

/// The longest id the service accepts, counted in characters, not bytes.
const MAX_ID_CHARS: usize = 120;

/// Libraries the service maintains itself; enrolling faces into them is refused.
const SYSTEM_LIBRARIES: [&str; 3] = ["celebrity", "politician", "sensitive"];

/// Checks an id (category, person, ...) after trimming: non-empty, at most 120 characters,
/// no control characters. `column` names the value in the reason.
/// Why a value is not acceptable, in words for the person who wrote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

pub fn validate_id(value: &str, column: &'static str) -> Result<(), Invalid> {
    let id = value.trim();
    if id.is_empty() {
        return Err(Invalid(format!("{column} is empty")));
    }
    // Byte length bounds the character count, so the common short ASCII id skips the count.
    if id.len() > MAX_ID_CHARS {
        let chars = id.chars().count();
        if chars > MAX_ID_CHARS {
            return Err(Invalid(format!(
                "{column} is {chars} characters long; the limit is {MAX_ID_CHARS}"
            )));
        }
    }
    // Control characters would also let two different pairs hash to the same key ('\0' separates).
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(Invalid(format!(
            "{column} contains the control character U+{:04X}",
            u32::from(c)
        )));
    }
    if let Some(c) = id.chars().find(|c| is_invisible(*c)) {
        return Err(Invalid(format!(
            "{column} contains the invisible character U+{:04X} (zero-width or a text-direction \
             control): two ids that look the same would be two persons; remove it",
            u32::from(c)
        )));
    }
    Ok(())
}

/// Zero-width characters and bidirectional controls: they make two different ids (or URLs)
/// look the same, or one look like another.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{061C}')
}

/// The longest `image_url` a request can carry (the whole signed query must stay well within
/// what gateways accept).
pub const MAX_URL_BYTES: usize = 2048;
/// The longest `person_name` (the services' text fields take at most 512 characters).
pub const MAX_NAME_CHARS: usize = 512;

/// A display name the services can take: at most [`MAX_NAME_CHARS`] characters, no invisible
/// characters.
pub fn validate_name(value: &str) -> Result<(), Invalid> {
    if value.len() > MAX_NAME_CHARS && value.chars().count() > MAX_NAME_CHARS {
        return Err(Invalid(format!(
            "person_name is {} characters long; the limit is {MAX_NAME_CHARS}",
            value.chars().count()
        )));
    }
    if let Some(c) = value.chars().find(|c| is_invisible(*c)) {
        return Err(Invalid(format!(
            "person_name contains the character U+{:04X}; remove it",
            u32::from(c)
        )));
    }
    Ok(())
}

/// True for the service's own libraries (`celebrity`, `politician`, `sensitive`) in any case.
pub fn is_system_library(id: &str) -> bool {
    let id = id.trim();
    if id.is_ascii() {
        SYSTEM_LIBRARIES
            .iter()
            .any(|name| id.eq_ignore_ascii_case(name))
    } else {
        let folded = id.to_lowercase();
        SYSTEM_LIBRARIES.contains(&folded.as_str())
    }
}

/// Checks that a trimmed value is an absolute `http`/`https` URL with a host, and holds no
/// spaces or control characters (which must be percent-encoded).
pub fn validate_url(value: &str) -> Result<(), Invalid> {
    let url = value.trim();
    if url.is_empty() {
        return Err(Invalid("image_url is empty".to_owned()));
    }
    // Byte scan first: almost every URL is ASCII and clean, and per-char checks cost more.
    let clean = url.bytes().all(|b| b > b' ' && b != 0x7f && b.is_ascii());
    // A clean URL in canonical form has a scheme, a non-empty host and no port to check.
    if clean && url.len() <= MAX_URL_BYTES && is_canonical(url) {
        return Ok(());
    }
    if !clean || url.len() > MAX_URL_BYTES {
        check_characters(url)?;
    }
    let rest = strip_scheme(url)?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    check_authority(&rest[..authority_end])
}

/// Rejects whitespace and control characters, saying where the first one is.
fn check_characters(url: &str) -> Result<(), Invalid> {
    if url.len() > MAX_URL_BYTES {
        return Err(Invalid(format!(
            "image_url is {} bytes long; the limit is {MAX_URL_BYTES}",
            url.len()
        )));
    }
    let bad = url
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_whitespace() || c.is_control() || is_invisible(*c));
    let Some((at, c)) = bad else { return Ok(()) };
    let what = if c == ' ' {
        "a space".to_owned()
    } else {
        format!("U+{:04X}", u32::from(c))
    };
    Err(Invalid(format!(
        "image_url contains {what} at character {}; percent-encode it (a space is %20)",
        at + 1
    )))
}

/// Returns what follows `http://` or `https://`, or says why the URL is not one.
fn strip_scheme(url: &str) -> Result<&str, Invalid> {
    let scheme = url
        .split_once(':')
        .map(|(scheme, _)| scheme)
        .filter(|scheme| {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
    let Some(scheme) = scheme else {
        return Err(Invalid(
            "image_url is not an absolute URL; it must start with http:// or https://".to_owned(),
        ));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(Invalid(format!(
            "image_url scheme `{scheme}` is not supported; use http:// or https://"
        )));
    }
    url[scheme.len() + 1..].strip_prefix("//").ok_or_else(|| {
        Invalid(format!(
            "image_url must start with {scheme}:// followed by a host"
        ))
    })
}

/// Checks `[userinfo@]host[:port]`: the host must be non-empty, the port digits.
fn check_authority(authority: &str) -> Result<(), Invalid> {
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, after)| after);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(Invalid(
                "image_url has an IPv6 host without its closing `]`".to_owned(),
            ));
        };
        match after.strip_prefix(':') {
            Some(port) => (host, port),
            None if after.is_empty() => (host, ""),
            None => return Err(Invalid("image_url has text after its IPv6 host".to_owned())),
        }
    } else {
        host_port.split_once(':').unwrap_or((host_port, ""))
    };
    if host.is_empty() {
        return Err(Invalid("image_url has no host".to_owned()));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid(format!("image_url port `{port}` is not a number")));
    }
    Ok(())
}

/// The case-insensitive identity of an id: the Unicode lowercase of the trimmed id.
/// The service compares ids without regard to case, so this tool must too.
pub fn fold_id(id: &str) -> String {
    let id = id.trim();
    if id.is_ascii() {
        id.to_ascii_lowercase()
    } else {
        id.to_lowercase()
    }
}

/// The key of a library: xxh3-128 of the folded category id.
pub fn library_key(category_id: &str) -> u128 {
    let mut hasher = Xxh3Default::new();
    update_folded(&mut hasher, category_id);
    hasher.digest128()
}

/// The key of a person: xxh3-128 of `fold(category) + '\0' + fold(person)`.
pub fn person_key(category_id: &str, person_id: &str) -> u128 {
    let mut hasher = Xxh3Default::new();
    update_folded(&mut hasher, category_id);
    hasher.update(b"\0");
    update_folded(&mut hasher, person_id);
    hasher.digest128()
}

/// The key of an image: xxh3-128 of `fold(category) + '\0' + fold(person) + '\0' + identity`,
/// where the identity is the image's canonical URL ([`canonical_url`]; an `image_key` column's
/// value passes through unchanged, as it is no URL). The same image presigned afresh, or
/// written with another host case or an explicit default port, has one key.
pub fn image_key(category_id: &str, person_id: &str, identity: &str) -> u128 {
    let mut hasher = Xxh3Default::new();
    update_folded(&mut hasher, category_id);
    hasher.update(b"\0");
    update_folded(&mut hasher, person_id);
    hasher.update(b"\0");
    hasher.update(canonical_url(identity).as_bytes());
    hasher.digest128()
}

/// [`person_key`] and [`image_key`] at once, folding and hashing the ids once.
pub fn person_and_image_key(category_id: &str, person_id: &str, identity: &str) -> (u128, u128) {
    let mut hasher = Xxh3Default::new();
    update_folded(&mut hasher, category_id);
    hasher.update(b"\0");
    update_folded(&mut hasher, person_id);
    let person = hasher.digest128();
    hasher.update(b"\0");
    hasher.update(canonical_url(identity).as_bytes());
    (person, hasher.digest128())
}

/// Query parameters that only grant access to an object, never name it: OSS V1 and V4
/// presigning, S3-style presigning (`X-Amz-*`), Alibaba CDN URL auth. Compared ignoring case.
fn grants_access_only(name: &str) -> bool {
    const EXACT: [&str; 11] = [
        "expires",
        "ossaccesskeyid",
        "signature",
        "security-token",
        "x-oss-credential",
        "x-oss-date",
        "x-oss-expires",
        "x-oss-security-token",
        "x-oss-additional-headers",
        "auth_key",
        "x-oss-signature",
    ];
    let lower = name.to_ascii_lowercase();
    EXACT.contains(&lower.as_str())
        || lower.starts_with("x-oss-signature")
        || lower.starts_with("x-amz-")
}

/// The identity of an image URL: scheme and host lower-cased, the default port and any user
/// info dropped, the path as written (`/` when empty), query parameters sorted with those that
/// only grant access removed, no fragment. Text that is not an http(s) URL is returned as it
/// is (trimmed).
pub fn canonical_url(url: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if is_canonical(url) {
        return Cow::Borrowed(url);
    }
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    let https = scheme.eq_ignore_ascii_case("https");
    if !https && !scheme.eq_ignore_ascii_case("http") {
        return Cow::Borrowed(url);
    }
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (authority_path, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match authority_path.find('/') {
        Some(at) => authority_path.split_at(at),
        None => (authority_path, ""),
    };
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let default_port = if https { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(host);
    let plain = scheme.bytes().all(|b| b.is_ascii_lowercase())
        && !host.bytes().any(|b| b.is_ascii_uppercase())
        && host.len() == authority.len()
        && !path.is_empty()
        && query.is_none()
        && rest.len() == url.len() - scheme.len() - 3;
    if plain {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    out.push_str(if https { "https://" } else { "http://" });
    out.push_str(&host.to_ascii_lowercase());
    out.push_str(if path.is_empty() { "/" } else { path });
    if let Some(query) = query {
        let mut params: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| !grants_access_only(p.split_once('=').map_or(p, |(name, _)| name)))
            .collect();
        params.sort_unstable();
        if !params.is_empty() {
            out.push('?');
            out.push_str(&params.join("&"));
        }
    }
    Cow::Owned(out)
}

/// The common case in one pass: a lower-case `http`/`https` scheme, a host with no upper case,
/// port or user info, a path, no query and no fragment, nothing to trim. Such a URL is its own
/// canonical form; everything else takes the full path of [`canonical_url`].
fn is_canonical(url: &str) -> bool {
    let b = url.as_bytes();
    let rest = match b {
        [b'h', b't', b't', b'p', b's', b':', b'/', b'/', rest @ ..]
        | [b'h', b't', b't', b'p', b':', b'/', b'/', rest @ ..] => rest,
        _ => return false,
    };
    // A last byte that is ASCII and not white space: nothing to trim at either end.
    if !b
        .last()
        .is_some_and(|c| c.is_ascii() && !c.is_ascii_whitespace())
    {
        return false;
    }
    let Some(slash) = rest.iter().position(|&c| c == b'/') else {
        return false;
    };
    let host = &rest[..slash];
    // Folds without early exits, which the compiler turns into wide compares.
    let bad_host = host.iter().fold(false, |bad, &c| {
        bad | c.is_ascii_uppercase() | (c == b'@') | (c == b':') | (c == b'?') | (c == b'#')
    });
    let bad_path = rest[slash..]
        .iter()
        .fold(false, |bad, &c| bad | (c == b'?') | (c == b'#'));
    !host.is_empty() && !bad_host && !bad_path
}

/// Feeds `fold_id(id)` to the hasher without allocating for ASCII ids; the streaming digest
/// does not depend on how the input is split, so chunks through a stack buffer are fine.
fn update_folded(hasher: &mut Xxh3Default, id: &str) {
    let id = id.trim();
    let bytes = id.as_bytes();
    // One pass: non-ASCII (0x80 and up) or upper case needs folding.
    if !bytes.iter().any(|&b| b >= 0x80 || b.is_ascii_uppercase()) {
        hasher.update(bytes);
        return;
    }
    if !id.is_ascii() {
        hasher.update(id.to_lowercase().as_bytes());
        return;
    }
    let mut buffer = [0u8; 128];
    for chunk in bytes.chunks(buffer.len()) {
        let folded = &mut buffer[..chunk.len()];
        folded.copy_from_slice(chunk);
        folded.make_ascii_lowercase();
        hasher.update(folded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::xxh3_128;

    #[test]
    fn accepts_an_id_of_120_cjk_characters() {
        let id = "人".repeat(120);
        assert_eq!(id.len(), 360);
        assert_eq!(validate_id(&id, "person_id").map_err(|e| e.0), Ok(()));
    }

    #[test]
    fn rejects_an_id_of_121_characters() {
        let reason = validate_id(&"a".repeat(121), "person_id")
            .map_err(|e| e.0)
            .unwrap_err();
        assert_eq!(reason, "person_id is 121 characters long; the limit is 120");
    }

    #[test]
    fn rejects_an_id_that_is_only_whitespace() {
        assert_eq!(
            validate_id(" \t ", "category_id").map_err(|e| e.0),
            Err("category_id is empty".to_owned())
        );
    }

    #[test]
    fn rejects_an_id_with_a_control_character() {
        assert_eq!(
            validate_id("a\0b", "person_id").map_err(|e| e.0),
            Err("person_id contains the control character U+0000".to_owned())
        );
    }

    #[test]
    fn recognises_system_libraries_in_any_case() {
        for id in ["celebrity", "Politician", "SENSITIVE", " sEnSiTiVe "] {
            assert!(is_system_library(id), "{id}");
        }
        assert!(!is_system_library("celebrities"));
        assert!(!is_system_library("staff"));
    }

    #[test]
    fn accepts_http_and_https_urls_in_any_case() {
        for url in [
            "http://example.com",
            "HTTPS://example.com/a/b.jpg?x=1#f",
            "https://user:pw@oss.example.com:8443/face.jpg",
            "http://[::1]:8080/a.png",
            " https://example.com/x.jpg ",
        ] {
            assert_eq!(validate_url(url).map_err(|e| e.0), Ok(()), "{url}");
        }
    }

    #[test]
    fn rejects_a_url_without_a_scheme() {
        let reason = validate_url("example.com/face.jpg")
            .map_err(|e| e.0)
            .unwrap_err();
        assert!(reason.contains("not an absolute URL"), "{reason}");
        let reason = validate_url("/faces/a.jpg?u=http://x")
            .map_err(|e| e.0)
            .unwrap_err();
        assert!(reason.contains("not an absolute URL"), "{reason}");
    }

    #[test]
    fn rejects_an_ftp_url() {
        assert_eq!(
            validate_url("ftp://example.com/a.jpg").map_err(|e| e.0),
            Err("image_url scheme `ftp` is not supported; use http:// or https://".to_owned())
        );
    }

    #[test]
    fn rejects_a_url_without_a_host() {
        for url in [
            "http://",
            "http:///a.jpg",
            "https://user@:80/a.jpg",
            "http://?q",
        ] {
            assert_eq!(
                validate_url(url).map_err(|e| e.0),
                Err("image_url has no host".to_owned()),
                "{url}"
            );
        }
        assert!(validate_url("http:example.com").map_err(|e| e.0).is_err());
    }

    #[test]
    fn rejects_a_url_with_a_space_in_the_host() {
        assert_eq!(
            validate_url("http://exa mple.com/a.jpg").map_err(|e| e.0),
            Err(
                "image_url contains a space at character 11; percent-encode it (a space is %20)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn rejects_a_url_with_a_bad_port() {
        assert!(
            validate_url("http://example.com:80a/x")
                .map_err(|e| e.0)
                .is_err()
        );
    }

    #[test]
    fn folds_ids_to_unicode_lowercase_after_trimming() {
        assert_eq!(fold_id(" Alice "), "alice");
        assert_eq!(fold_id("ÄRZTE"), "ärzte");
    }

    #[test]
    fn gives_alice_and_alice_lowercase_the_same_keys() {
        assert_eq!(fold_id("Alice"), fold_id("alice"));
        assert_eq!(person_key("Staff", "Alice"), person_key("staff", "alice"));
        assert_eq!(
            image_key("Staff", "Alice", "https://x/a.jpg"),
            image_key("staff", "alice ", " https://x/a.jpg")
        );
        assert_eq!(library_key("STAFF"), library_key("staff"));
        assert_eq!(person_key("Ärzte", "Ö"), person_key("ärzte", "ö"));
    }

    #[test]
    fn gives_different_urls_different_image_keys() {
        assert_ne!(
            image_key("staff", "alice", "https://x/a.jpg"),
            image_key("staff", "alice", "https://x/A.jpg")
        );
        assert_ne!(person_key("staff", "alice"), person_key("staff", "bob"));
        assert_ne!(person_key("ab", "c"), person_key("a", "bc"));
    }

    #[test]
    fn computes_keys_as_one_shot_hashes_of_the_folded_text() {
        let long = "X".repeat(300);
        assert_eq!(library_key(&long), xxh3_128("x".repeat(300).as_bytes()));
        assert_eq!(person_key("Staff", "Bob"), xxh3_128(b"staff\0bob"));
        assert_eq!(
            image_key("Staff", "Bob", "http://h/P.jpg"),
            xxh3_128(b"staff\0bob\0http://h/P.jpg")
        );
    }

    #[test]
    fn presigned_urls_of_one_object_have_one_canonical_url() {
        let plain = "https://bucket.oss-cn-shanghai.aliyuncs.com/p1/1.jpg";
        for signed in [
            "https://bucket.oss-cn-shanghai.aliyuncs.com/p1/1.jpg?Expires=1700000000&OSSAccessKeyId=LTAI&Signature=abc%3D",
            "https://bucket.oss-cn-shanghai.aliyuncs.com/p1/1.jpg?OSSAccessKeyId=X&Expires=1&Signature=z&security-token=t",
            "https://bucket.oss-cn-shanghai.aliyuncs.com/p1/1.jpg?x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-credential=c&x-oss-date=d&x-oss-expires=60&x-oss-signature=s&x-oss-additional-headers=host",
            "https://bucket.oss-cn-shanghai.aliyuncs.com/p1/1.jpg?X-Amz-Algorithm=A&X-Amz-Signature=s",
            "https://bucket.oss-cn-shanghai.aliyuncs.com/p1/1.jpg?auth_key=1-0-0-abc",
            "HTTPS://Bucket.OSS-cn-shanghai.aliyuncs.com:443/p1/1.jpg#top",
        ] {
            assert_eq!(canonical_url(signed), plain, "{signed}");
        }
    }

    #[test]
    fn the_one_pass_check_agrees_with_the_full_canonical_form() {
        for url in [
            "https://x.example.com/a.jpg",
            "http://x.example.com/a/B.jpg",
            "https://X.example.com/a.jpg",
            "HTTPS://x.example.com/a.jpg",
            "https://x.example.com:443/a.jpg",
            "https://x.example.com:8443/a.jpg",
            "https://u@x.example.com/a.jpg",
            "https://x.example.com/a.jpg?Expires=1",
            "https://x.example.com/a.jpg#f",
            "https://x.example.com?a=1",
            "https://x.example.com",
            "https:///a.jpg",
            " https://x.example.com/a.jpg",
            "https://x.example.com/a.jpg ",
            "https://x.example.com/名.jpg",
            "my-own-key",
        ] {
            let canonical = canonical_url(url);
            if is_canonical(url) {
                assert_eq!(canonical, url, "{url}");
            }
            // The full path gives the same answer as the one-pass check for its own output.
            assert_eq!(canonical_url(&canonical), canonical, "{url}");
        }
        assert!(is_canonical("https://x.example.com/a.jpg"));
        assert!(!is_canonical("https://X.example.com/a.jpg"));
    }

    #[test]
    fn person_and_image_keys_at_once_are_the_keys_one_at_a_time() {
        let (person, image) = person_and_image_key("Staff", " Bob", "HTTPS://h/P.jpg?Signature=s");
        assert_eq!(person, person_key("staff", "bob"));
        assert_eq!(image, image_key("staff", "bob", "https://h/P.jpg"));
    }

    #[test]
    fn the_path_and_the_naming_parameters_still_tell_images_apart() {
        assert_ne!(
            canonical_url("https://x.example.com/p1/1.jpg"),
            canonical_url("https://x.example.com/P1/1.jpg")
        );
        assert_eq!(
            canonical_url("http://x.example.com:80?b=2&a=1&Signature=s"),
            "http://x.example.com/?a=1&b=2"
        );
        assert_eq!(
            canonical_url("http://x.example.com:8080/a"),
            "http://x.example.com:8080/a"
        );
        assert_eq!(canonical_url(" my-own-key "), "my-own-key");
        assert_eq!(
            image_key(
                "L",
                "A",
                "https://x.example.com/a.jpg?Expires=1&Signature=2"
            ),
            image_key("l", "a", "https://X.example.com/a.jpg")
        );
    }

    #[test]
    fn invisible_characters_and_values_no_request_can_carry_are_invalid() {
        assert!(validate_id("ali\u{200B}ce", "person_id").is_err());
        assert!(validate_id("\u{202E}ecila", "person_id").is_err());
        assert!(validate_url("https://x.example.com/a\u{200D}.jpg").is_err());
        let long = format!("https://x.example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(
            validate_url(&long)
                .map_err(|e| e.0)
                .unwrap_err()
                .contains("2048")
        );
        assert!(validate_name(&"名".repeat(513)).is_err());
        assert!(validate_name(&"名".repeat(512)).is_ok());
    }
}
