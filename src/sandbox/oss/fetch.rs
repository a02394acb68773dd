//! The service side's download of an `ImageUrl`: when the URL names one of the sandbox's own
//! objects (its address, path-style), MTS or ICE fetch it as they would at that moment — a GET
//! that OSS checks, so an expired or badly signed link and a missing object are refused — and
//! its first bytes must be a JPEG's or a PNG's. Each download is logged with its link for tests
//! (in the state, never in the logs).

use std::net::SocketAddr;

use time::OffsetDateTime;

use super::auth::{self, Form};
use super::reply::OssError;
use super::{MAX_FETCHES, Oss};
use crate::sandbox::snapshot::FetchSnapshot;
use crate::sandbox::sts::Issuer;
use crate::sign::oss::Received;
use crate::sign::oss::verify::parse_datetime;

const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF];
const PNG: &[u8] = &[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

/// The path and query of `url` when it is `http://` on the sandbox's own address (a loopback
/// one also as `localhost` or `127.0.0.1`) and names an object path-style.
fn own_object_url(url: &str, own: SocketAddr) -> Option<(&str, Option<&str>)> {
    let scheme = url.get(..7)?;
    if !scheme.eq_ignore_ascii_case("http://") {
        return None;
    }
    let rest = &url[7..];
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    let (host, port) = authority.rsplit_once(':')?;
    if port.parse::<u16>().ok()? != own.port() {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let loopback_name =
        own.ip().is_loopback() && matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]");
    let same = host == own.ip().to_string() || host == format!("[{}]", own.ip());
    if !(same || loopback_name) {
        return None;
    }
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let own_path = path.starts_with("/__sandbox/") || path.starts_with("/latest/");
    (super::routes_to_oss(path, query, false) && !own_path).then_some((path, query))
}

/// When the link stops working by its own terms (V4: date + expires; V1: `Expires`).
fn link_expiry(query: &[(String, String)], form: Form) -> Option<OffsetDateTime> {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match form {
        Form::PresignedV4 => {
            let signed = parse_datetime(get("x-oss-date")?)?;
            let seconds: i64 = get("x-oss-expires")?.parse().ok()?;
            Some(signed + time::Duration::seconds(seconds))
        }
        Form::PresignedV1 => {
            OffsetDateTime::from_unix_timestamp(get("Expires")?.parse().ok()?).ok()
        }
        _ => None,
    }
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// What the service says about an image OSS refused, the cause first.
fn refused_message(error: &OssError) -> String {
    let cause = match error.code {
        "AccessDenied" if error.message.contains("expired") => "the link has expired",
        "SecurityTokenExpired" => "the link's security token has expired",
        "NoSuchKey" | "NoSuchBucket" => "the image was not found",
        "SignatureDoesNotMatch" => "the link's signature does not match",
        _ => "access was denied",
    };
    format!(
        "ImageUrl: the image could not be downloaded: {cause} (OSS {}: {})",
        error.code, error.message
    )
}

impl Oss {
    /// Downloads `url` for `action` as the service would at `now`: `None` when the URL is not
    /// one of this sandbox's objects (`own`: its address), else the verdict, the error message
    /// the service gives when refused.
    pub fn fetch_image(
        &self,
        url: &str,
        own: SocketAddr,
        action: &str,
        issuer: &Issuer,
        now: OffsetDateTime,
    ) -> Option<Result<(), String>> {
        let (path, query) = own_object_url(url, own)?;
        let query: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let mut log = FetchSnapshot {
            action: action.to_string(),
            link: url.to_string(),
            at_ms: unix_ms(now),
            ..FetchSnapshot::default()
        };
        let result = self.download(path, &query, issuer, now, &mut log);
        log.refused = result.as_ref().err().map(|(code, _)| code.to_string());
        {
            let mut ledger = self.ledger();
            if ledger.fetches.len() < MAX_FETCHES {
                ledger.fetches.push(log);
            }
        }
        Some(result.map_err(|(_, message)| message))
    }

    /// The GET itself; refused: OSS's code (or `NotAnImage`) and the service's message.
    fn download(
        &self,
        path: &str,
        query: &[(String, String)],
        issuer: &Issuer,
        now: OffsetDateTime,
        log: &mut FetchSnapshot,
    ) -> Result<(), (&'static str, String)> {
        let refuse = |error: OssError| (error.code, refused_message(&error));
        let target = self.target(path).map_err(refuse)?;
        log.bucket = target.bucket.clone();
        log.key = target.key.clone();
        let received = Received {
            method: "GET",
            bucket: &target.bucket,
            key: &target.key,
            query,
            headers: &[],
        };
        let form = auth::form(&received);
        log.link_expires_ms = link_expiry(query, form).map(unix_ms);
        {
            let keys = issuer.keys();
            log.token_expires_ms = auth::key_id(&received)
                .and_then(|id| keys.expiry(id))
                .map(unix_ms);
            auth::authenticate(&received, &keys, self.config.region.as_deref(), now)
                .map_err(refuse)?;
        }
        let object = self.object(&target).map_err(refuse)?;
        if object.body.starts_with(JPEG) || object.body.starts_with(PNG) {
            Ok(())
        } else {
            Err((
                "NotAnImage",
                "ImageUrl: the downloaded file is not an image: its first bytes are neither \
                 JPEG's nor PNG's."
                    .to_string(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_path_style_urls_on_the_sandboxs_own_address_are_its_objects() {
        let own: SocketAddr = "127.0.0.1:8686".parse().unwrap();
        assert_eq!(
            own_object_url("http://127.0.0.1:8686/photos/a.jpg?x-oss-signature=1", own),
            Some(("/photos/a.jpg", Some("x-oss-signature=1")))
        );
        assert!(own_object_url("http://localhost:8686/photos/a.jpg", own).is_some());
        for other in [
            "http://127.0.0.1:8687/photos/a.jpg",
            "https://127.0.0.1:8686/photos/a.jpg",
            "http://img.example:8686/photos/a.jpg",
            "http://127.0.0.1:8686/",
            "http://127.0.0.1:8686/?Action=RegisterCustomFace",
            "http://127.0.0.1:8686/__sandbox/state",
            "http://127.0.0.1:8686/latest/meta-data/x",
            "http://img.example/noface.jpg",
        ] {
            assert_eq!(own_object_url(other, own), None, "{other}");
        }
    }
}
