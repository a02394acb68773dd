//! The sandbox's OSS driven by the official OSS SDK for Python (`tests/oss_sdk_check.py`, pinned
//! in `tests/oss-sdk-requirements.txt`, installed into `target/oss-venv` on first use), so its
//! signature checks meet the real signer, with the configured key and with STS credentials.
//! Skipped, with the reason printed, only when python3, venv or pip is missing; `.ci/run` sets
//! `FACE_ENROLL_REQUIRE_OSS_SDK`, which turns a skip into a failure.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use face_enroll::sandbox::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, SandboxConfig, SandboxThread,
};

/// The script's status when the SDK cannot be installed.
const CANNOT_INSTALL: i32 = 3;
/// An install from scratch included.
const SCRIPT_LIMIT: Duration = Duration::from_secs(600);

enum Ran {
    Passed,
    Skipped(String),
}

/// Runs the script against `endpoint`; a failed check panics with its stderr.
fn run_script(args: &[&str]) -> Ran {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oss_sdk_check.py");
    let mut child = match Command::new("python3")
        .arg(&script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => return Ran::Skipped(format!("python3 cannot be started: {error}")),
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > SCRIPT_LIMIT {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("tests/oss_sdk_check.py ran over {SCRIPT_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    let mut stdout = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    match status.code() {
        Some(0) => {
            println!("{stdout}");
            Ran::Passed
        }
        Some(CANNOT_INSTALL) => Ran::Skipped(format!("the OSS SDK cannot be installed: {stderr}")),
        _ => panic!("tests/oss_sdk_check.py failed ({status}):\n{stdout}\n{stderr}"),
    }
}

/// Temporary credentials from the sandbox's credentials URI, over plain TCP.
fn temporary_keys(sandbox: &SandboxThread) -> (String, String, String) {
    let mut stream = std::net::TcpStream::connect(sandbox.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            b"GET /__sandbox/credentials HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let text = |name: &str| json[name].as_str().unwrap().to_string();
    (
        text("AccessKeyId"),
        text("AccessKeySecret"),
        text("SecurityToken"),
    )
}

#[test]
fn oss_sdk_the_official_python_client_passes_the_sandboxs_checks() {
    let required = std::env::var_os("FACE_ENROLL_REQUIRE_OSS_SDK").is_some();
    let sandbox = SandboxThread::spawn(SandboxConfig::for_tests()).unwrap();
    let endpoint = format!("http://{}", sandbox.addr());
    let ran = run_script(&[&endpoint, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET]);
    if let Ran::Skipped(reason) = ran {
        assert!(
            !required,
            "FACE_ENROLL_REQUIRE_OSS_SDK is set, but: {reason}"
        );
        println!("SKIPPED oss_sdk_the_official_python_client_passes_the_sandboxs_checks: {reason}");
        return;
    }
    let (id, secret, token) = temporary_keys(&sandbox);
    assert!(matches!(
        run_script(&[&endpoint, &id, &secret, &token]),
        Ran::Passed
    ));

    let state = sandbox.snapshot().oss;
    let keys: Vec<&str> = state.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys.len(), 3, "alice, and one fresh key per run: {keys:?}");
    assert!(state.objects.iter().all(|o| o.bucket == "sdk-check"));
    assert!(
        keys[0] == "photos/alice.jpg" && keys[1..].iter().all(|k| k.starts_with("photos/bob-"))
    );
    // Per run: PUT ok, 409 (forbid-overwrite), ok (a fresh key with forbid-overwrite),
    // InvalidDigest; HEAD ok and one with a wrong secret; GET by the SDK and by urllib.
    let requests = &state.requests;
    assert_eq!((requests.put, requests.head, requests.get), (8, 4, 4));
    assert_eq!(requests.refused, 6, "{requests:?}");
}
