//! The chain's order, the files' parsing and the messages, against an injected environment.

use super::*;
use std::collections::HashMap;
use std::io::Write;

const CANARY: &str = "S3cr3t-Canary-credentials-9f2c";

/// The given variables, and the metadata service switched off so no test reaches for the
/// network (the tests that want it point it at a sandbox).
fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let mut map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry(ENV_ECS_METADATA_DISABLED.to_string())
        .or_insert_with(|| "true".to_string());
    move |name: &str| map.get(name).cloned()
}

fn resolve_now(
    profile: Option<&str>,
    region: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, CredentialsError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(resolve(profile, region, env))
}

/// The credentials a resolved provider hands out first.
fn first(r: &Resolved) -> Credentials {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(r.credentials.credentials())
        .unwrap()
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
          {{"name": "role", "mode": "CloudSSO", "access_key_id": "id-role",
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
    let r = resolve_now(None, None, &env).unwrap();
    let c = first(&r);
    assert_eq!(c.access_key_id, "env-id");
    assert_eq!(c.access_key_secret.expose(), CANARY);
    assert!(c.security_token.is_none());
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
    let r = resolve_now(None, None, &env).unwrap();
    assert_eq!(first(&r).security_token.unwrap().expose(), "tok");
}

#[test]
fn only_the_key_id_in_the_environment_is_an_error_naming_the_missing_secret() {
    let env = env_of(&[(ENV_KEY_ID, "env-id")]);
    let err = resolve_now(None, None, &env).unwrap_err().to_string();
    assert!(
        err.contains(ENV_KEY_SECRET) && err.contains("is not"),
        "{err}"
    );
}

#[test]
fn only_the_secret_in_the_environment_is_an_error_naming_the_missing_id() {
    let env = env_of(&[(ENV_KEY_SECRET, CANARY)]);
    let err = resolve_now(None, None, &env).unwrap_err().to_string();
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
    let r = resolve_now(Some("default"), None, &env).unwrap();
    assert_eq!(first(&r).access_key_id, "id-default");
    assert_eq!(r.source, format!("profile 'default' in {}", path_of(&file)));
}

#[test]
fn current_profile_is_used_when_nothing_else_selects_one() {
    let file = config_file(&sample_config());
    let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
    let r = resolve_now(None, None, &env).unwrap();
    assert_eq!(first(&r).access_key_id, "id-default");
    assert_eq!(r.region, "cn-beijing");
}

#[test]
fn profile_environment_variable_beats_current() {
    let file = config_file(&sample_config());
    let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file)), (ENV_PROFILE, "prod")]);
    let r = resolve_now(None, None, &env).unwrap();
    assert_eq!(first(&r).access_key_id, "id-prod");
    assert_eq!(
        first(&r).security_token.unwrap().expose(),
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
    let r = resolve_now(None, None, &env).unwrap();
    assert!(r.source.ends_with(".aliyun/config.json"), "{}", r.source);
}

#[test]
fn region_flag_beats_environment_which_beats_profile() {
    let file = config_file(&sample_config());
    let path = path_of(&file);
    let env = env_of(&[(ENV_CONFIG_FILE, &path), (ENV_REGION, "cn-hangzhou")]);
    assert_eq!(
        resolve_now(None, Some("cn-shenzhen"), &env).unwrap().region,
        "cn-shenzhen"
    );
    assert_eq!(resolve_now(None, None, &env).unwrap().region, "cn-hangzhou");
}

#[test]
fn region_that_could_change_the_url_is_refused() {
    let env = env_of(&[(ENV_KEY_ID, "id"), (ENV_KEY_SECRET, CANARY)]);
    let err = resolve_now(None, Some("evil.com/x"), &env).unwrap_err();
    assert!(
        matches!(err, CredentialsError::InvalidRegion { .. }),
        "{err}"
    );
}

#[test]
fn a_profile_mode_face_enroll_does_not_know_is_refused_naming_the_supported_ones() {
    let file = config_file(&sample_config());
    let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
    let err = resolve_now(Some("role"), None, &env).unwrap_err();
    assert!(!err.is_usage(), "a credentials failure, not a usage error");
    assert_eq!(
        err.to_string(),
        format!(
            "profile 'role' in {} uses mode CloudSSO, which face-enroll does not support; use one \
             of AK, StsToken, RamRoleArn, EcsRamRole, OIDC, ChainableRamRoleArn, CredentialsURI, \
             External, or the ALIBABA_CLOUD_ACCESS_KEY_* environment variables",
            path_of(&file)
        )
    );
}

#[test]
fn profile_without_a_secret_names_the_missing_field_and_the_file() {
    let file = config_file(&sample_config());
    let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
    let err = resolve_now(Some("half"), None, &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("access_key_secret") && err.contains(&path_of(&file)),
        "{err}"
    );
}

#[test]
fn unknown_profile_lists_the_profiles_that_exist() {
    let file = config_file(&sample_config());
    let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
    let err = resolve_now(Some("staging"), None, &env)
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
    let err = resolve_now(None, None, &env).unwrap_err().to_string();
    assert!(err.contains(&path) && err.contains(ENV_KEY_ID), "{err}");
}

#[test]
fn missing_file_with_a_profile_flag_names_the_profile_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.json").display().to_string();
    let env = env_of(&[(ENV_CONFIG_FILE, &path)]);
    let err = resolve_now(Some("prod"), None, &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path) && err.contains("'prod'"), "{err}");
}

#[test]
fn invalid_json_names_the_file_and_never_quotes_its_content() {
    let file = config_file(&format!(
        "{{\"profiles\": [{{\"access_key_secret\": \"{CANARY}\""
    ));
    let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
    let err = resolve_now(None, None, &env).unwrap_err().to_string();
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
    let err = resolve_now(None, None, &env).unwrap_err();
    assert!(matches!(err, CredentialsError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains(&path));
}

#[test]
fn config_without_current_asks_for_a_profile() {
    let file = config_file(r#"{"profiles": []}"#);
    let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
    let err = resolve_now(None, None, &env).unwrap_err();
    assert!(
        matches!(err, CredentialsError::NoProfileSelected { .. }),
        "{err}"
    );
}

#[test]
fn no_home_and_no_config_override_is_an_error() {
    let err = resolve_now(None, None, &env_of(&[])).unwrap_err();
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
        first(&resolve_now(None, None, &env).unwrap()).access_key_id,
        "id-default"
    );
}

#[test]
fn debug_output_of_credentials_never_shows_secrets() {
    let file = config_file(&sample_config());
    let env = env_of(&[(ENV_CONFIG_FILE, &path_of(&file))]);
    let r = resolve_now(Some("prod"), None, &env).unwrap();
    let c = first(&r);
    let shown = format!("{r:?} {:?} {c:?} {}", r.credentials, c.access_key_secret);
    assert!(!shown.contains(CANARY), "{shown}");
    assert!(shown.contains("(redacted)") && shown.contains("id-prod"));
}

/// A sandbox serving STS, and the variables that make the chain use it.
async fn sts_sandbox() -> (
    crate::sandbox::Sandbox,
    tempfile::TempDir,
    Vec<(String, String)>,
) {
    let sandbox = crate::sandbox::Sandbox::start(crate::sandbox::SandboxConfig::for_tests())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "oidc-token").unwrap();
    let vars = vec![
        (ENV_STS_ENDPOINT.to_string(), sandbox.base_url()),
        (
            ENV_ROLE_ARN.to_string(),
            crate::sandbox::DEFAULT_ROLE_ARN.to_string(),
        ),
        (
            ENV_OIDC_PROVIDER_ARN.to_string(),
            crate::sandbox::DEFAULT_OIDC_PROVIDER_ARN.to_string(),
        ),
        (ENV_OIDC_TOKEN_FILE.to_string(), token.display().to_string()),
        ("HOME".to_string(), dir.path().display().to_string()),
    ];
    (sandbox, dir, vars)
}

fn with(
    vars: &[(String, String)],
    more: &[(&str, &str)],
) -> impl Fn(&str) -> Option<String> + use<> {
    let mut pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.extend_from_slice(more);
    env_of(&pairs)
}

#[tokio::test]
async fn environment_keys_come_before_oidc_which_comes_before_the_cli_profile() {
    let (sandbox, _dir, vars) = sts_sandbox().await;
    let file = config_file(&sample_config());
    let config = path_of(&file);
    let keys = with(
        &vars,
        &[
            (ENV_KEY_ID, "env-id"),
            (ENV_KEY_SECRET, CANARY),
            (ENV_CONFIG_FILE, &config),
        ],
    );
    assert_eq!(
        resolve(None, None, &keys).await.unwrap().source,
        "environment"
    );
    let oidc = with(&vars, &[(ENV_CONFIG_FILE, &config)]);
    let r = resolve(None, None, &oidc).await.unwrap();
    assert!(
        r.source.starts_with("environment (OIDC): RAM role"),
        "{}",
        r.source
    );
    assert!(r.credentials.is_renewable() && r.credentials.expiration().is_some());
    assert!(
        r.credentials
            .credentials()
            .await
            .unwrap()
            .access_key_id
            .starts_with("STS.")
    );
    let mut without_oidc = vars.clone();
    without_oidc.retain(|(k, _)| k != ENV_ROLE_ARN);
    let profile = with(&without_oidc, &[(ENV_CONFIG_FILE, &config)]);
    let r = resolve(None, None, &profile).await.unwrap();
    assert!(r.source.starts_with("profile 'default'"), "{}", r.source);
    assert_eq!(sandbox.snapshot().stats.credentials_issued, 1);
}

#[tokio::test]
async fn a_disabled_or_missing_cli_profile_file_leaves_the_ini_file_next() {
    let (_sandbox, dir, mut vars) = sts_sandbox().await;
    vars.retain(|(k, _)| k != ENV_ROLE_ARN);
    let ini = dir.path().join("credentials.ini");
    std::fs::write(
        &ini,
        format!(
            "[default]\ntype = access_key\naccess_key_id = ini-id\naccess_key_secret = {CANARY}\n"
        ),
    )
    .unwrap();
    let ini = ini.display().to_string();
    let file = config_file(&sample_config());
    let config = path_of(&file);
    let disabled = with(
        &vars,
        &[
            (ENV_CONFIG_FILE, &config),
            (ENV_CLI_PROFILE_DISABLED, "true"),
            (ENV_CREDENTIALS_FILE, &ini),
        ],
    );
    let r = resolve(None, None, &disabled).await.unwrap();
    assert_eq!(
        r.credentials.credentials().await.unwrap().access_key_id,
        "ini-id"
    );
    assert_eq!(r.source, format!("[default] in {ini}"));
    let missing = with(&vars, &[(ENV_CREDENTIALS_FILE, &ini)]);
    let r = resolve(None, None, &missing).await.unwrap();
    assert_eq!(
        r.credentials.credentials().await.unwrap().access_key_id,
        "ini-id"
    );
    let mut no_section = vars.clone();
    no_section.push((ENV_PROFILE.to_string(), "other".to_string()));
    let err = resolve(
        None,
        None,
        &with(&no_section, &[(ENV_CREDENTIALS_FILE, &ini)]),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CredentialsError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn a_credentials_uri_over_plain_http_to_another_host_is_refused_before_any_request() {
    let env = env_of(&[
        (ENV_CREDENTIALS_URI, "http://192.0.2.1/creds"),
        ("HOME", "/nonexistent"),
    ]);
    let err = resolve(None, None, &env).await.unwrap_err().to_string();
    assert!(
        err.contains(ENV_CREDENTIALS_URI) && err.contains("loopback"),
        "{err}"
    );
}
