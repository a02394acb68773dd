//! The canonical form of an image URL: what stays the same when the same object is linked
//! afresh (a new signature, another host case, an explicit default port).

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

/// True when the URL's query has a parameter that only grants access (a signature).
pub(super) fn grants_access(url: &str) -> bool {
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .any(|p| grants_access_only(p.split_once('=').map_or(p, |(name, _)| name)))
}

/// The identity of an image URL: scheme and host lower-cased, the default port and any user
/// info dropped, the path as written (`/` when empty), query parameters sorted with those that
/// only grant access removed, no fragment. Text that is not an http(s) URL is returned as it
/// is (trimmed).
pub(super) fn canonical_url(url: &str) -> std::borrow::Cow<'_, str> {
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
pub(super) fn is_canonical(url: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of an image the way callers ask for it: through its identity.
    fn image_key(category_id: &str, person_id: &str, url: &str) -> u128 {
        crate::image::ImageId::new(url, None).key(category_id, person_id)
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
}
