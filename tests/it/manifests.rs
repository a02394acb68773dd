//! Bad manifests through the real binary: unreadable ones exit 2 before anything is sent, naming
//! the file and line; bad rows are recorded and the rest goes on. Never a panic.

use crate::common::*;
use face_enroll::sandbox::SandboxConfig;

const HEADER: &str = "category_id,person_id,image_url\n";

/// Runs `check` and `run` on `bytes`; returns (check output, run output).
fn both(world: &World, name: &str, bytes: &[u8]) -> (std::process::Output, std::process::Output) {
    let path = world.path(name);
    std::fs::write(&path, bytes).unwrap();
    let check = world
        .command(&["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    let run = world.run(&path, &[]);
    (check, run)
}

fn assert_no_panic(out: &std::process::Output) {
    let err = stderr(out);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {err}"
    );
}

/// Fatal kinds: exit 2 from both commands, the message names the file (and line), nothing sent.
#[test]
fn unreadable_manifests_exit_2_naming_file_and_line_and_send_nothing() {
    let world = World::new(SandboxConfig::for_tests());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.csv", b"".to_vec(), "empty"),
        ("blank.csv", b"\n\n  \n".to_vec(), "header"),
        (
            "no-url.csv",
            b"category_id,person_id\nlib,p,https://x.example/a.jpg\n".to_vec(),
            "image_url",
        ),
        (
            "no-person.csv",
            b"CategoryId,ImageUrl\nlib,https://x.example/a.jpg\n".to_vec(),
            "person_id",
        ),
        (
            "twice.csv",
            b"category_id,person_id,image_url,Image-URL\nl,p,https://x/a,https://x/b\n".to_vec(),
            "image_url",
        ),
        (
            "binary.csv",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00".to_vec(),
            "line 1",
        ),
        (
            "latin1-header.csv",
            b"category_id,person_id,image_url,caf\xe9\nl,p,https://x/a\n".to_vec(),
            "line 1",
        ),
        (
            "semicolons.csv",
            b"category_id;person_id;image_url\nl;p;https://x/a\n".to_vec(),
            "looks semicolon-separated",
        ),
    ];
    let mut kinds = 0;
    for (name, bytes, needle) in cases {
        let (check, run) = both(&world, name, &bytes);
        for out in [&check, &run] {
            assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(out));
            let err = stderr(out);
            assert!(
                err.contains(name),
                "{name}: the message does not name the file: {err}"
            );
            assert!(
                err.to_lowercase().contains(&needle.to_lowercase()),
                "{name}: expected '{needle}' in: {err}"
            );
            assert_no_panic(out);
        }
        kinds += 1;
    }
    for (name, path) in [
        ("missing", world.path("does-not-exist.csv")),
        ("directory", world.dir.path().to_path_buf()),
    ] {
        let out = world.run(&path, &[]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert_no_panic(&out);
        kinds += 1;
    }
    assert!(kinds >= 10);
    assert_eq!(
        world.sandbox.snapshot().stats.requests,
        0,
        "an unreadable manifest sent requests"
    );
    // Nothing is left beside a manifest the run refused: no empty ledger, no lock note (the
    // directory's default ledger would sit beside the directory itself).
    let mut left: Vec<String> = std::fs::read_dir(world.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".ledger.jsonl"))
        .collect();
    let beside = world.dir.path().with_extension("ledger.jsonl");
    if beside.exists() {
        left.push(beside.display().to_string());
    }
    assert!(left.is_empty(), "left behind: {left:?}");
    // A ledger that was there before the run is the operator's: kept, even when empty.
    let kept = world.path("kept.ledger.jsonl");
    std::fs::write(&kept, b"").unwrap();
    let (_, run) = both(&world, "kept.csv", b"\x00\x01binary\xff");
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(kept.exists(), "a ledger the run did not create was removed");
}

/// Row-level kinds: the bad row is recorded `invalid` with its line, good rows go through, exit 1.
#[test]
fn bad_rows_are_recorded_as_invalid_with_their_line_and_the_rest_is_registered() {
    let world = World::new(SandboxConfig::for_tests());
    let long_id = "x".repeat(121);
    let bad_rows: Vec<(String, &str)> = vec![
        (" ,p1,https://img.example.com/1.jpg".into(), "category_id"),
        ("lib,   ,https://img.example.com/2.jpg".into(), "person_id"),
        (
            format!("lib,{long_id},https://img.example.com/3.jpg"),
            "120",
        ),
        (
            "Celebrity,p1,https://img.example.com/4.jpg".into(),
            "system",
        ),
        ("lib,p1,ftp://img.example.com/5.jpg".into(), "image_url"),
        ("lib,p1,img.example.com/6.jpg".into(), "image_url"),
        ("lib,p1,https:///7.jpg".into(), "image_url"),
        ("lib,p1".into(), "image_url"),
    ];
    let mut body = String::from(HEADER);
    body.push_str("lib,good,https://img.example.com/ok-1.jpg\n");
    for (row, _) in &bad_rows {
        body.push_str(row);
        body.push('\n');
    }
    body.push_str("lib,good,\"https://img.example.com/ok-2.jpg\"\n");
    let bytes = body.into_bytes();
    let path = world.path("rows.csv");
    std::fs::write(&path, &bytes).unwrap();

    let check = world
        .command(&["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let plan = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(plan.contains("invalid rows: 8"), "{plan}");
    for line in 3..=10 {
        assert!(
            plan.contains(&format!("line {line}:")),
            "line {line} missing from: {plan}"
        );
    }
    assert_eq!(
        world.sandbox.snapshot().stats.requests,
        0,
        "check sent requests"
    );

    let out = world.run(&path, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_no_panic(&out);
    let records = ledger_lines(&world.path("rows.ledger.jsonl"));
    let invalid: Vec<_> = records
        .iter()
        .filter(|r| r["status"] == "invalid")
        .collect();
    assert_eq!(invalid.len(), 8);
    for (i, (_, needle)) in bad_rows.iter().enumerate() {
        let record = invalid
            .iter()
            .find(|r| r["line"] == (i as u64 + 3))
            .expect("invalid record for the line");
        let reason = record["reason"].as_str().unwrap().to_lowercase();
        assert!(
            reason.contains(needle),
            "line {}: expected '{needle}' in '{reason}'",
            i + 3
        );
    }
    let summary = stderr(&out);
    assert!(
        summary.contains("invalid rows by column: category_id ×2, image_url ×4, person_id ×2"),
        "{summary}"
    );
    let mut urls: Vec<String> = world.faces().into_iter().map(|f| f.2).collect();
    urls.sort();
    assert_eq!(
        urls,
        vec![
            "https://img.example.com/ok-1.jpg",
            "https://img.example.com/ok-2.jpg"
        ]
    );

    // The same rows again are known rejections: cron sees 0, unless it asks for --strict.
    let again = world.run(&path, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("known rejections 8"),
        "{}",
        stderr(&again)
    );
    let strict = world.run(&path, &["--strict"]);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    let after = ledger_lines(&world.path("rows.ledger.jsonl"));
    // `settled`: the first re-run read once more the persons the first run created images for.
    let after: Vec<_> = after.iter().filter(|l| l["kind"] != "settled").collect();
    assert_eq!(
        after.len(),
        records.len() + 4,
        "invalid rows were recorded twice"
    );
}

#[test]
fn bom_crlf_quoting_and_header_spellings_are_all_read() {
    let world = World::new(SandboxConfig::for_tests());
    let body = "\u{feff}Category-ID,PersonId,Person_Name,IMAGE_URL,notes\r\n\
                lib,\"p, one\",\"Name \"\"Q\"\"\",https://img.example.com/q1.jpg,\"multi\r\nline\"\r\n\
                lib,p2,,https://img.example.com/q2.jpg,\r\n";
    let path = world.manifest("bom.csv", body);
    let out = world.run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let faces = world.faces();
    assert_eq!(faces.len(), 2);
    assert!(faces.iter().any(|f| f.1 == "p, one"));
    let state = world.sandbox.snapshot();
    let names: Vec<_> = state.mts.categories[0]
        .persons
        .iter()
        .filter_map(|p| p.person_name.clone())
        .collect();
    assert_eq!(names, vec!["Name \"Q\"".to_string()]);
    let records = ledger_lines(&world.path("bom.ledger.jsonl"));
    let q2 = records
        .iter()
        .find(|r| r["image_url"] == "https://img.example.com/q2.jpg")
        .unwrap();
    assert_eq!(q2["line"], 4, "line numbers count the embedded newline");
}

#[test]
fn a_damaged_ledger_line_stops_the_run_with_the_ledger_line_and_nothing_is_sent() {
    let world = World::new(SandboxConfig::for_tests());
    let path = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    std::fs::write(
        world.path("m.ledger.jsonl"),
        "{\"v\":1,\"kind\":\"image\"\nnot json\n{}\n",
    )
    .unwrap();
    let out = world.run(&path, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("m.ledger.jsonl") && err.contains("line 1"),
        "{err}"
    );
    assert_eq!(world.sandbox.snapshot().stats.requests, 0);
}

#[test]
fn bad_flags_are_usage_errors_with_exit_2() {
    let world = World::new(SandboxConfig::for_tests());
    let path = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    for args in [
        vec!["--qps", "-1"],
        vec!["--max-attempts", "0"],
        vec!["--max-duration", "soon"],
        vec!["--progress", "sometimes"],
        vec!["--concurrency", "0"],
    ] {
        let out = world.run(&path, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_no_panic(&out);
    }
    assert_eq!(world.sandbox.snapshot().stats.requests, 0);
}

/// A manifest still being written: a thread appends rows to it while `check` and then `run`
/// read it. Both refuse it (exit 2, "changed while it was read"), nothing is sent, and the
/// ledger gets no image record.
#[test]
fn a_manifest_appended_to_while_it_is_read_is_refused_and_nothing_is_sent() {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let world = World::new(SandboxConfig::for_tests());
    // 100,000 rows: reading and planning them takes far longer than the writer's pause.
    let path = world.manifest("growing.csv", &manifest_body("lib", 20_000, 5));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, done) = (path.clone(), done.clone());
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut appended = 0u64;
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline && appended < 200_000 {
                let row = format!(
                    "lib,late-{appended},Late,https://img.example.com/late/{appended}.jpg\n"
                );
                file.write_all(row.as_bytes()).unwrap();
                appended += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            appended
        })
    };
    let check = world
        .command(&["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    // Bounded: were the change missed, the run would import for at most this long (and fail
    // the exit-code assertion) instead of registering every row.
    let run = world.run(&path, &["--max-duration", "20s"]);
    done.store(true, Ordering::SeqCst);
    let appended = writer.join().unwrap();
    assert!(appended > 0, "the writer never appended");
    for out in [&check, &run] {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
        let err = stderr(out);
        assert!(
            err.contains("growing.csv") && err.contains("changed while it was read"),
            "{err}"
        );
        assert_no_panic(out);
    }
    let state = world.sandbox.snapshot();
    assert_eq!(
        state.stats.requests, 0,
        "a manifest being written sent requests"
    );
    assert!(faces_of(&state).is_empty());
    let images = ledger_lines(&world.path("growing.ledger.jsonl"))
        .into_iter()
        .filter(|l| l["kind"] == "image")
        .count();
    assert_eq!(images, 0, "a manifest being written was recorded");
}

#[test]
fn check_refuses_a_ledger_of_another_target_as_run_does() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 2, 2));
    let out = world.run(&manifest, &["--target", "ice"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ice_ledger = world.path("m.ice.ledger.jsonl");
    let ledger = ice_ledger.to_str().unwrap();
    let requests = world.sandbox.snapshot().stats.requests;
    let run = world.run(&manifest, &["--ledger", ledger]);
    let check = world
        .command(&["check", manifest.to_str().unwrap(), "--ledger", ledger])
        .output()
        .unwrap();
    for (what, out) in [("run", &run), ("check", &check)] {
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(out));
        assert!(
            stderr(out).contains("records an import to target ice"),
            "{what}: {}",
            stderr(out)
        );
    }
    assert_eq!(world.sandbox.snapshot().stats.requests, requests);
}

#[test]
fn a_missing_manifest_without_credentials_is_a_usage_error_not_a_credentials_one() {
    let world = World::new(SandboxConfig::for_tests());
    let missing = world.path("nope.csv");
    let out = world
        .command(&["run", missing.to_str().unwrap(), "--progress", "off"])
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope.csv"), "{}", stderr(&out));
    assert!(!world.path("nope.ledger.jsonl").exists());
}
