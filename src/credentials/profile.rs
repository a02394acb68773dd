//! The two credentials files: the CLI's `~/.aliyun/config.json` (profiles with a `mode`) and the
//! INI file `~/.alibabacloud/credentials` (sections with a `type`), read into a [`Spec`].

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::remote::Role;
use super::{
    Credentials, CredentialsError, ENV_CONFIG_FILE, ENV_CREDENTIALS_FILE, ENV_PROFILE, Env, Secret,
    Spec,
};

/// Profiles that name each other (`source_profile`) at most this deep.
const MAX_CHAIN: usize = 5;
pub(crate) const DEFAULT_DURATION: u32 = 3600;
const MIN_DURATION: u32 = 900;

/// The modes `read_profile` understands, for messages.
const MODES: &str =
    "AK, StsToken, RamRoleArn, EcsRamRole, OIDC, ChainableRamRoleArn, CredentialsURI, External";

/// The session name when the configuration gives none.
fn default_session_name() -> String {
    format!("face-enroll-{}", crate::clock::now_utc().unix_timestamp())
}

pub(super) fn config_path(env: &Env) -> Result<PathBuf, CredentialsError> {
    if let Some(path) = env.get(ENV_CONFIG_FILE) {
        return Ok(PathBuf::from(path));
    }
    let home = env.home().ok_or(CredentialsError::NoHome)?;
    Ok(home.join(".aliyun").join("config.json"))
}

pub(super) type FromProfile = (Spec, Option<String>, String);

/// The CLI profile file: `None` when it does not exist and no profile was asked for by flag.
pub(super) fn from_profile_file(
    flag: Option<&str>,
    env: &Env,
) -> Result<Option<FromProfile>, CredentialsError> {
    let path = match config_path(env) {
        Ok(path) => path,
        Err(_) if flag.is_none() => return Ok(None),
        Err(error) => return Err(error),
    };
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match flag {
                Some(profile) => Err(CredentialsError::MissingFile {
                    profile: profile.into(),
                    path: shown,
                }),
                None => Ok(None),
            };
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
    let wanted = match flag.map(str::to_string).or_else(|| env.get(ENV_PROFILE)) {
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
    let (spec, region) = read_profile(&doc, &wanted, &shown)?;
    let source = format!("profile '{wanted}' in {shown}");
    Ok(Some((spec, region, source)))
}

/// The INI credentials file: `None` when it does not exist or lacks the section.
pub(super) fn from_ini_file(env: &Env) -> Result<Option<(Spec, String)>, CredentialsError> {
    let path = match env.get(ENV_CREDENTIALS_FILE) {
        Some(path) => PathBuf::from(path),
        None => match env.home() {
            Some(home) => home.join(".alibabacloud").join("credentials"),
            None => return Ok(None),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CredentialsError::Unreadable {
                path: path.display().to_string(),
                reason: e.to_string(),
            });
        }
    };
    let section = env
        .get(ENV_PROFILE)
        .unwrap_or_else(|| "default".to_string());
    let Some(pairs) = ini_section(&text, &section) else {
        return Ok(None);
    };
    let spec = ini_spec(&pairs, &section, &path)?;
    Ok(Some((spec, format!("[{section}] in {}", path.display()))))
}

/// A CLI profile from `doc` (a parsed config.json) as a spec and its `region_id`.
pub(crate) fn read_profile(
    doc: &Value,
    name: &str,
    path: &str,
) -> Result<(Spec, Option<String>), CredentialsError> {
    let profile = find_profile(doc, name, path)?;
    let spec = profile_spec(doc, profile, name, path, 0)?;
    Ok((spec, text(profile, "region_id")))
}

fn text(profile: &Value, field: &str) -> Option<String> {
    profile
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub(crate) fn find_profile<'a>(
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

/// What every mode reads the same way.
struct Fields<'a> {
    profile: &'a Value,
    name: &'a str,
    path: &'a str,
}

impl Fields<'_> {
    fn text(&self, field: &str) -> Option<String> {
        text(self.profile, field)
    }

    fn required(&self, field: &'static str) -> Result<String, CredentialsError> {
        self.text(field)
            .ok_or_else(|| CredentialsError::IncompleteProfile {
                profile: self.name.into(),
                path: self.path.into(),
                field,
            })
    }

    fn access_key(&self) -> Result<Credentials, CredentialsError> {
        Ok(Credentials {
            access_key_id: self.required("access_key_id")?,
            access_key_secret: Secret::new(self.required("access_key_secret")?),
            security_token: None,
        })
    }

    /// The role of `RamRoleArn`, `ChainableRamRoleArn` and `OIDC` profiles.
    fn role(&self) -> Result<Role, CredentialsError> {
        let duration = match self.profile.get("expired_seconds").and_then(Value::as_u64) {
            None | Some(0) => DEFAULT_DURATION,
            Some(seconds) => duration_at_least_900(seconds, self.name, self.path)?,
        };
        Ok(Role {
            role_arn: self.required("ram_role_arn")?,
            session_name: self
                .text("ram_session_name")
                .unwrap_or_else(default_session_name),
            duration_seconds: duration,
            policy: self.text("policy"),
        })
    }

    fn assume_role(&self, source: Spec) -> Result<Spec, CredentialsError> {
        Ok(Spec::AssumeRole {
            source: Box::new(source),
            role: self.role()?,
            external_id: self.text("external_id"),
            sts_region: self.text("sts_region"),
            vpc: self.profile.get("enable_vpc").and_then(Value::as_bool),
        })
    }
}

fn profile_spec(
    doc: &Value,
    profile: &Value,
    name: &str,
    path: &str,
    depth: usize,
) -> Result<Spec, CredentialsError> {
    let f = Fields {
        profile,
        name,
        path,
    };
    // The CLI always writes a mode; a hand-written profile without one is taken as AK.
    let mode = f.text("mode").unwrap_or_else(|| "AK".to_string());
    let spec = match mode.to_ascii_lowercase().as_str() {
        "ak" => Spec::Static(f.access_key()?),
        "ststoken" => Spec::Static(Credentials {
            security_token: Some(Secret::new(f.required("sts_token")?)),
            ..f.access_key()?
        }),
        "ramrolearn" => f.assume_role(Spec::Static(f.access_key()?))?,
        "chainableramrolearn" => {
            let source_name = f.required("source_profile")?;
            if depth >= MAX_CHAIN || source_name == name {
                return Err(CredentialsError::Invalid {
                    path: path.into(),
                    reason: format!(
                        "profile '{name}' names source_profile '{source_name}', which makes a loop or a chain deeper than {MAX_CHAIN}"
                    ),
                });
            }
            let source = find_profile(doc, &source_name, path)?;
            f.assume_role(profile_spec(doc, source, &source_name, path, depth + 1)?)?
        }
        "ecsramrole" => Spec::Metadata {
            role_name: f.text("ram_role_name"),
        },
        "oidc" => Spec::Oidc {
            role: f.role()?,
            provider_arn: f.required("oidc_provider_arn")?,
            token_file: f.required("oidc_token_file")?,
            sts_region: f.text("sts_region"),
            vpc: profile.get("enable_vpc").and_then(Value::as_bool),
        },
        "credentialsuri" => Spec::Uri(f.required("credentials_uri")?),
        "external" => Spec::External {
            command: f.required("process_command")?,
            profile: name.to_string(),
        },
        _ => {
            return Err(CredentialsError::UnsupportedMode {
                profile: name.into(),
                path: path.into(),
                mode,
                supported: MODES,
            });
        }
    };
    Ok(spec)
}

fn duration_at_least_900(seconds: u64, name: &str, path: &str) -> Result<u32, CredentialsError> {
    match u32::try_from(seconds) {
        Ok(s) if s >= MIN_DURATION => Ok(s),
        _ => Err(CredentialsError::Invalid {
            path: path.into(),
            reason: format!(
                "profile '{name}' asks for credentials lasting {seconds} s; STS needs 900 to 43200"
            ),
        }),
    }
}

/// One `[section]` of the INI credentials file: its `key = value` pairs.
pub(crate) fn ini_section(text: &str, wanted: &str) -> Option<Vec<(String, String)>> {
    let mut current: Option<&str> = None;
    let mut found: Option<Vec<(String, String)>> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim());
            if current == Some(wanted) {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if current == Some(wanted)
            && let (Some(pairs), Some((key, value))) = (found.as_mut(), line.split_once('='))
        {
            pairs.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    found
}

/// A section of the INI file as a spec (`type` = access_key, ecs_ram_role, ram_role_arn,
/// oidc_role_arn).
pub(crate) fn ini_spec(
    pairs: &[(String, String)],
    section: &str,
    path: &Path,
) -> Result<Spec, CredentialsError> {
    let shown = path.display().to_string();
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let field = |key: &'static str| {
        get(key).ok_or_else(|| CredentialsError::IncompleteProfile {
            profile: section.into(),
            path: shown.clone(),
            field: key,
        })
    };
    let access_key = || -> Result<Credentials, CredentialsError> {
        Ok(Credentials {
            access_key_id: field("access_key_id")?,
            access_key_secret: Secret::new(field("access_key_secret")?),
            security_token: None,
        })
    };
    let role = |arn: String| Role {
        role_arn: arn,
        session_name: get("role_session_name").unwrap_or_else(default_session_name),
        duration_seconds: DEFAULT_DURATION,
        policy: get("policy"),
    };
    let kind = field("type")?;
    Ok(match kind.as_str() {
        "access_key" => Spec::Static(access_key()?),
        "ecs_ram_role" => Spec::Metadata {
            role_name: get("role_name"),
        },
        "ram_role_arn" => Spec::AssumeRole {
            source: Box::new(Spec::Static(access_key()?)),
            role: role(field("role_arn")?),
            external_id: get("external_id"),
            sts_region: None,
            vpc: None,
        },
        "oidc_role_arn" => Spec::Oidc {
            role: role(field("role_arn")?),
            provider_arn: field("oidc_provider_arn")?,
            token_file: field("oidc_token_file_path")?,
            sts_region: None,
            vpc: None,
        },
        _ => {
            return Err(CredentialsError::UnsupportedMode {
                profile: section.into(),
                path: shown,
                mode: kind,
                supported: "access_key, ecs_ram_role, ram_role_arn, oidc_role_arn",
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_are_found_by_name_and_comments_skipped() {
        let text =
            "# c\n[default]\ntype = access_key\n\n[other]\n; x\ntype=ecs_ram_role\nrole_name = r\n";
        assert_eq!(
            ini_section(text, "other").unwrap(),
            [
                ("type".to_string(), "ecs_ram_role".to_string()),
                ("role_name".to_string(), "r".to_string())
            ]
        );
        assert!(ini_section(text, "missing").is_none());
    }

    #[test]
    fn chained_profiles_that_loop_are_refused() {
        let doc = serde_json::json!({"profiles": [
            {"name": "a", "mode": "ChainableRamRoleArn", "source_profile": "b", "ram_role_arn": "r"},
            {"name": "b", "mode": "ChainableRamRoleArn", "source_profile": "a", "ram_role_arn": "r"}
        ]});
        let err = read_profile(&doc, "a", "f").unwrap_err().to_string();
        assert!(err.contains("loop"), "{err}");
    }

    #[test]
    fn durations_under_the_sts_minimum_are_refused() {
        let doc = serde_json::json!({"profiles": [
            {"name": "a", "mode": "RamRoleArn", "access_key_id": "i", "access_key_secret": "s",
             "ram_role_arn": "r", "expired_seconds": 60}
        ]});
        let err = read_profile(&doc, "a", "f").unwrap_err().to_string();
        assert!(err.contains("900"), "{err}");
    }
}
