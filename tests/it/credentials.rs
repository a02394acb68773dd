//! Every credentials provider of the chain, through the real binary against the sandbox's STS,
//! ECS metadata service and credentials URI: an import that outlives several credential
//! lifetimes registers every image once, and credentials that cannot work stop the run with
//! exit 3, a message saying what to do, and nothing sent.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;
use face_enroll::sandbox::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, DEFAULT_ECS_ROLE_NAME,
    DEFAULT_OIDC_PROVIDER_ARN, DEFAULT_ROLE_ARN, SandboxConfig,
};

/// Short enough that an import of a few seconds spans more than three of them.
const LIFETIME: Duration = Duration::from_secs(2);
const OIDC_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.oidc-canary-token.sig";
const PERSONS: usize = 20;
const PER_PERSON: usize = 3;
/// 60 images at 8/s: about 7.5 s, more than three lifetimes.
const QPS: &str = "8";

fn sts_world() -> World {
    World::new(SandboxConfig {
        sts_lifetime: LIFETIME,
        oidc_token: Some(OIDC_TOKEN.to_string()),
        ..SandboxConfig::for_tests()
    })
}

/// How a case sets up its credentials: files in the world's folder and environment variables.
struct Case {
    name: &'static str,
    setup: fn(&World) -> Vec<(&'static str, String)>,
    /// More `run` flags (e.g. the v1 signature, whose token travels in the query).
    flags: &'static [&'static str],
}

fn write(world: &World, name: &str, body: &str) -> String {
    let path = world.path(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

fn oidc_token_file(world: &World) -> String {
    write(world, "oidc-token", OIDC_TOKEN)
}

fn cli_config(world: &World, profiles: &str) -> Vec<(&'static str, String)> {
    let path = write(
        world,
        "config.json",
        &format!(r#"{{"current": "main", "profiles": [{profiles}]}}"#),
    );
    vec![("ALIBABA_CLOUD_CONFIG_FILE", path)]
}

fn ram_role_profile(name: &str) -> String {
    format!(
        r#"{{"name": "{name}", "mode": "RamRoleArn", "access_key_id": "{DEFAULT_ACCESS_KEY_ID}",
            "access_key_secret": "{DEFAULT_ACCESS_KEY_SECRET}", "ram_role_arn": "{DEFAULT_ROLE_ARN}",
            "ram_session_name": "import"}}"#
    )
}

/// A command that asks the sandbox for credentials the way an `External` helper would, in bash
/// only (its /dev/tcp), so the test needs no HTTP client on the machine.
fn external_helper(world: &World) -> String {
    let port = world.sandbox.addr().port();
    let path = write(
        world,
        "get-credentials.sh",
        &format!(
            "#!/bin/bash\nexec 3<>/dev/tcp/127.0.0.1/{port}\n\
             printf 'GET /__sandbox/credentials?format=external HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3\n\
             sed '1,/^\\r$/d' <&3\n"
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

fn metadata_env(world: &World) -> Vec<(&'static str, String)> {
    vec![
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "false".into()),
        (
            "FACE_ENROLL_ECS_METADATA_ENDPOINT",
            world.sandbox.base_url(),
        ),
    ]
}

const CASES: [Case; 13] = [
    Case {
        name: "OIDC (RRSA) from the environment",
        setup: |w| {
            vec![
                ("ALIBABA_CLOUD_ROLE_ARN", DEFAULT_ROLE_ARN.into()),
                (
                    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                    DEFAULT_OIDC_PROVIDER_ARN.into(),
                ),
                ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", oidc_token_file(w)),
                ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "pod-import".into()),
            ]
        },
        flags: &[],
    },
    Case {
        name: "CLI profile, mode RamRoleArn, v1 signatures",
        setup: |w| cli_config(w, &ram_role_profile("main")),
        flags: &["--signature", "v1"],
    },
    Case {
        name: "CLI profile, mode ChainableRamRoleArn over a RamRoleArn profile",
        setup: |w| {
            let chained = format!(
                r#"{{"name": "main", "mode": "ChainableRamRoleArn", "source_profile": "base",
                    "ram_role_arn": "{DEFAULT_ROLE_ARN}", "expired_seconds": 900}}"#
            );
            cli_config(w, &format!("{chained}, {}", ram_role_profile("base")))
        },
        flags: &[],
    },
    Case {
        name: "CLI profile, mode EcsRamRole",
        setup: |w| {
            let mut env = cli_config(
                w,
                &format!(
                    r#"{{"name": "main", "mode": "EcsRamRole", "ram_role_name": "{DEFAULT_ECS_ROLE_NAME}"}}"#
                ),
            );
            env.extend(metadata_env(w));
            env
        },
        flags: &[],
    },
    Case {
        name: "CLI profile, mode OIDC",
        setup: |w| {
            let token = oidc_token_file(w);
            cli_config(
                w,
                &format!(
                    r#"{{"name": "main", "mode": "OIDC", "ram_role_arn": "{DEFAULT_ROLE_ARN}",
                        "oidc_provider_arn": "{DEFAULT_OIDC_PROVIDER_ARN}", "oidc_token_file": "{token}"}}"#
                ),
            )
        },
        flags: &[],
    },
    Case {
        name: "CLI profile, mode CredentialsURI",
        setup: |w| {
            let uri = format!("{}__sandbox/credentials", w.sandbox.base_url());
            cli_config(
                w,
                &format!(
                    r#"{{"name": "main", "mode": "CredentialsURI", "credentials_uri": "{uri}"}}"#
                ),
            )
        },
        flags: &[],
    },
    Case {
        name: "CLI profile, mode External",
        setup: |w| {
            let helper = external_helper(w);
            cli_config(
                w,
                &format!(
                    r#"{{"name": "main", "mode": "External", "process_command": "{helper}"}}"#
                ),
            )
        },
        flags: &[],
    },
    Case {
        name: "INI credentials file, type ram_role_arn",
        setup: |w| {
            let path = write(
                w,
                "credentials.ini",
                &format!(
                    "[default]\ntype = ram_role_arn\naccess_key_id = {DEFAULT_ACCESS_KEY_ID}\n\
                     access_key_secret = {DEFAULT_ACCESS_KEY_SECRET}\nrole_arn = {DEFAULT_ROLE_ARN}\n\
                     role_session_name = ini\n"
                ),
            );
            vec![("ALIBABA_CLOUD_CREDENTIALS_FILE", path)]
        },
        flags: &[],
    },
    Case {
        name: "INI credentials file, type ecs_ram_role",
        setup: |w| {
            let path = write(
                w,
                "credentials.ini",
                "[default]\ntype = ecs_ram_role\nrole_name = face-enroll-sandbox\n",
            );
            let mut env = vec![("ALIBABA_CLOUD_CREDENTIALS_FILE", path)];
            env.extend(metadata_env(w));
            env
        },
        flags: &[],
    },
    Case {
        name: "INI credentials file, type oidc_role_arn",
        setup: |w| {
            let token = oidc_token_file(w);
            let path = write(
                w,
                "credentials.ini",
                &format!(
                    "[default]\ntype = oidc_role_arn\nrole_arn = {DEFAULT_ROLE_ARN}\n\
                     oidc_provider_arn = {DEFAULT_OIDC_PROVIDER_ARN}\noidc_token_file_path = {token}\n"
                ),
            );
            vec![("ALIBABA_CLOUD_CREDENTIALS_FILE", path)]
        },
        flags: &[],
    },
    Case {
        name: "ECS instance metadata, role discovered",
        setup: metadata_env,
        flags: &[],
    },
    Case {
        name: "ECS instance metadata, role named by ALIBABA_CLOUD_ECS_METADATA, IMDSv1 disabled",
        setup: |w| {
            let mut env = metadata_env(w);
            env.push(("ALIBABA_CLOUD_ECS_METADATA", DEFAULT_ECS_ROLE_NAME.into()));
            env.push(("ALIBABA_CLOUD_IMDSV1_DISABLED", "true".into()));
            env
        },
        flags: &[],
    },
    Case {
        name: "ALIBABA_CLOUD_CREDENTIALS_URI",
        setup: |w| {
            vec![(
                "ALIBABA_CLOUD_CREDENTIALS_URI",
                format!("{}__sandbox/credentials", w.sandbox.base_url()),
            )]
        },
        flags: &[],
    },
];

/// `face-enroll run` with no static keys: only what `env` sets, the sandbox as STS endpoint,
/// and the metadata service off unless `env` turns it on.
fn run_without_keys(world: &World, env: &[(&str, String)], extra: &[&str]) -> Output {
    let manifest = world.path("m.csv");
    let url = world.sandbox.base_url();
    let mut args = vec![
        "run",
        manifest.to_str().unwrap(),
        "--endpoint",
        &url,
        "--progress",
        "off",
    ];
    args.extend_from_slice(extra);
    let mut cmd: Command = world.command(&args);
    cmd.env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .env("FACE_ENROLL_STS_ENDPOINT", &url);
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.output().unwrap()
}

/// Runs one case; `Err` says what went wrong, naming the case.
fn import_across_lifetimes(case: &Case) -> Result<(), String> {
    let world = sts_world();
    world.manifest("m.csv", &manifest_body("lib", PERSONS, PER_PERSON));
    let env = (case.setup)(&world);
    let started = Instant::now();
    // --max-duration bounds the run in time whatever happens (a hung run exits 5).
    let mut flags = vec!["--qps", QPS, "--max-duration", "60s"];
    flags.extend_from_slice(case.flags);
    let out = run_without_keys(&world, &env, &flags);
    let elapsed = started.elapsed();
    let err = stderr(&out);
    let fail = |what: String| Err(format!("{}: {what}\n{err}", case.name));
    if out.status.code() != Some(0) {
        return fail(format!("exit {:?}", out.status.code()));
    }
    if elapsed < LIFETIME * 3 {
        return fail(format!(
            "the import took {elapsed:?}, not more than three lifetimes"
        ));
    }
    let state = world.sandbox.snapshot();
    let copies = copies_per_url(&state);
    if copies.len() != PERSONS * PER_PERSON || copies.values().any(|n| *n != 1) {
        return fail(format!(
            "{} images on the server, some more than once",
            copies.len()
        ));
    }
    let statuses: HashMap<String, usize> = last_per_image(&world.path("m.ledger.jsonl"))
        .values()
        .fold(HashMap::new(), |mut m, line| {
            *m.entry(line["status"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
            m
        });
    if statuses.get("registered") != Some(&(PERSONS * PER_PERSON)) {
        return fail(format!("ledger statuses {statuses:?}"));
    }
    if state.stats.credentials_issued < 3 {
        return fail(format!(
            "only {} credentials issued over {elapsed:?}",
            state.stats.credentials_issued
        ));
    }
    eprintln!(
        "{}: {} credentials over {elapsed:?}",
        case.name, state.stats.credentials_issued
    );
    if !err.contains("temporary credentials in use") || !err.contains("expires") {
        return fail("the start-up log does not name the provider and the expiry".into());
    }
    Ok(())
}

#[test]
fn every_renewing_provider_carries_an_import_over_more_than_three_credential_lifetimes() {
    // The cases mostly wait (paced at 8/s), so they run side by side.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = CASES
            .iter()
            .map(|case| scope.spawn(move || import_across_lifetimes(case)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap().err())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A run that must stop before sending anything: exit 3, `expected` in the message.
fn refused(world: &World, env: &[(&str, String)], expected: &[&str]) {
    world.manifest("m.csv", &manifest_body("lib", 2, 2));
    let out = run_without_keys(world, env, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    for text in expected {
        assert!(err.contains(text), "{text:?} missing from: {err}");
    }
    assert!(!err.contains(OIDC_TOKEN), "{err}");
    let stats = world.sandbox.snapshot().stats;
    assert_eq!(stats.requests, 0, "an MTS request was sent: {err}");
}

#[test]
fn a_profile_with_an_unknown_mode_exits_3_naming_the_supported_modes() {
    let world = sts_world();
    let env = cli_config(&world, r#"{"name": "main", "mode": "CloudSSO"}"#);
    refused(&world, &env, &["mode CloudSSO", "RamRoleArn, EcsRamRole"]);
}

#[test]
fn a_missing_or_empty_oidc_token_file_exits_3_naming_the_file() {
    let world = sts_world();
    let missing = world.path("no-such-token").display().to_string();
    let mut env = vec![
        ("ALIBABA_CLOUD_ROLE_ARN", DEFAULT_ROLE_ARN.to_string()),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            DEFAULT_OIDC_PROVIDER_ARN.to_string(),
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", missing.clone()),
    ];
    refused(
        &world,
        &env,
        &[&missing, "does not exist", "ALIBABA_CLOUD_OIDC_TOKEN_FILE"],
    );
    let empty = write(&world, "empty-token", "\n");
    env[2].1 = empty.clone();
    refused(&world, &env, &[&empty, "is empty"]);
    assert_eq!(world.sandbox.snapshot().stats.credentials_issued, 0);
}

#[test]
fn an_unreachable_metadata_service_exits_3_naming_it() {
    let world = sts_world();
    // A loopback port nobody listens on: the connection is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let env = vec![
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "false".to_string()),
        ("FACE_ENROLL_ECS_METADATA_ENDPOINT", url.clone()),
    ];
    refused(
        &world,
        &env,
        &["cannot reach the ECS metadata service", &url],
    );
}

#[test]
fn a_role_that_does_not_exist_exits_3_showing_the_sts_code() {
    let world = sts_world();
    let profile = ram_role_profile("main").replace(DEFAULT_ROLE_ARN, "acs:ram::1:role/nope");
    let env = cli_config(&world, &profile);
    refused(
        &world,
        &env,
        &["EntityNotExist.Role", "acs:ram::1:role/nope", "AssumeRole"],
    );
}

#[test]
fn an_external_command_that_fails_or_prints_no_json_exits_3_without_its_output() {
    let world = sts_world();
    let failing = write(
        &world,
        "fail.sh",
        "#!/bin/sh\necho 'secret-canary-out'\nexit 7\n",
    );
    let garbage = write(
        &world,
        "garbage.sh",
        "#!/bin/sh\necho 'secret-canary-out'\n",
    );
    use std::os::unix::fs::PermissionsExt;
    for path in [&failing, &garbage] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    for (script, expected) in [(&failing, "exited with"), (&garbage, "did not print JSON")] {
        let env = cli_config(
            &world,
            &format!(
                r#"{{"name": "main", "mode": "External", "process_command": "{script} --x"}}"#
            ),
        );
        refused(&world, &env, &[expected, "process_command"]);
        let err = stderr(&run_without_keys(&world, &env, &[]));
        assert!(!err.contains("secret-canary-out"), "{err}");
    }
}

#[test]
fn an_sts_endpoint_override_over_plain_http_to_another_host_is_refused() {
    let world = sts_world();
    let mut env = cli_config(&world, &ram_role_profile("main"));
    // Set after the default loopback override, so this one wins.
    env.push(("FACE_ENROLL_STS_ENDPOINT", "http://10.0.0.1/".into()));
    refused(&world, &env, &["FACE_ENROLL_STS_ENDPOINT", "loopback"]);
}

#[test]
fn an_explicit_profile_wins_over_environment_keys_and_uses_sts() {
    let world = sts_world();
    world.manifest("m.csv", &manifest_body("lib", 2, 2));
    let env = cli_config(&world, &ram_role_profile("main"));
    let url = world.sandbox.base_url();
    let manifest: PathBuf = world.path("m.csv");
    let mut cmd = world.command(&[
        "run",
        manifest.to_str().unwrap(),
        "--endpoint",
        &url,
        "--progress",
        "off",
        "--profile",
        "main",
    ]);
    cmd.env("FACE_ENROLL_STS_ENDPOINT", &url)
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "a-wrong-secret");
    for (name, value) in &env {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 4);
    // The closing read, 2 s after the last create, may need the 2 s credentials renewed once.
    let issued = world.sandbox.snapshot().stats.credentials_issued;
    assert!((1..=2).contains(&issued), "{issued} credentials issued");
}

#[test]
fn a_token_the_service_calls_expired_is_renewed_and_the_request_retried() {
    // The helper claims its credentials last until 2099, so only the sandbox's refusal can make
    // the client renew them: every refusal must end in a retry with new ones, nothing failed.
    let world = sts_world();
    world.manifest("m.csv", &manifest_body("lib", PERSONS, PER_PERSON));
    let port = world.sandbox.addr().port();
    let helper = write(
        &world,
        "lying-helper.sh",
        &format!(
            "#!/bin/bash\nexec 3<>/dev/tcp/127.0.0.1/{port}\n\
             printf 'GET /__sandbox/credentials?format=external HTTP/1.0\\r\\n\\r\\n' >&3\n\
             sed '1,/^\\r$/d' <&3 | sed 's/\"expiration\":\"[^\"]*\"/\"expiration\":\"2099-01-01T00:00:00Z\"/'\n"
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o700)).unwrap();
    let env = cli_config(
        &world,
        &format!(r#"{{"name": "main", "mode": "External", "process_command": "{helper}"}}"#),
    );
    let out = run_without_keys(&world, &env, &["--qps", QPS, "--max-duration", "60s"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("the service says the temporary credentials expired"),
        "{err}"
    );
    let copies = copies_per_url(&world.sandbox.snapshot());
    assert_eq!(copies.len(), PERSONS * PER_PERSON, "{err}");
    assert!(copies.values().all(|n| *n == 1), "{copies:?}");
    let issued = world.sandbox.snapshot().stats.credentials_issued;
    assert!(issued >= 3, "only {issued} credentials issued: {err}");
}
