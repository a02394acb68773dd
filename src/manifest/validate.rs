//! Validation of single values (ids, image URLs); the keys that identify them
//! are in `crate::image`.

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
    if url.len() >= 6 && url.as_bytes()[..6].eq_ignore_ascii_case(b"oss://") {
        return validate_oss(url);
    }
    // Byte scan first: almost every URL is ASCII and clean, and per-char checks cost more.
    let clean = url.bytes().all(|b| b > b' ' && b != 0x7f && b.is_ascii());
    // A clean URL in canonical form has a scheme, a non-empty host and no port to check.
    if clean && url.len() <= MAX_URL_BYTES && crate::image::is_canonical_url(url) {
        return Ok(());
    }
    if !clean || url.len() > MAX_URL_BYTES {
        check_characters(url)?;
    }
    let rest = strip_scheme(url)?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    check_authority(&rest[..authority_end])
}

/// An OSS object, `oss://BUCKET/KEY`, by OSS's rules for bucket names and keys.
fn validate_oss(url: &str) -> Result<(), Invalid> {
    if !url.starts_with("oss://") {
        return Err(Invalid(format!(
            "`{url}`: write the scheme in lower case, oss://"
        )));
    }
    url.parse::<crate::image::OssObject>()
        .map(|_| ())
        .map_err(|e| Invalid(e.to_string()))
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
            "image_url is not an absolute URL: write an http:// or https:// link, an \
             oss://BUCKET/KEY object, or the path of a file (with run --upload-to)"
                .to_owned(),
        ));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(Invalid(format!(
            "image_url scheme `{scheme}` is not supported; use http://, https:// or oss://"
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

#[cfg(test)]
mod tests {
    use super::*;

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
            Err(
                "image_url scheme `ftp` is not supported; use http://, https:// or oss://"
                    .to_owned()
            )
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
