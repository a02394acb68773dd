//! Credentials and region, found the way the Alibaba Cloud tooling finds them (api-notes §5).
//!
//! Order: an explicit `--profile`; else the `ALIBABA_CLOUD_ACCESS_KEY_*` environment variables; else
//! the CLI profile file. The environment is injected (`env`) so tests never touch the process's own.

use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

/// Region used when neither a flag, the environment nor the profile names one.
pub const DEFAULT_REGION: &str = "cn-shanghai";

const ENV_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
const ENV_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
const ENV_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
const ENV_PROFILE: &str = "ALIBABA_CLOUD_PROFILE";
const ENV_CONFIG_FILE: &str = "ALIBABA_CLOUD_CONFIG_FILE";
const ENV_REGION: &str = "ALIBABA_CLOUD_REGION_ID";

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for signing. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// An access key, with an STS token when the key is temporary.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Option<Secret>,
}

/// Credentials, the region to use, and where both came from (for the user, never secret).
#[derive(Clone, Debug)]
pub struct Resolved {
    pub credentials: Credentials,
    pub region: String,
    /// e.g. `environment` or `profile 'prod' in /root/.aliyun/config.json`.
    pub source: String,
}

/// Why no usable credentials were found. Messages name the file, the profile and what to do;
/// they never contain a secret.
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
         or create a profile in {path} with `aliyun configure`"
    )]
    NotFound { path: String },
    #[error(
        "cannot locate the CLI config file: HOME is not set; set ALIBABA_CLOUD_CONFIG_FILE or the \
         ALIBABA_CLOUD_ACCESS_KEY_* environment variables"
    )]
    NoHome,
    #[error(
        "profile '{profile}' was asked for, but the CLI config file {path} does not exist; create it with `aliyun configure --profile {profile}`"
    )]
    MissingFile { profile: String, path: String },
    #[error("cannot read the CLI config file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "the CLI config file {path} is not valid: {reason}; fix it or recreate it with `aliyun configure`"
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
        "profile '{profile}' uses mode {mode}, which face-enroll does not support; use an AK or \
         StsToken profile or the ALIBABA_CLOUD_ACCESS_KEY_* environment variables"
    )]
    UnsupportedMode { profile: String, mode: String },
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
}

/// Reads the real process environment (for `resolve` outside tests).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Finds credentials and region; see the module doc for the order.
pub fn resolve(
    profile_flag: Option<&str>,
    region_flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, CredentialsError> {
    let get = |name: &str| env(name).filter(|v| !v.is_empty());
    let (credentials, profile_region, source) = match profile_flag {
        Some(name) => from_profile_file(Some(name), &get)?,
        None => match from_environment(&get)? {
            Some(credentials) => (credentials, None, "environment".to_string()),
            None => from_profile_file(None, &get)?,
        },
    };
    let region = pick_region(region_flag, get(ENV_REGION), profile_region)?;
    Ok(Resolved {
        credentials,
        region,
        source,
    })
}

fn from_environment(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, CredentialsError> {
    match (get(ENV_KEY_ID), get(ENV_KEY_SECRET)) {
        (Some(id), Some(secret)) => Ok(Some(Credentials {
            access_key_id: id,
            access_key_secret: Secret(secret),
            security_token: get(ENV_TOKEN).map(Secret),
        })),
        (Some(_), None) => Err(CredentialsError::PartialEnvironment {
            set: ENV_KEY_ID,
            missing: ENV_KEY_SECRET,
        }),
        (None, Some(_)) => Err(CredentialsError::PartialEnvironment {
            set: ENV_KEY_SECRET,
            missing: ENV_KEY_ID,
        }),
        (None, None) => Ok(None),
    }
}

fn pick_region(
    flag: Option<&str>,
    env: Option<String>,
    profile: Option<String>,
) -> Result<String, CredentialsError> {
    let (region, from) = if let Some(r) = flag.filter(|r| !r.is_empty()) {
        (r.to_string(), "--region")
    } else if let Some(r) = env {
        (r, ENV_REGION)
    } else if let Some(r) = profile {
        (r, "the profile's region_id")
    } else {
        (DEFAULT_REGION.to_string(), "the default")
    };
    // The region becomes part of a host name: refuse anything that could change the URL.
    let valid = region
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(region)
    } else {
        Err(CredentialsError::InvalidRegion { region, from })
    }
}

fn config_path(get: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, CredentialsError> {
    if let Some(path) = get(ENV_CONFIG_FILE) {
        return Ok(PathBuf::from(path));
    }
    let home = get("HOME").ok_or(CredentialsError::NoHome)?;
    Ok(PathBuf::from(home).join(".aliyun").join("config.json"))
}

type FromProfile = (Credentials, Option<String>, String);

fn from_profile_file(
    flag: Option<&str>,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<FromProfile, CredentialsError> {
    let path = config_path(get)?;
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(match flag {
                Some(profile) => CredentialsError::MissingFile {
                    profile: profile.into(),
                    path: shown,
                },
                None => CredentialsError::NotFound { path: shown },
            });
        }
        Err(e) => {
            return Err(CredentialsError::Unreadable {
                path: shown,
                reason: e.to_string(),
            });
        }
    };
    // Parse to a Value first: serde's typed errors quote the offending value, which may be a secret.
    let doc: Value = serde_json::from_str(&text).map_err(|e| CredentialsError::Invalid {
        path: shown.clone(),
        reason: format!("not JSON ({e})"),
    })?;
    let wanted = match flag.map(str::to_string).or_else(|| get(ENV_PROFILE)) {
        Some(name) => name,
        None => match doc
            .get("current")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(name) => name.to_string(),
            None => return Err(CredentialsError::NoProfileSelected { path: shown }),
        },
    };
    let profile = find_profile(&doc, &wanted, &shown)?;
    let (credentials, region) = read_profile(profile, &wanted, &shown)?;
    let source = format!("profile '{wanted}' in {shown}");
    Ok((credentials, region, source))
}

fn find_profile<'a>(
    doc: &'a Value,
    wanted: &str,
    path: &str,
) -> Result<&'a Value, CredentialsError> {
    let profiles = match doc.get("profiles") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(list)) => list.as_slice(),
        Some(_) => {
            return Err(CredentialsError::Invalid {
                path: path.into(),
                reason: "\"profiles\" is not a list".into(),
            });
        }
    };
    let name_of = |p: &'a Value| p.get("name").and_then(Value::as_str);
    if let Some(found) = profiles.iter().find(|p| name_of(p) == Some(wanted)) {
        return Ok(found);
    }
    let names: Vec<&str> = profiles.iter().filter_map(name_of).collect();
    let available = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };
    Err(CredentialsError::ProfileNotFound {
        profile: wanted.into(),
        path: path.into(),
        available,
    })
}

fn read_profile(
    profile: &Value,
    name: &str,
    path: &str,
) -> Result<(Credentials, Option<String>), CredentialsError> {
    let text = |field: &str| {
        profile
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let incomplete = |field: &'static str| CredentialsError::IncompleteProfile {
        profile: name.into(),
        path: path.into(),
        field,
    };
    // The CLI always writes a mode; a hand-written profile without one is taken as AK.
    let mode = text("mode").unwrap_or_else(|| "AK".to_string());
    let sts = if mode.eq_ignore_ascii_case("AK") {
        false
    } else if mode.eq_ignore_ascii_case("StsToken") {
        true
    } else {
        return Err(CredentialsError::UnsupportedMode {
            profile: name.into(),
            mode,
        });
    };
    let access_key_id = text("access_key_id").ok_or_else(|| incomplete("access_key_id"))?;
    let secret = text("access_key_secret").ok_or_else(|| incomplete("access_key_secret"))?;
    let security_token = if sts {
        Some(Secret(
            text("sts_token").ok_or_else(|| incomplete("sts_token"))?,
        ))
    } else {
        None
    };
    let credentials = Credentials {
        access_key_id,
        access_key_secret: Secret(secret),
        security_token,
    };
    Ok((credentials, text("region_id")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    const CANARY: &str = "S3cr3t-Canary-credentials-9f2c";

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    fn config_file(body: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(body.as_bytes()).unwrap();
        file
    }

    fn sample_config() -> String {
        format!(
            r#"{{"current": "default", "profiles": [
              {{"name": "default", "mode": "AK", "access_key_id": "id-default",
                "access_key_secret": "{CANARY}", "region_id": "cn-beijing"}},
              {{"name": "prod", "mode": "StsToken", "access_key_id": "id-prod",
                "access_key_secret": "{CANARY}", "sts_token": "tok-{CANARY}", "region_id": ""}},
              {{"name": "role", "mode": "RamRoleArn", "access_key_id": "id-role",
                "access_key_secret": "{CANARY}", "ram_role_arn": "acs:ram::1:role/x"}},
              {{"name": "half", "mode": "AK", "access_key_id": "id-half"}}
            ]}}"#
        )
    }

    fn path_of(file: &tempfile::NamedTempFile) -> String {
        file.path().display().to_string()
    }

    #[test]
    fn environment_keys_win_when_no_profile_flag_is_given() {
        let file = config_file(&sample_config());
        let env = env_of(&[
            (ENV_KEY_ID, "env-id"),
            (ENV_KEY_SECRET, CANARY),
            (ENV_CONFIG_FILE, &path_of(&file)),
        ]);
        let r = resolve(None, None, &env).unwrap();
        assert_eq!(r.credentials.access_key_id, "env-id");
        assert_eq!(r.credentials.access_key_secret.expose(), CANARY);
        assert!(r.credentials.security_token.is_none());
        assert_eq!(r.source, "environment");
        assert_eq!(r.region, DEFAULT_REGION);
    }

    #[test]
    fn environment_security_token_makes_sts_credentials() {
        let env = env_of(&[
            (ENV_KEY_ID, "env-id"),
            (ENV_KEY_SECRET, CANARY),
            (ENV_TOKEN, "tok"),
        ]);
        let r = resolve(None, None, &env).unwrap();
        assert_eq!(r.credentials.security_token.unwrap().expose(), "tok");
    }

    #[test]
    fn only_the_key_id_in_the_environment_is_an_error_naming_the_missing_secret() {
        let env = env_of(&[(ENV_KEY_ID, "env-id")]);
        let err = resolve(None, None, &env).unwrap_err().to_string();
        assert!(
            err.contains(ENV_KEY_SECRET) && err.contains("is not"),
            "{err}"
        );
    }

    #[test]
    fn only_the_secret_in_the_environment_is_an_error_naming_the_missing_id() {
        let env = env_of(&[(ENV_KEY_SECRET, CANARY)]);
        let err = resolve(None, None, &env).unwrap_err().to_string();
        assert!(err.contains(&format!("{ENV_KEY_ID} is not")), "{err}");
        assert!(!err.contains(CANARY));
    }

    #[test]
    fn profile_flag_beats_environment_keys() {
        let file = config_file(&sample_config());
        let env = env_of(&[
            (ENV_KEY_ID, "env-id"),
            (ENV_KEY_SECRET, "env-secret"),
            (ENV_CONFIG_FILE, &path_of(&file)),
        ]);
        let r = resolve(Some("default"), None, &env).unwrap();
        assert_eq!(r.credentials.access_key_id, "id-default");
        assert_eq!(r.source, format!("profile 'default' in {}", path_of(&file)));
    }

    #[test]
    fn current_profile_is_used_when_nothing_else_selects_one() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let r = resolve(None, None, &env).unwrap();
        assert_eq!(r.credentials.access_key_id, "id-default");
        assert_eq!(r.region, "cn-beijing");
    }

    #[test]
    fn profile_environment_variable_beats_current() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file)), (ENV_PROFILE, "prod")]);
        let r = resolve(None, None, &env).unwrap();
        assert_eq!(r.credentials.access_key_id, "id-prod");
        assert_eq!(
            r.credentials.security_token.unwrap().expose(),
            format!("tok-{CANARY}")
        );
        assert_eq!(
            r.region, DEFAULT_REGION,
            "an empty region_id falls through to the default"
        );
    }

    #[test]
    fn profile_file_is_found_under_home_by_default() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aliyun")).unwrap();
        std::fs::write(home.path().join(".aliyun/config.json"), sample_config()).unwrap();
        let env = env_of(&[("HOME", home.path().to_str().unwrap())]);
        let r = resolve(None, None, &env).unwrap();
        assert!(r.source.ends_with(".aliyun/config.json"), "{}", r.source);
    }

    #[test]
    fn region_flag_beats_environment_which_beats_profile() {
        let file = config_file(&sample_config());
        let path = path_of(&file);
        let env = env_of(&[(ENV_CONFIG_FILE, &path), (ENV_REGION, "cn-hangzhou")]);
        assert_eq!(
            resolve(None, Some("cn-shenzhen"), &env).unwrap().region,
            "cn-shenzhen"
        );
        assert_eq!(resolve(None, None, &env).unwrap().region, "cn-hangzhou");
    }

    #[test]
    fn region_that_could_change_the_url_is_refused() {
        let env = env_of(&[(ENV_KEY_ID, "id"), (ENV_KEY_SECRET, CANARY)]);
        let err = resolve(None, Some("evil.com/x"), &env).unwrap_err();
        assert!(
            matches!(err, CredentialsError::InvalidRegion { .. }),
            "{err}"
        );
    }

    #[test]
    fn ram_role_profile_is_refused_with_the_documented_message() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let err = resolve(Some("role"), None, &env).unwrap_err().to_string();
        assert_eq!(
            err,
            "profile 'role' uses mode RamRoleArn, which face-enroll does not support; use an AK or \
             StsToken profile or the ALIBABA_CLOUD_ACCESS_KEY_* environment variables"
        );
    }

    #[test]
    fn profile_without_a_secret_names_the_missing_field_and_the_file() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let err = resolve(Some("half"), None, &env).unwrap_err().to_string();
        assert!(
            err.contains("access_key_secret") && err.contains(&path_of(&file)),
            "{err}"
        );
    }

    #[test]
    fn unknown_profile_lists_the_profiles_that_exist() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let err = resolve(Some("staging"), None, &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'staging'") && err.contains("default, prod, role, half"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_without_environment_keys_says_how_to_provide_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.json").display().to_string();
        let env = env_of(&[(ENV_CONFIG_FILE, &path)]);
        let err = resolve(None, None, &env).unwrap_err().to_string();
        assert!(err.contains(&path) && err.contains(ENV_KEY_ID), "{err}");
    }

    #[test]
    fn missing_file_with_a_profile_flag_names_the_profile_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.json").display().to_string();
        let env = env_of(&[(ENV_CONFIG_FILE, &path)]);
        let err = resolve(Some("prod"), None, &env).unwrap_err().to_string();
        assert!(err.contains(&path) && err.contains("'prod'"), "{err}");
    }

    #[test]
    fn invalid_json_names_the_file_and_never_quotes_its_content() {
        let file = config_file(&format!(
            "{{\"profiles\": [{{\"access_key_secret\": \"{CANARY}\""
        ));
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let err = resolve(None, None, &env).unwrap_err().to_string();
        assert!(
            err.contains(&path_of(&file)) && err.contains("not JSON"),
            "{err}"
        );
        assert!(!err.contains(CANARY), "{err}");
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display().to_string(); // a directory cannot be read as a file
        let env = env_of(&[(ENV_CONFIG_FILE, &path)]);
        let err = resolve(None, None, &env).unwrap_err();
        assert!(matches!(err, CredentialsError::Unreadable { .. }), "{err}");
        assert!(err.to_string().contains(&path));
    }

    #[test]
    fn config_without_current_asks_for_a_profile() {
        let file = config_file(r#"{"profiles": []}"#);
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let err = resolve(None, None, &env).unwrap_err();
        assert!(
            matches!(err, CredentialsError::NoProfileSelected { .. }),
            "{err}"
        );
    }

    #[test]
    fn no_home_and_no_config_override_is_an_error() {
        let err = resolve(None, None, &env_of(&[])).unwrap_err();
        assert!(matches!(err, CredentialsError::NoHome), "{err}");
    }

    #[test]
    fn empty_environment_values_count_as_unset() {
        let file = config_file(&sample_config());
        let env = env_of(&[
            (ENV_KEY_ID, ""),
            (ENV_KEY_SECRET, ""),
            (ENV_CONFIG_FILE, &path_of(&file)),
        ]);
        assert_eq!(
            resolve(None, None, &env).unwrap().credentials.access_key_id,
            "id-default"
        );
    }

    #[test]
    fn debug_output_of_credentials_never_shows_secrets() {
        let file = config_file(&sample_config());
        let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
        let r = resolve(Some("prod"), None, &env).unwrap();
        let shown = format!(
            "{r:?} {:?} {}",
            r.credentials, r.credentials.access_key_secret
        );
        assert!(!shown.contains(CANARY), "{shown}");
        assert!(shown.contains("(redacted)") && shown.contains("id-prod"));
    }
}
