//! OSS objects by name: `oss://BUCKET/KEY` (the official CLI's notation), the endpoint a link
//! is made on, and the recognition of an object's own URL, signed or not (api-notes §11).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::{encode_path, is_region};

/// The longest object key OSS accepts, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1023;

/// An object in a bucket, both names checked by OSS's rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OssObject {
    bucket: String,
    key: String,
}

/// Why a bucket, key or `oss://` address is not one OSS accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error(
        "'{0}' is not an oss:// address: write oss://BUCKET/KEY, as in oss://my-bucket/photos/alice.jpg"
    )]
    NotOss(String),
    #[error(
        "oss://{0} names a bucket but no object: add the object's key after a slash, as in oss://{0}/photos/alice.jpg"
    )]
    NoKey(String),
    #[error("the bucket name '{0}' has {len} characters: OSS bucket names have 3 to 63", len = .0.chars().count())]
    BucketLength(String),
    #[error(
        "the bucket name '{0}' has a character OSS does not allow: only lower-case letters, digits and hyphens"
    )]
    BucketCharacter(String),
    #[error("the bucket name '{0}' starts or ends with a hyphen, which OSS does not allow")]
    BucketHyphen(String),
    #[error(
        "the object key is empty: name the object after the bucket, as in oss://BUCKET/photos/alice.jpg"
    )]
    EmptyKey,
    #[error(
        "the object key is {0} bytes long: OSS keys have at most 1023 bytes (UTF-8); shorten it"
    )]
    KeyLength(usize),
    #[error(
        "the object key '{0}' starts with '/' or '\\', which OSS does not allow: remove it (oss://BUCKET/KEY takes one slash after the bucket)"
    )]
    KeyStart(String),
}

/// Checks a bucket name: 3–63 lower-case letters, digits and hyphens, no hyphen at either end.
pub fn check_bucket(bucket: &str) -> Result<(), ObjectError> {
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ObjectError::BucketCharacter(bucket.to_string()));
    }
    if !(3..=63).contains(&bucket.len()) {
        return Err(ObjectError::BucketLength(bucket.to_string()));
    }
    if bucket.starts_with('-') || bucket.ends_with('-') {
        return Err(ObjectError::BucketHyphen(bucket.to_string()));
    }
    Ok(())
}

/// Checks an object key: not empty, at most 1023 bytes, not starting with `/` or `\`.
pub fn check_key(key: &str) -> Result<(), ObjectError> {
    if key.is_empty() {
        return Err(ObjectError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ObjectError::KeyLength(key.len()));
    }
    if key.starts_with(['/', '\\']) {
        return Err(ObjectError::KeyStart(key.to_string()));
    }
    Ok(())
}

impl OssObject {
    pub fn new(bucket: &str, key: &str) -> Result<OssObject, ObjectError> {
        check_bucket(bucket)?;
        check_key(key)?;
        Ok(OssObject {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key as stored, not encoded.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The object a URL names, when it is an OSS object's: virtual-hosted
    /// (`BUCKET.oss-REGION[-internal].aliyuncs.com/KEY`, `BUCKET.oss-accelerate[-overseas]…`) or
    /// path-style (`oss-REGION.aliyuncs.com/BUCKET/KEY`, or a loopback host such as
    /// `127.0.0.1:PORT/BUCKET/KEY`), over http or https, unsigned or signed (V1 or V4), the key
    /// percent-decoded. `None` for anything else, including a query other than a signature's
    /// (`x-oss-process`, `versionId` … name something other than the object as stored).
    pub fn from_url(url: &str) -> Option<OssObject> {
        let parts = split_url(url)?;
        if !parts.query.is_empty() && !only_signature_parameters(parts.query) {
            return None;
        }
        let path = parts.path.strip_prefix('/')?;
        let (bucket, encoded_key) = if let Some(bucket) = virtual_hosted_bucket(&parts.host) {
            (bucket.to_string(), path)
        } else if is_endpoint_host(&parts.host) || is_loopback_host(&parts.host) {
            let (bucket, key) = path.split_once('/')?;
            (bucket.to_string(), key)
        } else {
            return None;
        };
        OssObject::new(&bucket, &percent_decode(encoded_key)?).ok()
    }
}

/// `oss://bucket/key`, the key as stored (the CLI's notation does not encode it).
impl fmt::Display for OssObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oss://{}/{}", self.bucket, self.key)
    }
}

/// Parses `oss://BUCKET/KEY`; the key is taken as written, not percent-decoded.
impl FromStr for OssObject {
    type Err = ObjectError;

    fn from_str(text: &str) -> Result<OssObject, ObjectError> {
        let rest = text
            .strip_prefix("oss://")
            .ok_or_else(|| ObjectError::NotOss(text.to_string()))?;
        let Some((bucket, key)) = rest.split_once('/') else {
            return Err(ObjectError::NoKey(rest.to_string()));
        };
        check_bucket(bucket)?;
        if key.is_empty() {
            return Err(ObjectError::NoKey(bucket.to_string()));
        }
        OssObject::new(bucket, key)
    }
}

/// Where links are made: `oss-REGION.aliyuncs.com` (virtual-hosted, `https://BUCKET.HOST/KEY`)
/// or an IP address or `localhost` (path-style, `SCHEME://HOST/BUCKET/KEY`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    https: bool,
    /// Lower-case, with the port when one was given.
    host: String,
    path_style: bool,
}

/// An endpoint that cannot carry OSS links.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "'{0}' is not an OSS endpoint: write a host such as oss-cn-shanghai.aliyuncs.com, optionally after https://"
    )]
    Malformed(String),
    #[error(
        "'{0}' is plain http: only a loopback endpoint (127.0.0.1, ::1, localhost) may use it; write https://"
    )]
    PlainHttp(String),
}

impl Endpoint {
    /// The public endpoint of `region`: `https://oss-REGION.aliyuncs.com`.
    pub fn for_region(region: &str) -> Result<Endpoint, EndpointError> {
        if !is_region(region) {
            return Err(EndpointError::Malformed(region.to_string()));
        }
        format!("oss-{region}.aliyuncs.com").parse()
    }

    /// Whether links name the bucket in the path (`HOST/BUCKET/KEY`) rather than in the host.
    pub fn is_path_style(&self) -> bool {
        self.path_style
    }

    /// The `Host` a request for an object of `bucket` goes to.
    pub fn host_for(&self, bucket: &str) -> String {
        if self.path_style {
            self.host.clone()
        } else {
            format!("{bucket}.{}", self.host)
        }
    }

    /// The object's URL, the key percent-encoded (without a query).
    pub fn object_url(&self, bucket: &str, key: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = self.host_for(bucket);
        if self.path_style {
            format!("{scheme}://{host}/{bucket}/{}", encode_path(key))
        } else {
            format!("{scheme}://{host}/{}", encode_path(key))
        }
    }
}

/// Parses `HOST[:PORT]`, optionally after `https://` (or `http://` for a loopback host), with
/// nothing after the host but an optional `/`.
impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Endpoint, EndpointError> {
        let malformed = || EndpointError::Malformed(text.to_string());
        let lower = text.trim().to_ascii_lowercase();
        let (https, rest) = if let Some(rest) = lower.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = lower.strip_prefix("http://") {
            (false, rest)
        } else {
            (true, lower.as_str())
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, _) = split_authority(authority).ok_or_else(malformed)?;
        let path_style = host == "localhost" || host_ip(host).is_some();
        if !path_style && !host.split('.').all(is_dns_label) {
            return Err(malformed());
        }
        if !https && !is_loopback_host(host) {
            return Err(EndpointError::PlainHttp(text.to_string()));
        }
        Ok(Endpoint {
            https,
            host: authority.to_string(),
            path_style,
        })
    }
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Splits `host[:port]` (an IPv6 address in brackets); `None` when empty, with user
/// information, or with a port that is not a number.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() || authority.contains(['@', '/', '?', '#']) {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        Some(_) => return None,
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}

/// The address a host is, if it is one (IPv6 in brackets).
fn host_ip(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse().ok().filter(IpAddr::is_ipv6),
        None => host.parse().ok().filter(IpAddr::is_ipv4),
    }
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host_ip(host).is_some_and(|ip| ip.is_loopback())
}

/// `oss-REGION.aliyuncs.com`, `oss-REGION-internal…`, `oss-accelerate…`,
/// `oss-accelerate-overseas…` (every one is `oss-` and a region-shaped name).
fn is_endpoint_host(host: &str) -> bool {
    host.strip_suffix(".aliyuncs.com")
        .and_then(|name| name.strip_prefix("oss-"))
        .is_some_and(is_region)
}

/// The bucket of a virtual-hosted host, `BUCKET.<endpoint host>`.
fn virtual_hosted_bucket(host: &str) -> Option<&str> {
    let (bucket, endpoint) = host.split_once('.')?;
    is_endpoint_host(endpoint).then_some(bucket)
}

/// The signature parameters of V4 and V1 presigned links.
const SIGNATURE_PARAMETERS: [&str; 11] = [
    "x-oss-signature-version",
    "x-oss-date",
    "x-oss-expires",
    "x-oss-credential",
    "x-oss-additional-headers",
    "x-oss-security-token",
    "x-oss-signature",
    "OSSAccessKeyId",
    "Expires",
    "Signature",
    "security-token",
];

fn only_signature_parameters(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .all(|(name, _)| SIGNATURE_PARAMETERS.contains(&name.as_ref()))
}

/// An http(s) URL's parts: the host lower-cased without its port, the path and query as sent.
struct UrlParts<'a> {
    host: String,
    path: &'a str,
    query: &'a str,
}

fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let scheme_end = url.find("://")?;
    if !matches!(
        url[..scheme_end].to_ascii_lowercase().as_str(),
        "http" | "https"
    ) {
        return None;
    }
    let rest = &url[scheme_end + 3..];
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    let (host, _) = split_authority(authority)?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    Some(UrlParts {
        host: host.to_ascii_lowercase(),
        path,
        query,
    })
}

/// Decodes `%XY` escapes (`+` stays a plus, as in a path); `None` for a broken escape or
/// bytes that are not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(bucket: &str, key: &str) -> OssObject {
        OssObject::new(bucket, key).unwrap()
    }

    #[test]
    fn an_oss_address_parses_into_its_bucket_and_key_and_prints_back() {
        let parsed: OssObject = "oss://media-faces/faces/a b+c%41.jpg".parse().unwrap();
        assert_eq!(parsed.bucket(), "media-faces");
        assert_eq!(parsed.key(), "faces/a b+c%41.jpg");
        assert_eq!(parsed.to_string(), "oss://media-faces/faces/a b+c%41.jpg");
    }

    #[test]
    fn bucket_names_follow_the_oss_rules() {
        assert!(check_bucket("abc").is_ok());
        assert!(check_bucket(&"a".repeat(63)).is_ok());
        assert!(check_bucket("a-0-b").is_ok());
        assert_eq!(
            check_bucket("ab"),
            Err(ObjectError::BucketLength("ab".into()))
        );
        assert!(matches!(
            check_bucket(&"a".repeat(64)),
            Err(ObjectError::BucketLength(_))
        ));
        assert!(matches!(
            check_bucket("Media"),
            Err(ObjectError::BucketCharacter(_))
        ));
        assert!(matches!(
            check_bucket("my_bucket"),
            Err(ObjectError::BucketCharacter(_))
        ));
        assert!(matches!(
            check_bucket("a.b.c"),
            Err(ObjectError::BucketCharacter(_))
        ));
        assert!(matches!(
            check_bucket("-abc"),
            Err(ObjectError::BucketHyphen(_))
        ));
        assert!(matches!(
            check_bucket("abc-"),
            Err(ObjectError::BucketHyphen(_))
        ));
    }

    #[test]
    fn keys_follow_the_oss_rules_counting_utf8_bytes() {
        assert!(check_key("a").is_ok());
        assert!(check_key(&"k".repeat(1023)).is_ok());
        assert_eq!(
            check_key(&"k".repeat(1024)),
            Err(ObjectError::KeyLength(1024))
        );
        // 341 three-byte characters are 1023 bytes; one more is too many.
        assert!(check_key(&"张".repeat(341)).is_ok());
        assert_eq!(
            check_key(&"张".repeat(342)),
            Err(ObjectError::KeyLength(1026))
        );
        assert_eq!(check_key(""), Err(ObjectError::EmptyKey));
        assert!(matches!(check_key("/a"), Err(ObjectError::KeyStart(_))));
        assert!(matches!(check_key("\\a"), Err(ObjectError::KeyStart(_))));
    }

    #[test]
    fn malformed_oss_addresses_are_refused_with_what_to_write() {
        let err = |text: &str| text.parse::<OssObject>().unwrap_err();
        assert_eq!(
            err("s3://bucket/key"),
            ObjectError::NotOss("s3://bucket/key".into())
        );
        assert_eq!(err("oss://bucket"), ObjectError::NoKey("bucket".into()));
        assert_eq!(err("oss://bucket/"), ObjectError::NoKey("bucket".into()));
        assert!(matches!(err("oss://bucket//a"), ObjectError::KeyStart(_)));
        assert!(matches!(
            err("oss://Bucket/a"),
            ObjectError::BucketCharacter(_)
        ));
        assert!(matches!(err("oss:///a"), ObjectError::BucketLength(_)));
        let message = err("oss://bucket").to_string();
        assert!(
            message.contains("oss://bucket/photos/alice.jpg"),
            "{message}"
        );
        let message = err("oss://ab/k").to_string();
        assert!(message.contains("3 to 63"), "{message}");
    }

    #[test]
    fn virtual_hosted_urls_of_every_endpoint_kind_are_recognised() {
        let expected = object("media-faces", "faces/李 01.jpg");
        for host in [
            "media-faces.oss-cn-shanghai.aliyuncs.com",
            "media-faces.oss-cn-shanghai-internal.aliyuncs.com",
            "media-faces.oss-accelerate.aliyuncs.com",
            "media-faces.oss-accelerate-overseas.aliyuncs.com",
            "MEDIA-FACES.OSS-CN-SHANGHAI.ALIYUNCS.COM:443",
        ] {
            let url = format!("https://{host}/faces/%E6%9D%8E%2001.jpg");
            assert_eq!(OssObject::from_url(&url), Some(expected.clone()), "{url}");
        }
        assert_eq!(
            OssObject::from_url("http://media-faces.oss-cn-shanghai.aliyuncs.com/a+b.jpg#top"),
            Some(object("media-faces", "a+b.jpg"))
        );
    }

    #[test]
    fn path_style_urls_public_and_loopback_are_recognised() {
        let expected = object("media-faces", "faces/a.jpg");
        for url in [
            "https://oss-cn-shanghai.aliyuncs.com/media-faces/faces/a.jpg",
            "http://127.0.0.1:9000/media-faces/faces/a.jpg",
            "http://localhost:9000/media-faces/faces/a.jpg",
            "http://[::1]:9000/media-faces/faces/a.jpg",
        ] {
            assert_eq!(OssObject::from_url(url), Some(expected.clone()), "{url}");
        }
    }

    #[test]
    fn urls_of_other_things_are_not_oss_objects() {
        for url in [
            "https://example.com/media-faces/a.jpg",
            "https://media-faces.example.com/a.jpg",
            "https://media-faces.oss-cn-shanghai.aliyuncs.com/",
            "https://media-faces.oss-cn-shanghai.aliyuncs.com",
            "https://oss-cn-shanghai.aliyuncs.com/media-faces/",
            "https://oss-cn-shanghai.aliyuncs.com/media-faces",
            "https://mts.cn-shanghai.aliyuncs.com/media-faces/a.jpg",
            "https://my_bucket.oss-cn-shanghai.aliyuncs.com/a.jpg",
            "https://media-faces.oss-cn-shanghai.aliyuncs.com//a.jpg",
            "https://media-faces.oss-cn-shanghai.aliyuncs.com/%ZZ.jpg",
            "https://media-faces.oss-cn-shanghai.aliyuncs.com/%FF.jpg",
            "https://user@media-faces.oss-cn-shanghai.aliyuncs.com/a.jpg",
            "ftp://media-faces.oss-cn-shanghai.aliyuncs.com/a.jpg",
            "http://10.0.0.5:9000/media-faces/a.jpg",
            "oss://media-faces/a.jpg",
            "https://media-faces.oss-cn-shanghai.aliyuncs.com/a.jpg?x-oss-process=image/resize,w_100",
            "https://media-faces.oss-cn-shanghai.aliyuncs.com/a.jpg?versionId=CAEQ",
        ] {
            assert_eq!(OssObject::from_url(url), None, "{url}");
        }
    }

    #[test]
    fn endpoints_choose_virtual_hosted_or_path_style_and_refuse_remote_plain_http() {
        let public: Endpoint = "oss-cn-shanghai.aliyuncs.com".parse().unwrap();
        assert!(!public.is_path_style());
        assert_eq!(
            public.object_url("b-1", "a b/c.jpg"),
            "https://b-1.oss-cn-shanghai.aliyuncs.com/a%20b/c.jpg"
        );
        assert_eq!(
            Endpoint::for_region("cn-shanghai").unwrap(),
            "https://oss-cn-shanghai.aliyuncs.com/".parse().unwrap()
        );
        let local: Endpoint = "http://127.0.0.1:9000".parse().unwrap();
        assert!(local.is_path_style());
        assert_eq!(local.host_for("b-1"), "127.0.0.1:9000");
        assert_eq!(
            local.object_url("b-1", "a b/c.jpg"),
            "http://127.0.0.1:9000/b-1/a%20b/c.jpg"
        );
        assert!(
            "http://localhost:1"
                .parse::<Endpoint>()
                .unwrap()
                .is_path_style()
        );
        assert!(
            "http://[::1]:1"
                .parse::<Endpoint>()
                .unwrap()
                .is_path_style()
        );
        assert!(
            "https://10.0.0.5"
                .parse::<Endpoint>()
                .unwrap()
                .is_path_style()
        );
        assert!(matches!(
            "http://oss-cn-shanghai.aliyuncs.com".parse::<Endpoint>(),
            Err(EndpointError::PlainHttp(_))
        ));
        assert!(matches!(
            "http://10.0.0.5:9000".parse::<Endpoint>(),
            Err(EndpointError::PlainHttp(_))
        ));
        for bad in [
            "",
            "https://",
            "host/path",
            "a@host",
            "host:port",
            "[::1",
            "a..b",
            "CN_shanghai",
        ] {
            assert!(
                matches!(bad.parse::<Endpoint>(), Err(EndpointError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(Endpoint::for_region("cn shanghai").is_err());
    }

    #[test]
    fn percent_decoding_keeps_plus_and_refuses_broken_escapes() {
        assert_eq!(percent_decode("a+b%20c%2Fd").as_deref(), Some("a+b c/d"));
        assert_eq!(percent_decode("%e5%bc%a0").as_deref(), Some("张"));
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%C3"), None);
    }
}
