//! Signed links to private OSS objects, made for each attempt: an image row that names
//! `oss://BUCKET/KEY` is sent to the service as a V4 presigned GET link, signed with the same
//! credentials as the request that carries it, at the moment it leaves. A signed link is a
//! secret with a short life: it goes into that one request and nowhere else (errors that echo
//! it are scrubbed back to the `oss://` address).

use std::time::Duration;

use time::OffsetDateTime;

use super::{ApiError, ErrorClass};
use crate::credentials::Credentials;
use crate::sign::oss::{Endpoint, Keys, OssObject, Presign, presign_get};

/// The longest life a V4 link can have.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// A link signed with temporary credentials ends this long before they do, so the service's
/// download never meets a token that has just expired.
pub const STS_MARGIN: Duration = Duration::from_secs(60);

/// Where and for how long links are made.
#[derive(Clone, Debug)]
pub struct OssLinks {
    /// The buckets' region, e.g. `cn-shanghai`.
    pub region: String,
    /// The public endpoint (virtual-hosted), or a loopback emulator's (path-style).
    pub endpoint: Endpoint,
    /// How long a link is valid (`--link-ttl`).
    pub ttl: Duration,
}

/// A link made for one attempt, and what to say instead of it.
pub struct Signed {
    pub url: String,
    pub address: String,
    /// The signature's value, scrubbed from any error text on its own too.
    pub signature: String,
    /// When the link stops working (the TTL, or less with temporary credentials).
    pub expires: OffsetDateTime,
}

/// The keys OSS signs with, borrowed from `creds`: the one conversion every OSS signature
/// (links, HEAD, GET, PUT) goes through.
pub(crate) fn keys(creds: &Credentials) -> Keys<'_> {
    Keys {
        access_key_id: &creds.access_key_id,
        secret: creds.access_key_secret.expose(),
        security_token: creds.security_token.as_ref().map(|t| t.expose()),
    }
}

impl OssLinks {
    /// A presigned GET link to `address` (`oss://BUCKET/KEY`), valid for the TTL but never
    /// beyond `expires` (temporary credentials) less [`STS_MARGIN`].
    pub fn sign(
        &self,
        address: &str,
        creds: &Credentials,
        expires: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<Signed, ApiError> {
        let object: OssObject = address.parse().map_err(|e| {
            ApiError::with_class(
                ErrorClass::RowRejected,
                None,
                "InvalidOssObject",
                format!("{e}"),
            )
        })?;
        let ttl = link_ttl(self.ttl, expires, now).ok_or_else(|| {
            ApiError::with_class(
                ErrorClass::Transient,
                None,
                "CredentialsExpiring",
                "the temporary credentials expire within a minute: a link signed now would not \
                 outlive them; waiting for renewed credentials",
            )
        })?;
        let url = presign_get(&Presign {
            object: &object,
            region: &self.region,
            endpoint: &self.endpoint,
            keys: keys(creds),
            signed_at: now,
            expires_s: ttl.as_secs(),
            sign_host: false,
        })
        .map_err(|e| {
            ApiError::config(
                "OssSigning",
                format!("cannot sign a link to {address}: {e}"),
            )
        })?;
        let signature = url
            .rsplit_once("x-oss-signature=")
            .map(|(_, rest)| rest.split('&').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        Ok(Signed {
            url,
            address: object.to_string(),
            signature,
            expires: now + ttl,
        })
    }
}

/// The life of a link: the TTL, cut to end [`STS_MARGIN`] before the credentials expire; whole
/// seconds, at least one; `None` when the credentials have less than the margin (and a second)
/// left.
pub fn link_ttl(
    ttl: Duration,
    expires: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Option<Duration> {
    let mut secs = ttl.min(MAX_TTL).as_secs().max(1);
    if let Some(expires) = expires {
        let left = (expires - now).whole_seconds() - STS_MARGIN.as_secs() as i64;
        if left < 1 {
            return None;
        }
        secs = secs.min(left as u64);
    }
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "LTAI5tExampleKeyId".into(),
            access_key_secret: Secret::new("ExampleSecret123"),
            security_token: token.map(Secret::new),
        }
    }

    fn links(ttl: u64) -> OssLinks {
        OssLinks {
            region: "cn-shanghai".into(),
            endpoint: "oss-cn-shanghai.aliyuncs.com".parse().unwrap(),
            ttl: Duration::from_secs(ttl),
        }
    }

    #[test]
    fn a_link_lives_the_ttl_but_never_past_the_token_less_a_margin() {
        let now = time::macros::datetime!(2026-12-05 03:04:05 UTC);
        let hour = Duration::from_secs(3600);
        assert_eq!(link_ttl(hour, None, now), Some(hour));
        let in_ten_minutes = now + time::Duration::minutes(10);
        assert_eq!(
            link_ttl(hour, Some(in_ten_minutes), now),
            Some(Duration::from_secs(540))
        );
        assert_eq!(
            link_ttl(hour, Some(now + time::Duration::seconds(60)), now),
            None
        );
        assert_eq!(
            link_ttl(Duration::from_secs(30 * 24 * 3600), None, now),
            Some(MAX_TTL)
        );
    }

    #[test]
    fn the_link_is_the_official_sdks_for_the_same_inputs() {
        // The first V4 vector of tests/data/oss-signing.json.
        let now = time::macros::datetime!(2026-12-05 03:04:05 UTC);
        let signed = links(900)
            .sign(
                "oss://media-faces/faces/lib-01/alice/01.jpg",
                &creds(None),
                None,
                now,
            )
            .unwrap();
        assert_eq!(
            signed.url,
            "https://media-faces.oss-cn-shanghai.aliyuncs.com/faces/lib-01/alice/01.jpg?\
             x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-date=20261205T030405Z&\
             x-oss-expires=900&x-oss-credential=LTAI5tExampleKeyId%2F20261205%2Fcn-shanghai%2F\
             oss%2Faliyun_v4_request&x-oss-signature=\
             bfc16bc6b0dcdf28e315492629ce4840bddd42703495a2bcf0d2fb356ce692a3"
        );
        assert_eq!(
            signed.address,
            "oss://media-faces/faces/lib-01/alice/01.jpg"
        );
        assert_eq!(
            signed.signature,
            "bfc16bc6b0dcdf28e315492629ce4840bddd42703495a2bcf0d2fb356ce692a3"
        );
    }

    #[test]
    fn a_token_about_to_expire_signs_nothing_and_is_retried() {
        let now = time::macros::datetime!(2026-12-05 03:04:05 UTC);
        let e = links(3600)
            .sign(
                "oss://media-faces/a.jpg",
                &creds(Some("tok")),
                Some(now + time::Duration::seconds(30)),
                now,
            )
            .err()
            .unwrap();
        assert_eq!(e.class(), ErrorClass::Transient);
    }
}
