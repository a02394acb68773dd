//! Outage signals on-call can trust: nothing getting through is exit 6 however few rows there
//! are, a refused key is exit 3 even on a night with nothing to send, and both say what failed
//! and where.

use crate::common::*;
use face_enroll::sandbox::SandboxConfig;

/// `run` of `manifest` against `endpoint`, three attempts per request, with `extra` flags.
fn run_against(
    world: &World,
    manifest: &std::path::Path,
    endpoint: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "run",
        manifest.to_str().unwrap(),
        "--endpoint",
        endpoint,
        "--progress",
        "off",
        "--max-attempts",
        "3",
    ];
    args.extend_from_slice(extra);
    world.command(&args).output().unwrap()
}

#[test]
fn an_unreachable_endpoint_with_one_row_to_add_exits_6_and_names_the_failure_and_the_host() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    let port = closed_port();
    let endpoint = format!("http://127.0.0.1:{port}/");
    let out = run_against(&world, &manifest, &endpoint, &[]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{said}");
    // The fault really happened: every attempt was refused at connect.
    assert!(said.contains("connection refused"), "{said}");
    assert!(said.contains(&format!("127.0.0.1:{port}")), "{said}");
    assert!(said.contains("ConnectFailed"), "{said}");
    // The start-up log named where requests go and whose key signs them.
    let start = said
        .lines()
        .find(|l| l.contains("connecting"))
        .unwrap_or_else(|| panic!("no start-up line: {said}"));
    assert!(start.contains(&endpoint), "{start}");
    assert!(start.contains("credentials=environment"), "{start}");
}

#[test]
fn an_endpoint_that_accepts_and_never_answers_is_an_outage_exit_6_naming_the_timeout_and_the_host()
{
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    // A gateway that takes every connection and never answers: held open, bounded in time.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let (done, stop) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < until && stop.try_recv().is_err() {
            if let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        held.len()
    });
    let endpoint = format!("http://127.0.0.1:{port}/");
    let out = run_against(&world, &manifest, &endpoint, &["--timeout", "1"]);
    let _ = done.send(());
    let accepted = holder.join().unwrap();
    let said = stderr(&out);
    // The fault really happened: the connections were taken, and none was answered.
    assert!(accepted >= 1, "no connection reached the listener: {said}");
    assert_eq!(out.status.code(), Some(6), "{said}");
    assert!(
        said.contains(&format!("timed out waiting for 127.0.0.1:{port} to answer")),
        "{said}"
    );
}

#[test]
fn a_rotated_secret_with_nothing_to_send_exits_3_and_names_the_code_and_the_endpoint() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 2));
    let first = world.run(&manifest, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(world.faces().len(), 2);
    let url = world.sandbox.base_url();
    let night = |extra: &[&str]| {
        let mut args = vec![
            "run",
            manifest.to_str().unwrap(),
            "--endpoint",
            &url,
            "--progress",
            "off",
        ];
        args.extend_from_slice(extra);
        world
            .command(&args)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "rotated-away")
            .output()
            .unwrap()
    };
    let before = world.sandbox.snapshot().stats.requests;
    let out = night(&[]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert_eq!(
        world.sandbox.snapshot().stats.requests,
        before + 1,
        "one read was really sent, and refused"
    );
    assert!(said.contains("SignatureDoesNotMatch"), "{said}");
    assert!(said.contains(&url), "where: {said}");
    // Skipping the check sends nothing and cannot notice.
    let requests = world.sandbox.snapshot().stats.requests;
    let skipped = night(&["--no-probe"]);
    assert_eq!(skipped.status.code(), Some(0), "{}", stderr(&skipped));
    assert_eq!(world.sandbox.snapshot().stats.requests, requests);
    assert_eq!(world.faces().len(), 2);
}

#[test]
fn a_run_refused_for_want_of_credentials_still_writes_its_metrics_file_with_exit_3() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    let metrics = world.path("run.prom");
    let url = world.sandbox.base_url();
    let out = world
        .command(&[
            "run",
            manifest.to_str().unwrap(),
            "--endpoint",
            &url,
            "--metrics",
            metrics.to_str().unwrap(),
        ])
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        // Never ask a metadata service off this machine.
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(world.sandbox.snapshot().stats.requests, 0);
    let prom = std::fs::read_to_string(&metrics)
        .unwrap_or_else(|e| panic!("no metrics file ({e}): {}", stderr(&out)));
    assert!(prom.contains("face_enroll_last_run_exit_code 3"), "{prom}");
}

#[test]
fn a_refused_key_while_planning_exits_3_and_leaves_no_empty_ledger_behind() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    let ledger = world.path("m.ledger.jsonl");
    let url = world.sandbox.base_url();
    let m = manifest.to_str().unwrap();
    let with_rotated_key = |args: &[&str]| {
        world
            .command(args)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "rotated-away")
            .output()
            .unwrap()
    };
    // run --sync --sync-scope library reads the library before it writes anything.
    let before = world.sandbox.snapshot().stats.requests;
    let run = with_rotated_key(&[
        "run",
        m,
        "--endpoint",
        &url,
        "--progress",
        "off",
        "--sync",
        "--sync-scope",
        "library",
    ]);
    let said = stderr(&run);
    assert_eq!(run.status.code(), Some(3), "{said}");
    assert!(said.contains("SignatureDoesNotMatch"), "{said}");
    assert!(
        world.sandbox.snapshot().stats.requests > before,
        "it was sent"
    );
    assert!(!ledger.exists(), "an empty ledger was left behind");
    // verify --repair --yes locks (and would create) the ledger before it reads the server.
    let repair = with_rotated_key(&["verify", m, "--endpoint", &url, "--repair", "--yes"]);
    assert_eq!(repair.status.code(), Some(3), "{}", stderr(&repair));
    assert!(!ledger.exists(), "verify left an empty ledger behind");
    assert!(world.faces().is_empty());
}
