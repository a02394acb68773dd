//! Why credentials could not be found or fetched, each message naming the file, the profile or
//! the service and what to do — and never a secret.

/// Why no usable credentials were found. Messages name the file, the profile or the service and
/// what to do; they never contain a secret (nor an OIDC token, nor a command's output).
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "{set} is set but {missing} is not; set both (or neither, to use a profile from the CLI config file)"
    )]
    PartialEnvironment {
        set: &'static str,
        missing: &'static str,
    },
    #[error(
        "no credentials found: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, \
         or create a profile in {path} with `aliyun configure`, or run where a RAM role is provided \
         (ECS instance role, ACK RRSA){tried}"
    )]
    NotFound { path: String, tried: String },
    #[error(
        "cannot locate the CLI config file: HOME is not set; set ALIBABA_CLOUD_CONFIG_FILE or the \
         ALIBABA_CLOUD_ACCESS_KEY_* environment variables"
    )]
    NoHome,
    #[error(
        "profile '{profile}' was asked for, but the CLI config file {path} does not exist; create it with `aliyun configure --profile {profile}`"
    )]
    MissingFile { profile: String, path: String },
    #[error("cannot read the credentials file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "the credentials file {path} is not valid: {reason}; fix it or recreate it with `aliyun configure`"
    )]
    Invalid { path: String, reason: String },
    #[error(
        "no profile is selected in {path}: it has no \"current\"; pass --profile or set ALIBABA_CLOUD_PROFILE"
    )]
    NoProfileSelected { path: String },
    #[error(
        "profile '{profile}' is not in {path} (profiles there: {available}); pass another --profile or run `aliyun configure --profile {profile}`"
    )]
    ProfileNotFound {
        profile: String,
        path: String,
        available: String,
    },
    #[error(
        "profile '{profile}' in {path} uses mode {mode}, which face-enroll does not support; use one \
         of {supported}, or the ALIBABA_CLOUD_ACCESS_KEY_* environment variables"
    )]
    UnsupportedMode {
        profile: String,
        path: String,
        mode: String,
        supported: &'static str,
    },
    #[error(
        "profile '{profile}' in {path} has no {field}; run `aliyun configure --profile {profile}` or fix the file"
    )]
    IncompleteProfile {
        profile: String,
        path: String,
        field: &'static str,
    },
    #[error("region '{region}' (from {from}) is not a region id like cn-shanghai")]
    InvalidRegion { region: String, from: &'static str },
    #[error(
        "the OIDC token file {path} {reason}; check ALIBABA_CLOUD_OIDC_TOKEN_FILE (or oidc_token_file) \
         and that the pod's RRSA token is mounted"
    )]
    OidcTokenFile { path: String, reason: String },
    #[error(
        "STS refused {action} for role {role_arn}: {code}: {message}; check the role ARN, that the role \
         exists and that it trusts the caller"
    )]
    StsRefused {
        action: &'static str,
        role_arn: String,
        code: String,
        message: String,
    },
    #[error("cannot reach {service} at {url}: {reason}")]
    Unreachable {
        service: &'static str,
        url: String,
        reason: String,
    },
    #[error("{service} at {url} gave no usable credentials: {reason}")]
    Malformed {
        service: &'static str,
        url: String,
        reason: String,
    },
    #[error("the ECS metadata service at {url} gave no credentials: {reason}")]
    Metadata { url: String, reason: String },
    #[error(
        "the External credentials command '{command}' {reason}; fix process_command in the profile"
    )]
    External { command: String, reason: String },
    #[error("{var}='{url}' cannot be used: {reason}")]
    InvalidOverride {
        var: &'static str,
        url: String,
        reason: String,
    },
}

impl CredentialsError {
    /// A flag or value the user typed (exit 2), rather than credentials that do not work (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(self, CredentialsError::InvalidRegion { .. })
    }
}

/// What was wrong with an answer that should have held credentials, in words that never quote
/// it (it may hold secrets).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Malformed(pub String);

impl From<String> for Malformed {
    fn from(reason: String) -> Malformed {
        Malformed(reason)
    }
}
