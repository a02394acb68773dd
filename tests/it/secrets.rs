//! Secrets never leave the process: with a recognisable secret and STS token, every output of
//! `run` — stdout, debug-level stderr, the summary, the rejects file, the ledger, the lock file —
//! is searched for them, on a successful run with faults and on a run whose secret is wrong;
//! and, for every credentials provider, for the OIDC token, an External command's output and
//! every temporary credential the sandbox issued.

use std::path::Path;
use std::process::Output;

use crate::common::*;
use face_enroll::sandbox::{DEFAULT_ACCESS_KEY_ID, FaultRates, SandboxConfig};

const SECRET: &str = "S3cr3t-Canary-7f1e";
const TOKEN: &str = "Tok3n-Canary-92ab";
const CANARIES: [&str; 2] = [SECRET, TOKEN];

fn canary_world(token: &str) -> World {
    World::new(canary_config(token))
}

/// The canary key, which needs `token`, and a mix of faults.
fn canary_config(token: &str) -> SandboxConfig {
    let mut config = SandboxConfig::for_tests();
    config.access_key_secret = SECRET.to_string();
    config.security_token = Some(token.to_string());
    config.faults = FaultRates {
        error_after: 0.1,
        reset_after: 0.05,
        malformed_after: 0.05,
        ..FaultRates::default()
    };
    config
}

/// A manifest with good rows, a bad one (for the rejects file) and one over the 10-face limit.
fn canary_manifest(world: &World) -> std::path::PathBuf {
    let mut body = manifest_body("lib", 4, 3);
    body.push_str("lib,bad-row,Bad,not-a-url\n");
    for i in 0..11 {
        body.push_str(&format!(
            "lib,crowded,Crowded,https://img.example.com/crowded/{i:02}.jpg\n"
        ));
    }
    world.manifest("m.csv", &body)
}

/// Runs with the canary credentials in the environment, debug logs, summary and rejects.
fn run_with(world: &World, manifest: &Path, secret: &str, token: &str, extra: &[&str]) -> Output {
    let url = world.sandbox.base_url();
    let summary = world.path("summary.json");
    let rejects = world.path("rejects.csv");
    let mut args = vec![
        "run",
        manifest.to_str().unwrap(),
        "--endpoint",
        &url,
        "--progress",
        "log",
        "--summary",
        summary.to_str().unwrap(),
        "--rejects",
        rejects.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    world
        .command(&args)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)
        .env("ALIBABA_CLOUD_SECURITY_TOKEN", token)
        .env("FACE_ENROLL_LOG", "debug")
        .output()
        .unwrap()
}

/// Fails naming the place when a canary (or its percent-encoded form) shows up in `text`.
fn assert_clean(place: &str, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    for canary in CANARIES {
        assert!(
            !text.contains(canary),
            "{canary} leaked into {place}:\n{text}"
        );
    }
}

/// Every file the run left in the world's folder, except the manifest itself.
fn assert_files_clean(world: &World) -> usize {
    let mut checked = 0;
    for entry in std::fs::read_dir(world.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() || path.file_name().unwrap() == "m.csv" {
            continue;
        }
        assert_clean(&path.display().to_string(), &std::fs::read(&path).unwrap());
        checked += 1;
    }
    checked
}

#[test]
fn a_run_with_faults_and_debug_logs_writes_the_secret_and_token_nowhere() {
    let world = canary_world(TOKEN);
    let manifest = canary_manifest(&world);
    let out = run_with(&world, &manifest, SECRET, TOKEN, &["--max-attempts", "20"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("DEBUG") || stderr(&out).contains("debug"),
        "debug logging was not on: {}",
        stderr(&out)
    );
    assert_clean("stdout", &out.stdout);
    assert_clean("stderr", &out.stderr);
    // The same again with JSON logs, which print fields a text log may leave out.
    let again = run_with(
        &world,
        &manifest,
        SECRET,
        TOKEN,
        // v1 signatures: the token travels in the query string this time.
        &[
            "--log-format",
            "json",
            "--retry-failed",
            "--signature",
            "v1",
        ],
    );
    assert_clean("stdout (json logs)", &again.stdout);
    assert_clean("stderr (json logs)", &again.stderr);
    let files = assert_files_clean(&world);
    for name in [
        "summary.json",
        "rejects.csv",
        "m.ledger.jsonl",
        "m.ledger.jsonl.lock",
    ] {
        assert!(world.path(name).exists(), "{name} was not written");
    }
    assert!(files >= 4, "only {files} files were checked");
    assert_eq!(world.faces().len(), 12 + 10);
}

#[test]
fn a_rejected_secret_exits_3_and_its_error_output_holds_neither_secret_nor_token() {
    // A token with characters that percent-encoding changes: under v1 the server echoes its
    // string-to-sign, where the token appears encoded once and twice.
    let token = format!("{TOKEN}+/=x");
    let world = canary_world(&token);
    let manifest = canary_manifest(&world);
    let wrong = format!("{SECRET}-but-wrong");
    for signature in ["v1", "v3"] {
        let out = run_with(
            &world,
            &manifest,
            &wrong,
            &token,
            &["--signature", signature],
        );
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("SignatureDoesNotMatch"), "{err}");
        assert!(
            err.contains("string-to-sign"),
            "the server's string-to-sign is shown: {err}"
        );
        assert_clean("stdout", &out.stdout);
        assert_clean("stderr", &out.stderr);
    }
    assert_files_clean(&world);
    assert!(world.faces().is_empty());
}

const OIDC_TOKEN: &str = "Oidc-Canary-Token-5c3d";

/// Credentials that only temporary ones can reach: the emulated STS and metadata service issue
/// credentials living 2 s to callers holding the canary secret or the canary OIDC token.
fn provider_world() -> World {
    World::new(SandboxConfig {
        sts_lifetime: std::time::Duration::from_secs(2),
        oidc_token: Some(OIDC_TOKEN.to_string()),
        // Any token is taken with the canary key, so the External helper may print one.
        security_token: None,
        ..canary_config(TOKEN)
    })
}

fn write_file(world: &World, name: &str, body: &str, executable: bool) -> String {
    let path = world.path(name);
    std::fs::write(&path, body).unwrap();
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    path.display().to_string()
}

fn cli_profile(world: &World, profile: &str) -> Vec<(&'static str, String)> {
    let body = format!(r#"{{"current": "main", "profiles": [{profile}]}}"#);
    vec![(
        "ALIBABA_CLOUD_CONFIG_FILE",
        write_file(world, "config.json", &body, false),
    )]
}

fn ini(world: &World, section: &str) -> Vec<(&'static str, String)> {
    let body = format!("[default]\n{section}");
    vec![(
        "ALIBABA_CLOUD_CREDENTIALS_FILE",
        write_file(world, "credentials.ini", &body, false),
    )]
}

fn metadata(world: &World) -> Vec<(&'static str, String)> {
    vec![
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "false".into()),
        (
            "FACE_ENROLL_ECS_METADATA_ENDPOINT",
            world.sandbox.base_url(),
        ),
    ]
}

const PROVIDERS: [&str; 12] = [
    "env-oidc",
    "cli-ram-role-arn",
    "cli-chainable-ram-role-arn",
    "cli-ecs-ram-role",
    "cli-oidc",
    "cli-credentials-uri",
    "cli-external",
    "ini-ram-role-arn",
    "ini-ecs-ram-role",
    "ini-oidc-role-arn",
    "ecs-metadata",
    "env-credentials-uri",
];

/// The environment (and files) that select `provider`; no static keys in it.
fn provider_env(world: &World, provider: &str) -> Vec<(&'static str, String)> {
    use face_enroll::sandbox::{DEFAULT_OIDC_PROVIDER_ARN as OIDC_ARN, DEFAULT_ROLE_ARN as ROLE};
    let uri = format!("{}__sandbox/credentials", world.sandbox.base_url());
    let token = write_file(world, "token", OIDC_TOKEN, false);
    let key =
        format!(r#""access_key_id": "{DEFAULT_ACCESS_KEY_ID}", "access_key_secret": "{SECRET}""#);
    let ram_role = |name: &str| {
        format!(r#"{{"name": "{name}", "mode": "RamRoleArn", {key}, "ram_role_arn": "{ROLE}"}}"#)
    };
    let ini_key =
        format!("access_key_id = {DEFAULT_ACCESS_KEY_ID}\naccess_key_secret = {SECRET}\n");
    let mut env = match provider {
        "env-oidc" => vec![
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE.into()),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_ARN.into()),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token),
        ],
        "cli-ram-role-arn" => cli_profile(world, &ram_role("main")),
        "cli-chainable-ram-role-arn" => cli_profile(
            world,
            &format!(
                r#"{{"name": "main", "mode": "ChainableRamRoleArn", "source_profile": "base",
                    "ram_role_arn": "{ROLE}"}}, {}"#,
                ram_role("base")
            ),
        ),
        "cli-ecs-ram-role" => {
            let mut env = cli_profile(world, r#"{"name": "main", "mode": "EcsRamRole"}"#);
            env.extend(metadata(world));
            env
        }
        "cli-oidc" => cli_profile(
            world,
            &format!(
                r#"{{"name": "main", "mode": "OIDC", "ram_role_arn": "{ROLE}",
                    "oidc_provider_arn": "{OIDC_ARN}", "oidc_token_file": "{token}"}}"#
            ),
        ),
        "cli-credentials-uri" => cli_profile(
            world,
            &format!(r#"{{"name": "main", "mode": "CredentialsURI", "credentials_uri": "{uri}"}}"#),
        ),
        "cli-external" => {
            // Prints the canary secret and token, as a helper reading them from a vault would.
            let script = format!(
                "#!/bin/sh\nprintf '{{\"mode\":\"StsToken\",\"access_key_id\":\"{DEFAULT_ACCESS_KEY_ID}\",\
                 \"access_key_secret\":\"{SECRET}\",\"sts_token\":\"{TOKEN}\"}}'\n"
            );
            let helper = write_file(world, "helper.sh", &script, true);
            cli_profile(
                world,
                &format!(
                    r#"{{"name": "main", "mode": "External", "process_command": "{helper}"}}"#
                ),
            )
        }
        "ini-ram-role-arn" => ini(
            world,
            &format!("type = ram_role_arn\n{ini_key}role_arn = {ROLE}\nrole_session_name = s\n"),
        ),
        "ini-ecs-ram-role" => {
            let mut env = ini(world, "type = ecs_ram_role\n");
            env.extend(metadata(world));
            env
        }
        "ini-oidc-role-arn" => ini(
            world,
            &format!(
                "type = oidc_role_arn\nrole_arn = {ROLE}\noidc_provider_arn = {OIDC_ARN}\n\
                 oidc_token_file_path = {token}\n"
            ),
        ),
        "ecs-metadata" => metadata(world),
        "env-credentials-uri" => vec![("ALIBABA_CLOUD_CREDENTIALS_URI", uri)],
        _ => unreachable!("{provider}"),
    };
    env.push(("FACE_ENROLL_STS_ENDPOINT", world.sandbox.base_url()));
    env
}

/// The files the test wrote itself (inputs, which hold the canaries on purpose).
const INPUTS: [&str; 5] = [
    "m.csv",
    "config.json",
    "credentials.ini",
    "token",
    "helper.sh",
];

/// One run under `provider` with faults and debug logs; `Err` names what leaked where.
fn secrets_stay_inside(provider: &str) -> Result<(), String> {
    let world = provider_world();
    let manifest = canary_manifest(&world);
    let url = world.sandbox.base_url();
    let (summary, rejects) = (world.path("summary.json"), world.path("rejects.csv"));
    let mut cmd = world.command(&[
        "run",
        manifest.to_str().unwrap(),
        "--endpoint",
        &url,
        "--progress",
        "log",
        "--summary",
        summary.to_str().unwrap(),
        "--rejects",
        rejects.to_str().unwrap(),
        "--max-attempts",
        "20",
        "--qps",
        "10",
        "--max-duration",
        "60s",
    ]);
    cmd.env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .env("FACE_ENROLL_LOG", "debug");
    for (name, value) in provider_env(&world, provider) {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    if out.status.code() != Some(1) || world.faces().len() != 12 + 10 {
        return Err(format!(
            "{provider}: exit {:?}\n{}",
            out.status.code(),
            stderr(&out)
        ));
    }
    // Everything secret the run saw: the canaries, the OIDC token, every issued credential.
    let mut secrets: Vec<String> = vec![SECRET.into(), TOKEN.into(), OIDC_TOKEN.into()];
    let issued = world.sandbox.issued_credentials();
    if provider != "cli-external" && issued.is_empty() {
        return Err(format!("{provider}: no credentials were issued"));
    }
    for (_, secret, token) in issued {
        let encoded = face_enroll::sign::percent_encode(&token);
        secrets.extend([secret, token, encoded]);
    }
    let mut places = vec![
        ("stdout".to_string(), out.stdout.clone()),
        ("stderr".to_string(), out.stderr.clone()),
    ];
    for entry in std::fs::read_dir(world.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_file() && !INPUTS.contains(&name.as_str()) {
            places.push((name, std::fs::read(&path).unwrap()));
        }
    }
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        if secrets.iter().any(|secret| text.contains(secret.as_str())) {
            return Err(format!("{provider}: a secret leaked into {place}:\n{text}"));
        }
    }
    Ok(())
}

#[test]
fn every_credentials_provider_keeps_its_secrets_out_of_logs_errors_and_files() {
    // Paced runs mostly wait: side by side they take the time of one.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = PROVIDERS
            .iter()
            .map(|provider| scope.spawn(move || secrets_stay_inside(provider)))
            .collect();
        runs.into_iter()
            .filter_map(|run| run.join().unwrap().err())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
