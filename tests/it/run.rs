//! `face-enroll run` end to end: the real binary against the sandbox over TCP, asserting on what
//! the sandbox really holds afterwards.

use std::time::Duration;

use crate::common::*;
use face_enroll::ledger::Lock;
use face_enroll::sandbox::{Fault, FaultRates, SandboxConfig};

fn sample_manifest() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/faces.csv")
}

#[test]
fn the_sample_registers_every_valid_image_once_and_the_ledger_agrees_with_the_sandbox() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.path("faces.csv");
    std::fs::copy(sample_manifest(), &manifest).unwrap();
    let summary = world.path("summary.json");
    let rejects = world.path("rejects.csv");
    let out = world.run(
        &manifest,
        &[
            "--summary",
            summary.to_str().unwrap(),
            "--rejects",
            rejects.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "one bad row and two over-limit rows: {}",
        stderr(&out)
    );

    let state = world.sandbox.snapshot();
    let copies = copies_per_url(&state);
    assert_eq!(copies.len(), 37, "40 rows - 1 invalid - 2 over the limit");
    assert!(
        copies.values().all(|&n| n == 1),
        "an image registered twice: {copies:?}"
    );

    let ledger = world.path("faces.ledger.jsonl");
    let last = last_per_image(&ledger);
    let server_ids: std::collections::HashSet<String> =
        faces_of(&state).into_iter().map(|f| f.3).collect();
    let registered: Vec<_> = last
        .values()
        .filter(|r| r["status"] == "registered")
        .collect();
    assert_eq!(registered.len(), 37);
    for record in &registered {
        assert!(
            server_ids.contains(record["face_id"].as_str().unwrap()),
            "ledger FaceId unknown to the server: {record}"
        );
        assert!(record["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(record["v"], 1);
    }
    assert_eq!(
        last.values().filter(|r| r["status"] == "invalid").count(),
        1
    );
    let skipped: Vec<_> = last.values().filter(|r| r["status"] == "skipped").collect();
    assert_eq!(skipped.len(), 2);
    assert!(skipped.iter().all(|r| {
        r["image_url"]
            .as_str()
            .unwrap()
            .contains("anchor-wang-fang")
    }));

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    assert_eq!(summary["registered_now"], 37);
    assert_eq!(summary["invalid"], 1);
    assert_eq!(summary["skipped"], 2);
    assert_eq!(summary["exit_code"], 1);
    let rejects = std::fs::read_to_string(rejects).unwrap();
    assert_eq!(rejects.lines().count(), 4, "header + 3 rows: {rejects}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&ledger).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_rerun_with_everything_registered_sends_nothing_and_exits_zero() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 5, 3));
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(0));
    let before = world.sandbox.snapshot().stats.requests;
    let lines_before = ledger_lines(&world.path("m.ledger.jsonl")).len();
    let again = world.run(&manifest, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    // Only the one read that checks the endpoint and the credentials (`--no-probe`: none).
    assert_eq!(
        world.sandbox.snapshot().stats.requests,
        before + 1,
        "a finished import sent requests"
    );
    let quiet = world.run(&manifest, &["--no-probe"]);
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    assert_eq!(world.sandbox.snapshot().stats.requests, before + 1);
    let lines_after = ledger_lines(&world.path("m.ledger.jsonl"));
    // Besides the first re-run's `settled` records (it read the persons the first run created
    // images for once more, in place of the probe).
    let lines_after: Vec<_> = lines_after
        .iter()
        .filter(|l| l["kind"] != "settled")
        .collect();
    assert_eq!(
        lines_after.len(),
        lines_before + 4,
        "only the two runs' starts and ends are added"
    );
    assert_eq!(world.faces().len(), 15);
}

#[test]
fn errors_after_apply_and_lost_answers_never_leave_a_duplicate() {
    let mut config = SandboxConfig::for_tests();
    config.faults = FaultRates {
        error_after: 0.25,
        reset_after: 0.1,
        malformed_after: 0.05,
        error_before: 0.1,
        ..FaultRates::default()
    };
    let world = World::new(config);
    let manifest = world.manifest("m.csv", &manifest_body("lib", 20, 5));
    let summary = world.path("s.json");
    let out = world.run(
        &manifest,
        &[
            "--summary",
            summary.to_str().unwrap(),
            "--max-attempts",
            "20",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let copies = copies_per_url(&world.sandbox.snapshot());
    assert_eq!(copies.len(), 100);
    assert!(
        copies.values().all(|&n| n == 1),
        "duplicates: {:?}",
        copies.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    assert!(
        summary["recovered"].as_u64().unwrap() > 0,
        "no fault was recovered by a look-up: {summary}"
    );
    assert!(summary["lookups"].as_u64().unwrap() > 0);
    let recovered = last_per_image(&world.path("m.ledger.jsonl"))
        .values()
        .filter(|r| r["recovered"] == true)
        .count();
    assert_eq!(recovered as u64, summary["recovered"].as_u64().unwrap());
}

#[test]
fn kill_9_at_random_moments_then_resume_registers_each_image_exactly_once() {
    let mut config = SandboxConfig::for_tests();
    config.latency_ms = 4;
    config.latency_jitter_ms = 3;
    config.faults = FaultRates {
        error_after: 0.15,
        reset_after: 0.05,
        ..FaultRates::default()
    };
    let world = World::new(config);
    let manifest = world.manifest("m.csv", &manifest_body("lib", 120, 5));
    let url = world.sandbox.base_url();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut kills = 0;
    // Until twelve kills have landed mid-run (a run that finishes first does not count),
    // bounded; each killed run gets through a few dozen images of the 600.
    for _ in 0..40 {
        if kills == 12 {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = Duration::from_millis(30 + rng % 220);
        if kill_after(
            &mut world.command(&[
                "run",
                manifest.to_str().unwrap(),
                "--endpoint",
                &url,
                "--progress",
                "off",
                "--qps",
                "200",
                "-q",
            ]),
            wait,
        ) {
            kills += 1;
        }
    }
    assert!(kills >= 10, "only {kills} kills landed mid-run");
    let out = world.run(&manifest, &["--qps", "400", "--max-attempts", "30"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    let copies = copies_per_url(&state);
    assert_eq!(copies.len(), 600, "an image is missing");
    assert!(
        copies.values().all(|&n| n == 1),
        "an image was registered twice"
    );
    let server_ids: std::collections::HashSet<String> =
        faces_of(&state).into_iter().map(|f| f.3).collect();
    let last = last_per_image(&world.path("m.ledger.jsonl"));
    assert_eq!(last.len(), 600);
    for record in last.values() {
        assert_eq!(record["status"], "registered");
        assert!(
            server_ids.contains(record["face_id"].as_str().unwrap()),
            "a ledger FaceId the server lacks"
        );
    }
}

#[test]
fn ctrl_c_finishes_requests_in_flight_exits_130_and_the_next_run_completes() {
    let mut config = SandboxConfig::for_tests();
    config.latency_ms = 40;
    let world = World::new(config);
    let manifest = world.manifest("m.csv", &manifest_body("lib", 100, 2));
    let url = world.sandbox.base_url();
    let child = world
        .command(&[
            "run",
            manifest.to_str().unwrap(),
            "--endpoint",
            &url,
            "--progress",
            "off",
            "--qps",
            "50",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the sandbox holds a face: the run is under way (bounded: 20 s at most).
    let started = std::time::Instant::now();
    while world.faces().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no face registered within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let ledger = world.path("m.ledger.jsonl");
    let lines = ledger_lines(&ledger);
    assert_eq!(
        lines.last().unwrap()["kind"],
        "run_end",
        "the run's end was not recorded"
    );
    let registered_in_ledger = last_per_image(&ledger)
        .values()
        .filter(|r| r["status"] == "registered")
        .count();
    let on_server = world.faces().len();
    assert!(
        on_server > 0 && on_server < 200,
        "{on_server} faces: the interrupt came too late or too early"
    );
    assert_eq!(
        registered_in_ledger, on_server,
        "every face the server took is in the ledger"
    );
    let again = world.run(&manifest, &["--qps", "200"]);
    assert_eq!(again.status.code(), Some(0));
    let copies = copies_per_url(&world.sandbox.snapshot());
    assert_eq!(copies.len(), 200);
    assert!(copies.values().all(|&n| n == 1));
}

#[test]
fn throttling_slows_the_run_down_and_nothing_is_lost_or_doubled() {
    let mut config = SandboxConfig::for_tests();
    config.mts_qps = 30;
    config.retry_after_ms = Some(200);
    let world = World::new(config);
    let manifest = world.manifest("m.csv", &manifest_body("lib", 30, 3));
    let summary = world.path("s.json");
    let out = world.run(
        &manifest,
        &[
            "--qps",
            "100",
            "--max-attempts",
            "30",
            "--summary",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    assert!(
        summary["throttled"].as_u64().unwrap() > 0,
        "the server never throttled: {summary}"
    );
    let state = world.sandbox.snapshot();
    assert!(state.stats.throttled > 0);
    let copies = copies_per_url(&state);
    assert_eq!(copies.len(), 90);
    assert!(copies.values().all(|&n| n == 1));
}

#[test]
fn a_rejected_secret_stops_the_run_with_exit_3_and_says_what_to_do() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 5, 2));
    let url = world.sandbox.base_url();
    let out = world
        .command(&[
            "run",
            manifest.to_str().unwrap(),
            "--endpoint",
            &url,
            "--progress",
            "off",
        ])
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "wrong-secret-value")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(err.contains("what to do"), "{err}");
    assert!(
        !err.contains("wrong-secret-value"),
        "the secret leaked into stderr"
    );
    assert!(world.faces().is_empty());
}

#[test]
fn a_second_run_on_a_locked_ledger_exits_4_at_once() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 2, 2));
    let _held = Lock::acquire(&world.path("m.ledger.jsonl")).unwrap();
    let out = world.run(&manifest, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("pid {}", std::process::id())),
        "{}",
        stderr(&out)
    );
    assert!(world.faces().is_empty());
}

#[test]
fn max_duration_stops_starting_work_exits_5_and_the_next_run_finishes() {
    let mut config = SandboxConfig::for_tests();
    config.latency_ms = 30;
    let world = World::new(config);
    let manifest = world.manifest("m.csv", &manifest_body("lib", 100, 2));
    let out = world.run(&manifest, &["--qps", "40", "--max-duration", "1s"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopped early: --max-duration passed"),
        "the ending says the deadline passed: {}",
        stderr(&out)
    );
    let partial = world.faces().len();
    assert!(partial > 0 && partial < 200, "{partial}");
    let out = world.run(&manifest, &["--qps", "400"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let copies = copies_per_url(&world.sandbox.snapshot());
    assert_eq!(copies.len(), 200);
    assert!(copies.values().all(|&n| n == 1));
}

#[test]
fn attempts_running_out_exit_5_and_the_image_is_retried_next_run() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    world.sandbox.script(
        "RegisterCustomFace",
        vec![Fault::ErrorBefore, Fault::ErrorBefore],
    );
    let out = world.run(&manifest, &["--max-attempts", "2"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let last = last_per_image(&world.path("m.ledger.jsonl"));
    let record = last.values().next().unwrap();
    assert_eq!(record["status"], "failed");
    assert_eq!(record["retryable"], true);
    assert_eq!(record["error_code"], "InternalError");
    assert!(world.faces().is_empty());
    let out = world.run(&manifest, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 1);
}

#[test]
fn a_row_the_service_rejects_is_recorded_as_failed_and_not_retried() {
    let world = World::new(SandboxConfig::for_tests());
    let body = "category_id,person_id,image_url\nlib,p1,https://img.example.com/noface.jpg\nlib,p1,https://img.example.com/ok.jpg\n";
    let manifest = world.manifest("m.csv", body);
    let rejects = world.path("rejects.csv");
    let out = world.run(&manifest, &["--rejects", rejects.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rejects = std::fs::read_to_string(rejects).unwrap();
    let row = rejects
        .lines()
        .nth(1)
        .expect("the refused row is in the rejects file");
    assert!(
        row.starts_with("2,lib,p1,https://img.example.com/noface.jpg,failed,InvalidParameter"),
        "{row}"
    );
    let last = last_per_image(&world.path("m.ledger.jsonl"));
    let bad = &last["https://img.example.com/noface.jpg"];
    assert_eq!(bad["status"], "failed");
    assert!(
        bad["error_code"]
            .as_str()
            .unwrap()
            .starts_with("InvalidParameter"),
        "{bad}"
    );
    assert_eq!(
        last["https://img.example.com/ok.jpg"]["status"],
        "registered"
    );
    let registers = world
        .sandbox
        .snapshot()
        .stats
        .by_action
        .get("RegisterCustomFace")
        .copied()
        .unwrap_or(0);
    assert_eq!(registers, 2, "the rejected row was retried");
    let again = world.run(&manifest, &["--retry-failed"]);
    assert_eq!(again.status.code(), Some(1));
    let registers = world
        .sandbox
        .snapshot()
        .stats
        .by_action
        .get("RegisterCustomFace")
        .copied()
        .unwrap_or(0);
    assert_eq!(
        registers, 3,
        "--retry-failed sends the failed row once more, and only it"
    );
}

#[test]
fn ids_differing_only_in_case_are_one_person_and_the_ten_image_limit_holds() {
    let world = World::new(SandboxConfig::for_tests());
    let mut body = String::from("category_id,person_id,image_url\n");
    for i in 0..12 {
        let person = if i % 2 == 0 { "Alice" } else { "alice" };
        body.push_str(&format!("Lib,{person},https://img.example.com/a{i}.jpg\n"));
    }
    body.push_str("lib,ALICE,https://img.example.com/a0.jpg\n");
    let manifest = world.manifest("m.csv", &body);
    let out = world.run(&manifest, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "two rows over the limit: {}",
        stderr(&out)
    );
    let faces = world.faces();
    assert_eq!(faces.len(), 10);
    let first_ten: Vec<String> = (0..10)
        .map(|i| format!("https://img.example.com/a{i}.jpg"))
        .collect();
    assert!(
        faces.iter().all(|f| first_ten.contains(&f.2)),
        "the first rows in manifest order win"
    );
}

#[test]
fn json_logs_make_every_stderr_line_one_json_object_with_the_summary_as_fields() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 3, 2));
    let out = world.run(&manifest, &["--log-format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let summary = events
        .iter()
        .find(|e| e["fields"]["message"] == "summary")
        .expect("a summary event");
    assert_eq!(summary["fields"]["registered_now"], 6);
    assert_eq!(summary["fields"]["exit_code"], 0);
    // Nested figures are JSON, not strings holding JSON; a run that did not stop says null.
    let fields = &summary["fields"];
    for nested in ["refused_by_code", "invalid_by_column", "retries_ran_out"] {
        assert!(fields[nested].is_object(), "{nested}: {}", fields[nested]);
    }
    assert!(fields["hints"].is_array(), "{}", fields["hints"]);
    assert!(
        fields.get("stopped_because").is_some_and(|v| v.is_null()),
        "{fields}"
    );
}

#[test]
fn without_a_terminal_progress_is_a_periodic_log_line_with_the_figures() {
    let mut config = SandboxConfig::for_tests();
    config.latency_ms = 20;
    let world = World::new(config);
    let manifest = world.manifest("m.csv", &manifest_body("lib", 20, 2));
    let url = world.sandbox.base_url();
    let m = manifest.to_str().unwrap();
    let out = world
        .command(&[
            "run",
            m,
            "--endpoint",
            &url,
            "--qps",
            "60",
            "--progress",
            "auto",
        ])
        .env("FACE_ENROLL_PROGRESS_EVERY_MS", "100")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("progress"))
        .unwrap_or_else(|| panic!("no progress line (stderr is not a terminal here): {err}"));
    for field in [
        "done=",
        "total=40",
        "rate_per_s=",
        "eta_s=",
        "failed=",
        "throttled=",
    ] {
        assert!(line.contains(field), "{field} missing from: {line}");
    }
}

#[test]
fn a_dead_endpoint_stops_the_run_with_its_own_exit_code_instead_of_resumable() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 6, 2));
    // A closed port on this machine: every attempt is refused before anything is sent.
    let out = world
        .command(&[
            "run",
            manifest.to_str().unwrap(),
            "--endpoint",
            "http://127.0.0.1:1/",
            "--progress",
            "off",
            "--timeout",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("unreachable"), "{}", stderr(&out));
    assert_eq!(world.sandbox.snapshot().stats.requests, 0);
}

#[test]
fn a_manifest_whose_rows_carry_invisible_characters_or_oversized_values_marks_them_invalid() {
    let world = World::new(SandboxConfig::for_tests());
    let long_url = format!("https://img.example.com/{}.jpg", "a".repeat(3000));
    let body = format!(
        "category_id,person_id,person_name,image_url\n\
         lib,ali\u{200B}ce,Alice,https://img.example.com/a.jpg\n\
         lib,bob,{},https://img.example.com/b.jpg\n\
         lib,carol,Carol,{long_url}\n\
         lib,dave,Dave,https://img.example.com/d.jpg\n",
        "名".repeat(600)
    );
    let manifest = world.manifest("m.csv", &body);
    let out = world.run(&manifest, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let faces = world.faces();
    assert_eq!(faces.len(), 1, "only dave's row is sendable: {faces:?}");
    let last = last_per_image(&world.path("m.ledger.jsonl"));
    let invalid = last.values().filter(|r| r["status"] == "invalid").count();
    assert_eq!(invalid, 3);
}

#[test]
fn a_person_waiting_out_a_killed_runs_request_goes_last_and_holds_no_slot_meanwhile() {
    // The ledger of a run killed a moment ago: one request for `waiter` may still be in
    // flight, so nothing is done for that person until it can no longer land. With one
    // worker, `waiter` (first in the manifest) must not hold it while the others wait.
    let world = World::new(SandboxConfig::for_tests());
    let mut body = String::from("category_id,person_id,image_url\n");
    body.push_str("lib,waiter,https://img.example.com/waiter/0.jpg\n");
    for p in 0..6 {
        body.push_str(&format!("lib,p{p},https://img.example.com/p{p}/0.jpg\n"));
    }
    let manifest = world.manifest("m.csv", &body);
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::fs::write(
        world.path("m.ledger.jsonl"),
        format!(
            "{{\"v\":1,\"kind\":\"image\",\"ts\":\"{now}\",\"run\":\"r0\",\"status\":\"pending\",\
             \"category_id\":\"lib\",\"person_id\":\"waiter\",\
             \"image_url\":\"https://img.example.com/waiter/0.jpg\",\"line\":2}}\n"
        ),
    )
    .unwrap();
    let out = world.run(&manifest, &["--concurrency", "1", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 7, "{:?}", world.faces());
    let order: Vec<String> = ledger_lines(&world.path("m.ledger.jsonl"))
        .iter()
        .filter(|l| l["kind"] == "image" && l["status"] == "registered")
        .map(|l| l["person_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order.len(), 7, "{order:?}");
    assert_eq!(
        order.last().map(String::as_str),
        Some("waiter"),
        "{order:?}"
    );
}
