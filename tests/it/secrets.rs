//! Secrets never leave the process: with a recognisable secret and STS token, every output of
//! `run` — stdout, debug-level stderr, the summary, the rejects file, the ledger, the lock file —
//! is searched for them, on a successful run with faults and on a run whose secret is wrong.

use std::path::Path;
use std::process::Output;

use crate::common::*;
use face_enroll::sandbox::{DEFAULT_ACCESS_KEY_ID, FaultRates, SandboxConfig};

const SECRET: &str = "S3cr3t-Canary-7f1e";
const TOKEN: &str = "Tok3n-Canary-92ab";
const CANARIES: [&str; 2] = [SECRET, TOKEN];

fn canary_world(token: &str) -> World {
    let mut config = SandboxConfig::for_tests();
    config.access_key_secret = SECRET.to_string();
    config.security_token = Some(token.to_string());
    config.faults = FaultRates {
        error_after: 0.1,
        reset_after: 0.05,
        malformed_after: 0.05,
        ..FaultRates::default()
    };
    World::new(config)
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
        &["--log-format", "json", "--retry-failed"],
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
    // A token with characters that percent-encoding changes: the server echoes its
    // string-to-sign, where the token appears encoded once and twice.
    let token = format!("{TOKEN}+/=x");
    let world = canary_world(&token);
    let manifest = canary_manifest(&world);
    let wrong = format!("{SECRET}-but-wrong");
    let out = run_with(&world, &manifest, &wrong, &token, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(
        err.contains("string-to-sign"),
        "the server's string-to-sign is shown: {err}"
    );
    assert_clean("stdout", &out.stdout);
    assert_clean("stderr", &out.stderr);
    assert_files_clean(&world);
    assert!(world.faces().is_empty());
}
