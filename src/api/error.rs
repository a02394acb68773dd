//! What one failed attempt means: `ApiError` carries the server's answer (or the transport's
//! failure) and `classify` turns its code into the one decision the pipeline needs (api-notes §4).

use std::fmt;
use std::time::Duration;

/// What a failed attempt tells the caller to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Nothing was applied (connect failure, `SignatureNonceUsed`): retry freely.
    Transient,
    /// Over the account's QPS budget: slow down, honour `retry_after`.
    Throttled,
    /// The request may or may not have been applied (5xx, timeout or reset after sending,
    /// malformed 2xx): reconcile before retrying a non-idempotent call.
    OutcomeUnknown,
    /// This row is bad (`InvalidParameter*`, `MissingParameter*`, other 4xx codes): record, go on.
    RowRejected,
    /// The whole run is invalid (credentials, signing, clock, permissions, configuration): stop.
    RunFatal,
}

/// One failed attempt. `Display` reads `Code: Message (HTTP 400, RequestId …)`; never contains secrets.
#[derive(Clone, Debug)]
pub struct ApiError {
    inner: Box<Inner>,
}

#[derive(Clone, Debug)]
struct Inner {
    class: ErrorClass,
    code: String,
    message: String,
    request_id: Option<String>,
    status: Option<u16>,
    retry_after: Option<Duration>,
    server_string_to_sign: Option<String>,
    /// The request carried an image link this tool signed (an `oss://` row).
    signed_link: bool,
    /// A transport failure after the answer's status line came back (reading its body).
    answered: bool,
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// An error with the class `classify` gives `code`.
    pub fn new(
        status: Option<u16>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> ApiError {
        let code = code.into();
        let class = classify(status, &code);
        ApiError::with_class(class, status, code, message)
    }

    /// An error whose class the caller decides (local failures that have no server code).
    pub fn with_class(
        class: ErrorClass,
        status: Option<u16>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> ApiError {
        let message = message.into();
        let code = code.into();
        let server_string_to_sign = if code == "SignatureDoesNotMatch" {
            parse_string_to_sign(&message)
        } else {
            None
        };
        ApiError {
            inner: Box::new(Inner {
                class,
                code,
                message,
                request_id: None,
                status,
                retry_after: None,
                server_string_to_sign,
                signed_link: false,
                answered: false,
            }),
        }
    }

    /// A local configuration error (bad endpoint, TLS setup): always run-fatal.
    pub fn config(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::with_class(ErrorClass::RunFatal, None, code, message)
    }

    /// A 2xx answer that does not say what happened: outcome unknown.
    pub fn malformed(status: Option<u16>, message: impl Into<String>) -> ApiError {
        ApiError::with_class(
            ErrorClass::OutcomeUnknown,
            status,
            "MalformedResponse",
            message,
        )
    }

    /// The same error with another class (the caller knows more than the code says).
    pub fn reclassify(mut self, class: ErrorClass) -> ApiError {
        self.inner.class = class;
        self
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> ApiError {
        self.inner.request_id = request_id.filter(|r| !r.is_empty());
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> ApiError {
        self.inner.retry_after = retry_after;
        self
    }

    /// The request carried an image link this tool signed for the attempt.
    /// Marks a transport failure that came after the answer's status line (its body broke off).
    pub(crate) fn after_answer(mut self) -> ApiError {
        self.inner.answered = true;
        self
    }

    /// The service answered, with a status or with the start of an answer that broke off.
    pub fn got_an_answer(&self) -> bool {
        self.inner.status.is_some() || self.inner.answered
    }

    pub(crate) fn with_signed_link(mut self) -> ApiError {
        self.inner.signed_link = true;
        self
    }

    /// The service refused an image link this tool signed, in a way the link itself can cause
    /// (it could not download the image: expired, not found, not reachable, access denied). A
    /// link signed afresh may go through, so the create is tried once more; a refusal that is
    /// about the picture (no face, too large) is not one of these.
    pub fn refused_signed_link(&self) -> bool {
        self.inner.signed_link
            && self.inner.class == ErrorClass::RowRejected
            && is_download_refusal(&self.inner.code, &self.inner.message)
    }

    /// Replaces every occurrence of `needle` in the message and string-to-sign (a token echoed back).
    pub(crate) fn scrub(self, needle: &str) -> ApiError {
        self.scrub_as(needle, "(redacted)")
    }

    /// Replaces every occurrence of `needle` with `shown` (a signed link with its address).
    pub(crate) fn scrub_as(mut self, needle: &str, shown: &str) -> ApiError {
        if needle.is_empty() {
            return self;
        }
        let inner = &mut *self.inner;
        if inner.message.contains(needle) {
            inner.message = inner.message.replace(needle, shown);
        }
        if let Some(sts) = inner
            .server_string_to_sign
            .as_mut()
            .filter(|s| s.contains(needle))
        {
            *sts = sts.replace(needle, shown);
        }
        self
    }

    pub fn class(&self) -> ErrorClass {
        self.inner.class
    }

    /// The server's `Code`, or a local one: `Timeout`, `ConnectionReset`, `ConnectFailed`,
    /// `MalformedResponse`, `HTTP502`, `InsecureEndpoint`, …
    pub fn code(&self) -> &str {
        &self.inner.code
    }

    pub fn message(&self) -> &str {
        &self.inner.message
    }

    pub fn request_id(&self) -> Option<&str> {
        self.inner.request_id.as_deref()
    }

    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// The server's hint from `x-acs-retry-after` (milliseconds).
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The server's own string-to-sign, from a `SignatureDoesNotMatch` message.
    pub fn server_string_to_sign(&self) -> Option<&str> {
        self.inner.server_string_to_sign.as_deref()
    }

    /// What the user should do, for errors a person has to fix.
    pub fn hint(&self) -> Option<&'static str> {
        hint_for(&self.inner.code)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let message = match &inner.server_string_to_sign {
            Some(_) => message_before_string_to_sign(&inner.message),
            None => inner.message.as_str(),
        };
        write!(f, "{}: {}", inner.code, message)?;
        match (inner.status, &inner.request_id) {
            (Some(s), Some(r)) => write!(f, " (HTTP {s}, RequestId {r})")?,
            (Some(s), None) => write!(f, " (HTTP {s})")?,
            (None, Some(r)) => write!(f, " (RequestId {r})")?,
            (None, None) => {}
        }
        if let Some(sts) = &inner.server_string_to_sign {
            write!(f, "; server string-to-sign: {sts}")?;
        }
        Ok(())
    }
}

const STS_MARKERS: [&str; 4] = [
    "server string to sign is:",
    "string to sign is:",
    "stringtosign is:",
    "string-to-sign:",
];

fn find_marker(message: &str) -> Option<(usize, usize)> {
    let lower = message.to_ascii_lowercase();
    STS_MARKERS
        .iter()
        .find_map(|m| lower.find(m).map(|at| (at, at + m.len())))
}

/// `Specified signature is not matched with our calculation. server string to sign is:GET&%2F&…`
fn parse_string_to_sign(message: &str) -> Option<String> {
    let (_, end) = find_marker(message)?;
    let sts = message[end..].trim();
    (!sts.is_empty()).then(|| sts.to_string())
}

fn message_before_string_to_sign(message: &str) -> &str {
    match find_marker(message) {
        Some((start, _)) => message[..start].trim_end(),
        None => message,
    }
}

/// Words with which a service says it could not fetch an image from its link. The services do
/// not document these refusals (api-notes §11: expect a 400 `InvalidParameter…` naming the
/// image), so the message is read, not only the code.
const DOWNLOAD_WORDS: [&str; 13] = [
    "download",
    "fetch",
    "expired",
    "not found",
    "notfound",
    "nosuchkey",
    "nosuchbucket",
    "accessdenied",
    "access denied",
    "unreachable",
    "not reachable",
    "could not be read",
    "timed out",
];

/// Words about the picture itself: a refusal with one of them is not the link's fault, even
/// when it says the image was downloaded.
const PICTURE_WORDS: [&str; 7] = [
    "not an image",
    "face",
    "format",
    "too large",
    "too small",
    "resolution",
    "pixel",
];

/// A refusal that says the image could not be fetched from its address (as opposed to one about
/// the picture itself).
pub fn is_download_refusal(code: &str, message: &str) -> bool {
    let text = format!("{code} {message}").to_ascii_lowercase();
    DOWNLOAD_WORDS.iter().any(|word| text.contains(word))
        && !PICTURE_WORDS.iter().any(|word| text.contains(word))
}

fn starts_with_any(code: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| code.starts_with(p))
}

const RUN_FATAL: [&str; 11] = [
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "InvalidSecurityToken",
    "MissingSecurityToken",
    "Forbidden",
    "InvalidIdentity",
    "InvalidTimeStamp",
    "InvalidAction",
    "InvalidVersion",
    // Local configuration errors.
    "InsecureEndpoint",
];

const OUTCOME_UNKNOWN: [&str; 7] = [
    "InternalError",
    "ServiceUnavailable",
    "Timeout",
    "ConnectionReset",
    "MalformedResponse",
    "BodyReadFailed",
    "RequestFailed",
];

/// Decides on the code, not the status (gateways disagree on statuses); the status only settles
/// codes this table does not know.
pub fn classify(status: Option<u16>, code: &str) -> ErrorClass {
    if code.contains("Throttling") || code == "HTTP429" {
        return ErrorClass::Throttled;
    }
    // An expired STS token: nothing was applied, and renewed credentials fix it (the client
    // renews them before the retry, or makes this run-fatal when they cannot be renewed).
    if code == "SignatureNonceUsed"
        || code == "ConnectFailed"
        || code.starts_with(crate::credentials::EXPIRED_TOKEN)
    {
        return ErrorClass::Transient;
    }
    if starts_with_any(code, &RUN_FATAL) || code == "InvalidEndpoint" || code == "ClientBuild" {
        return ErrorClass::RunFatal;
    }
    if starts_with_any(code, &OUTCOME_UNKNOWN) {
        return ErrorClass::OutcomeUnknown;
    }
    if starts_with_any(code, &["InvalidParameter", "MissingParameter"]) {
        return ErrorClass::RowRejected;
    }
    if let Some(s) = code
        .strip_prefix("HTTP")
        .and_then(|s| s.parse::<u16>().ok())
    {
        return by_status(Some(s));
    }
    by_status(status)
}

fn by_status(status: Option<u16>) -> ErrorClass {
    match status {
        Some(400..=499) => ErrorClass::RowRejected,
        // 3xx means the endpoint is not the API (a redirecting proxy or portal).
        Some(300..=399) => ErrorClass::RunFatal,
        // 5xx, no status, or an error code on a 2xx: nobody can say what happened.
        _ => ErrorClass::OutcomeUnknown,
    }
}

fn hint_for(code: &str) -> Option<&'static str> {
    let hint = match code {
        "SignatureDoesNotMatch" => {
            "check the access key secret; if it is right, compare the server's string-to-sign with ours"
        }
        "IncompleteSignature" => {
            "the request signature is incomplete: a face-enroll bug, please report it"
        }
        "InvalidAccessKeyId.NotFound" => "check the access key id: the service does not know it",
        "InvalidAccessKeyId.Inactive" => "the access key is disabled: enable it or use another key",
        "InvalidTimeStamp.Expired" => {
            "the machine clock is off by more than 15 minutes: synchronise it (NTP) and run again"
        }
        "InvalidTimeStamp.Format" => {
            "the timestamp format was refused: a face-enroll bug, please report it"
        }
        "InvalidIdentity.ServiceDisabled" => {
            "the service is not activated for this account: activate it in the console"
        }
        "InvalidVersion" => {
            "the endpoint does not serve this API version: check --endpoint and --region"
        }
        "SignatureNonceUsed" => "a nonce was reused: retry with a fresh one",
        "CredentialsUnavailable" => {
            "the temporary credentials could not be renewed: fix the source named above and run again (the ledger resumes)"
        }
        "InsecureEndpoint" => "use https://, or http:// only for a sandbox on a loopback address",
        "InvalidEndpoint" => {
            "give --endpoint as a full URL such as https://mts.cn-shanghai.aliyuncs.com/"
        }
        _ => return hint_by_prefix(code),
    };
    Some(hint)
}

fn hint_by_prefix(code: &str) -> Option<&'static str> {
    if code.contains("Throttling") {
        Some("over the account's QPS budget: lower the rate or stop other clients of this account")
    } else if code.starts_with("InvalidAccessKeyId") {
        Some("check the access key id")
    } else if code.starts_with("InvalidSecurityToken") || code.starts_with("MissingSecurityToken") {
        Some("the STS security token is missing, invalid or expired: get a fresh one")
    } else if code.starts_with("Forbidden") {
        Some("the key lacks permission for this action: grant the RAM user access to MTS / ICE")
    } else if code.starts_with("InvalidIdentity") {
        Some("the account cannot use this service: check that it is activated and paid for")
    } else if code.starts_with("InvalidAction") {
        Some("the endpoint does not offer this action: check --endpoint and --region")
    } else if code.starts_with("InvalidTimeStamp") {
        Some("the machine clock is off by more than 15 minutes: synchronise it (NTP) and run again")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn download_refusals_are_told_from_refusals_of_the_picture() {
        use super::is_download_refusal as download;
        for (code, message) in [
            (
                "InvalidParameter.ImageUrl",
                "ImageUrl: the image could not be downloaded: the link has expired",
            ),
            (
                "InvalidParameter.ImageUrl",
                "OSS NoSuchKey: The specified key does not exist.",
            ),
            ("InvalidParameter", "The image url is not reachable."),
            ("InvalidImage.Download", "Failed to fetch the image."),
            (
                "InvalidParameter.ImageUrl",
                "AccessDenied: Request has expired.",
            ),
        ] {
            assert!(download(code, message), "{code}: {message}");
        }
        for (code, message) in [
            (
                "InvalidParameter.ImageUrl",
                "ImageUrl: exactly one frontal face required.",
            ),
            (
                "InvalidParameter.ImageUrl",
                "ImageUrl: the downloaded file is not an image: its first bytes are neither",
            ),
            ("InvalidImage.NoFace", "No face was found."),
            ("InvalidParameter.PersonId", "PersonId is too long."),
        ] {
            assert!(!download(code, message), "{code}: {message}");
        }
        let signed = ApiError::new(
            Some(400),
            "InvalidParameter.ImageUrl",
            "the image could not be downloaded: the link has expired",
        );
        assert!(!signed.refused_signed_link(), "a link the user signed");
        assert!(signed.clone().with_signed_link().refused_signed_link());
        let throttled =
            ApiError::new(Some(503), "Throttling.User", "download too fast").with_signed_link();
        assert!(!throttled.refused_signed_link(), "not a refusal");
    }

    use super::ErrorClass::*;
    use super::*;

    #[test]
    fn internal_error_leaves_the_outcome_unknown_whatever_the_status() {
        assert_eq!(classify(Some(500), "InternalError"), OutcomeUnknown);
        assert_eq!(classify(Some(400), "InternalError"), OutcomeUnknown);
    }

    #[test]
    fn service_unavailable_leaves_the_outcome_unknown() {
        assert_eq!(classify(Some(503), "ServiceUnavailable"), OutcomeUnknown);
    }

    #[test]
    fn every_throttling_code_is_throttled_under_any_status() {
        for code in [
            "Throttling",
            "Throttling.User",
            "Throttling.Api",
            "Throttling.Concurrent",
        ] {
            for status in [400, 403, 429, 503] {
                assert_eq!(classify(Some(status), code), Throttled, "{code} {status}");
            }
        }
    }

    #[test]
    fn signature_nonce_used_is_transient() {
        assert_eq!(classify(Some(400), "SignatureNonceUsed"), Transient);
    }

    #[test]
    fn invalid_and_missing_parameters_reject_the_row() {
        for code in [
            "InvalidParameter",
            "InvalidParameter.ImageUrl",
            "MissingParameter",
            "MissingParameter.X",
        ] {
            assert_eq!(classify(Some(400), code), RowRejected, "{code}");
        }
        assert_eq!(
            classify(Some(500), "InvalidParameter"),
            RowRejected,
            "code beats status"
        );
    }

    #[test]
    fn other_4xx_codes_reject_the_row() {
        assert_eq!(classify(Some(400), "InvalidImage.NoFace"), RowRejected);
        assert_eq!(classify(Some(404), "Face.NotFound"), RowRejected);
    }

    #[test]
    fn signature_errors_stop_the_run() {
        assert_eq!(classify(Some(400), "SignatureDoesNotMatch"), RunFatal);
        assert_eq!(classify(Some(400), "IncompleteSignature"), RunFatal);
    }

    #[test]
    fn bad_access_keys_and_tokens_stop_the_run() {
        for code in [
            "InvalidAccessKeyId.NotFound",
            "InvalidAccessKeyId.Inactive",
            "InvalidSecurityToken.MismatchWithAccessKey",
            "InvalidSecurityToken.Mismatch",
            "InvalidSecurityToken.Malformed",
        ] {
            assert_eq!(classify(Some(404), code), RunFatal, "{code}");
            assert_eq!(classify(Some(400), code), RunFatal, "{code}");
        }
    }

    #[test]
    fn an_expired_security_token_is_transient_so_it_is_retried_with_renewed_credentials() {
        for code in [
            "InvalidSecurityToken.Expired",
            "InvalidSecurityToken.ExpiredToken",
        ] {
            assert_eq!(classify(Some(400), code), Transient, "{code}");
            assert_eq!(classify(Some(403), code), Transient, "{code}");
        }
    }

    #[test]
    fn missing_permissions_stop_the_run() {
        for code in [
            "Forbidden",
            "Forbidden.RAM",
            "Forbidden.NoPermission",
            "InvalidIdentity.ServiceDisabled",
        ] {
            assert_eq!(classify(Some(403), code), RunFatal, "{code}");
        }
    }

    #[test]
    fn clock_skew_and_timestamp_format_stop_the_run() {
        assert_eq!(classify(Some(400), "InvalidTimeStamp.Expired"), RunFatal);
        assert_eq!(classify(Some(400), "InvalidTimeStamp.Format"), RunFatal);
    }

    #[test]
    fn unknown_action_or_version_stops_the_run() {
        assert_eq!(classify(Some(404), "InvalidAction.NotFound"), RunFatal);
        assert_eq!(classify(Some(400), "InvalidVersion"), RunFatal);
    }

    #[test]
    fn local_transport_codes_are_classified_by_whether_the_request_left() {
        assert_eq!(classify(None, "ConnectFailed"), Transient);
        assert_eq!(classify(None, "Timeout"), OutcomeUnknown);
        assert_eq!(classify(None, "ConnectionReset"), OutcomeUnknown);
        assert_eq!(classify(Some(200), "MalformedResponse"), OutcomeUnknown);
    }

    #[test]
    fn bare_http_codes_follow_their_status() {
        assert_eq!(classify(Some(502), "HTTP502"), OutcomeUnknown);
        assert_eq!(classify(Some(404), "HTTP404"), RowRejected);
        assert_eq!(classify(Some(429), "HTTP429"), Throttled);
        assert_eq!(classify(Some(302), "HTTP302"), RunFatal);
    }

    #[test]
    fn unknown_codes_fall_back_on_the_status() {
        assert_eq!(classify(Some(502), "SomethingNew"), OutcomeUnknown);
        assert_eq!(classify(Some(409), "SomethingNew"), RowRejected);
        assert_eq!(classify(None, "SomethingNew"), OutcomeUnknown);
    }

    #[test]
    fn local_configuration_errors_stop_the_run() {
        assert_eq!(ApiError::config("InsecureEndpoint", "x").class(), RunFatal);
        assert_eq!(classify(None, "InvalidEndpoint"), RunFatal);
    }

    #[test]
    fn display_reads_code_message_status_and_request_id() {
        let e = ApiError::new(Some(400), "InvalidParameter", "PersonId is too long")
            .with_request_id(Some("R-1".into()));
        assert_eq!(
            e.to_string(),
            "InvalidParameter: PersonId is too long (HTTP 400, RequestId R-1)"
        );
    }

    #[test]
    fn signature_mismatch_exposes_and_displays_the_server_string_to_sign() {
        let msg = "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&A%3D1";
        let e = ApiError::new(Some(400), "SignatureDoesNotMatch", msg);
        assert_eq!(e.server_string_to_sign(), Some("POST&%2F&A%3D1"));
        assert_eq!(
            e.to_string(),
            "SignatureDoesNotMatch: Specified signature is not matched with our calculation. (HTTP 400); \
             server string-to-sign: POST&%2F&A%3D1"
        );
        assert!(e.hint().unwrap().contains("access key secret"));
    }

    #[test]
    fn signature_mismatch_without_a_string_to_sign_shows_the_message() {
        let e = ApiError::new(Some(400), "SignatureDoesNotMatch", "no");
        assert_eq!(e.server_string_to_sign(), None);
        assert_eq!(e.to_string(), "SignatureDoesNotMatch: no (HTTP 400)");
    }

    #[test]
    fn clock_skew_hint_says_the_clock_is_off() {
        let e = ApiError::new(Some(400), "InvalidTimeStamp.Expired", "x");
        assert!(
            e.hint()
                .unwrap()
                .contains("clock is off by more than 15 minutes")
        );
    }

    #[test]
    fn scrub_removes_a_token_from_message_and_string_to_sign() {
        let e = ApiError::new(
            Some(400),
            "SignatureDoesNotMatch",
            "bad. server string to sign is:POST&SecurityToken%3Dtok",
        )
        .scrub("tok");
        assert!(!e.to_string().contains("tok"), "{e}");
        assert_eq!(
            e.server_string_to_sign(),
            Some("POST&SecurityToken%3D(redacted)")
        );
    }
}
