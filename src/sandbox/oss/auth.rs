//! Who may touch an object: the request's signature checked as OSS checks it — a V4 presigned
//! link, a V4 `Authorization` header, or a V1 presigned link — with the sandbox's keys (the
//! configured one and the STS ones it issued, refused once expired), at `now`. The checks
//! themselves are `sign::oss::verify`'s; this maps their verdicts to OSS's answers.

use time::OffsetDateTime;

use super::reply::OssError;
use crate::sandbox::auth::{KeyRefusal, Keyring};
use crate::sign::oss::verify::parse_authorization;
use crate::sign::oss::{
    ALGORITHM, Received, Rejection, verify_header_signed, verify_presigned, verify_v1_presigned,
};

/// How a request is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    PresignedV4,
    PresignedV1,
    HeaderV4,
    HeaderV1,
    Anonymous,
}

fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(crate) fn form(request: &Received<'_>) -> Form {
    if param(request.query, "x-oss-signature").is_some() {
        Form::PresignedV4
    } else if param(request.query, "Signature").is_some()
        && param(request.query, "OSSAccessKeyId").is_some()
    {
        Form::PresignedV1
    } else {
        match header(request.headers, "Authorization") {
            Some(value) if value.starts_with(ALGORITHM) => Form::HeaderV4,
            Some(_) => Form::HeaderV1,
            None => Form::Anonymous,
        }
    }
}

/// The AccessKey id a request is signed with, when it names one.
pub(crate) fn key_id<'r>(request: &'r Received<'_>) -> Option<&'r str> {
    match form(request) {
        Form::PresignedV4 => param(request.query, "x-oss-credential")?.split('/').next(),
        Form::PresignedV1 => param(request.query, "OSSAccessKeyId"),
        Form::HeaderV4 => parse_authorization(header(request.headers, "Authorization")?)?
            .credential
            .split('/')
            .next(),
        Form::HeaderV1 | Form::Anonymous => None,
    }
}

/// The region of a V4 credential scope (`AK/DATE/REGION/oss/aliyun_v4_request`).
fn scope_region<'r>(request: &'r Received<'_>, form: Form) -> Option<&'r str> {
    let credential = match form {
        Form::PresignedV4 => param(request.query, "x-oss-credential")?,
        Form::HeaderV4 => {
            parse_authorization(header(request.headers, "Authorization")?)?.credential
        }
        _ => return None,
    };
    credential.split('/').nth(2)
}

/// Checks `request` as OSS would at `now`; `region`: the one region accepted, else any.
pub(crate) fn authenticate(
    request: &Received<'_>,
    keys: &Keyring,
    region: Option<&str>,
    now: OffsetDateTime,
) -> Result<(), OssError> {
    let form = form(request);
    // The key lookup's own verdict, kept to tell an unknown key from an expired token.
    let mut refused = None;
    let lookup = |id: &str, token: Option<&str>| match keys.secret(id, token, now) {
        Ok(secret) => Some(secret.to_string()),
        Err(refusal) => {
            refused = Some(refusal);
            None
        }
    };
    let result = match form {
        Form::PresignedV4 | Form::HeaderV4 => {
            let signed_for = scope_region(request, form).unwrap_or_default();
            if let Some(region) = region
                && signed_for != region
            {
                return Err(OssError::invalid_argument(format!(
                    "Invalid signing region in the credential: this endpoint is {region}, the \
                     request was signed for '{signed_for}'."
                )));
            }
            let region = if crate::sign::oss::is_region(signed_for) {
                signed_for
            } else {
                region.unwrap_or("cn-hangzhou")
            };
            if form == Form::PresignedV4 {
                verify_presigned(request, region, now, lookup)
            } else {
                verify_header_signed(request, region, now, lookup)
            }
        }
        Form::PresignedV1 => verify_v1_presigned(request, now, lookup),
        Form::HeaderV1 => {
            return Err(OssError::access_denied(
                "The sandbox checks V4 (OSS4-HMAC-SHA256) signed requests and V1 or V4 signed \
                 links; sign this request with V4.",
            ));
        }
        Form::Anonymous => {
            return Err(OssError::access_denied(
                "You have no right to access this object because of bucket acl.",
            ));
        }
    };
    result.map_err(|rejection| refusal(rejection, refused))
}

fn refusal(rejection: Rejection, key: Option<KeyRefusal>) -> OssError {
    match rejection {
        Rejection::UnknownKey => match key {
            Some(KeyRefusal::TokenExpired) => OssError::new(
                403,
                "SecurityTokenExpired",
                "The security token you provided has expired.",
            ),
            Some(KeyRefusal::TokenMismatch) => OssError::new(
                403,
                "InvalidSecurityToken",
                "The security token you provided is invalid.",
            ),
            Some(KeyRefusal::Unknown) | None => OssError::new(
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
            ),
        },
        Rejection::Expired => OssError::expired(),
        Rejection::TooSkewed => OssError::new(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        ),
        Rejection::BadSignature { string_to_sign } => OssError::new(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method.",
        )
        .with("StringToSign", string_to_sign),
        other
        @ (Rejection::Missing(_) | Rejection::Malformed(_) | Rejection::WrongScope { .. }) => {
            OssError::invalid_argument(format!("{other}."))
        }
    }
}
