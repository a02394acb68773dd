//! The operator's view (issue 13) through the real binary: what failed and why, exit codes cron
//! can live with, `status --failed`, `runs`, output files, JSON logs, debug lines, encodings.

use std::process::Stdio;

use crate::common::*;
use face_enroll::sandbox::{Fault, SandboxConfig};

const REFUSED: &str = "category_id,person_id,person_name,image_url\n\
    lib,p1,P One,https://img.example.com/noface-1.jpg\n\
    lib,p1,P One,https://img.example.com/ok.jpg\n\
    lib,p2,P Two,https://img.example.com/noface-2.jpg\n\
    ,p3,P Three,https://img.example.com/bad-row.jpg\n";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn rejections_a_stopped_run_found_are_reported_with_exit_1_by_the_next_run_that_ends() {
    let world = World::new(SandboxConfig::for_tests());
    // A refusal and an invalid row first, then more than a second's work at 5/s.
    let mut body = String::from(REFUSED);
    for line in manifest_body("lib", 10, 3).lines().skip(1) {
        body.push_str(line);
        body.push('\n');
    }
    let manifest = world.manifest("m.csv", &body);
    let summary = world.path("s.json");
    let summary_flag = ["--summary", summary.to_str().unwrap()];
    let stopped = world.run(
        &manifest,
        &[&summary_flag[..], &["--qps", "5", "--max-duration", "1s"]].concat(),
    );
    assert_eq!(stopped.status.code(), Some(5), "{}", stderr(&stopped));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    // The faults really happened in the stopped run: the invalid row and a refusal.
    assert_eq!(json["invalid"], 1, "{json}");
    assert!(json["failed"].as_u64().unwrap() >= 1, "{json}");
    let found = json["new_rejections"].as_u64().unwrap();

    // The run that finishes says so with exit 1, counting them as new: the roster owner's
    // report is made from exit 1, and the stopped run's exit 5 made none.
    let finished = world.run(&manifest, &summary_flag);
    assert_eq!(finished.status.code(), Some(1), "{}", stderr(&finished));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(json["new_rejections"], 3, "{json}");
    assert!(found >= 2, "the stopped run found {found}");
    // Reported once: the next night is quiet.
    let quiet = world.run(&manifest, &summary_flag);
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(
        (
            json["new_rejections"].as_u64(),
            json["known_rejections"].as_u64()
        ),
        (Some(0), Some(3)),
        "{json}"
    );
}

#[test]
fn refusals_are_grouped_by_code_exit_1_once_and_are_known_rejections_after() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", REFUSED);
    let summary = world.path("s.json");
    let out = world.run(&manifest, &["--summary", summary.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refused by the service: InvalidParameter"),
        "{err}"
    );
    assert!(err.contains("×2"), "{err}");
    assert!(
        err.contains("invalid rows by column: category_id ×1"),
        "{err}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(json["new_rejections"], 3);
    let codes = json["refused_by_code"].as_object().unwrap();
    assert_eq!(codes.values().map(|n| n.as_u64().unwrap()).sum::<u64>(), 2);
    let reasons = json["refused_by_reason"].as_object().unwrap();
    assert!(
        reasons
            .keys()
            .all(|r| r.contains(": ImageUrl: exactly one frontal face")),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        2
    );
    assert_eq!(json["invalid_by_column"]["category_id"], 1);

    let before = world.sandbox.snapshot().stats.requests;
    let rejects = world.path("rejects.csv");
    let again = world.run(&manifest, &["--rejects", rejects.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("known rejections 3"),
        "{}",
        stderr(&again)
    );
    // Nothing is sent again: only the read that checks the endpoint and the credentials.
    assert_eq!(
        world.sandbox.snapshot().stats.requests,
        before + 1,
        "nothing is sent again"
    );
    let rejects = std::fs::read_to_string(&rejects).unwrap();
    let lines: Vec<&str> = rejects.lines().skip(1).map(|l| &l[..2]).collect();
    assert_eq!(
        lines,
        ["2,", "4,", "5,"],
        "earlier refusals, in line order: {rejects}"
    );
    let strict = world.run(&manifest, &["--strict"]);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));

    // `status --failed` lists what is not registered now, across runs.
    let ledger = world.path("m.ledger.jsonl");
    let listed = world
        .command(&["status", "--ledger", ledger.to_str().unwrap(), "--failed"])
        .output()
        .unwrap();
    assert_eq!(listed.status.code(), Some(0));
    let listed = text(&listed.stdout);
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert!(
        listed.contains("noface-2.jpg\tfailed\tInvalidParameter"),
        "{listed}"
    );
    let as_json = world
        .command(&["status", "m.csv", "--failed", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&as_json.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["line"], 2);
    assert_eq!(rows[2]["status"], "invalid");
    assert_eq!(
        last_per_image(&ledger)["https://img.example.com/ok.jpg"]["status"],
        "registered"
    );
}

#[test]
fn an_exit_5_says_retries_ran_out_and_on_what_and_quiet_still_prints_one_line() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    world.sandbox.script(
        "RegisterCustomFace",
        vec![Fault::ErrorBefore, Fault::ErrorBefore],
    );
    let summary = world.path("s.json");
    let out = world.run(
        &manifest,
        &[
            "--max-attempts",
            "2",
            "-q",
            "--summary",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("retries ran out"), "{err}");
    assert!(err.contains("InternalError ×1"), "{err}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(json["stopped_because"], "retries ran out");
    assert_eq!(json["retries_ran_out"]["InternalError"], 1);
    assert!(world.faces().is_empty());
}

#[test]
fn runs_lists_the_history_and_rollback_takes_a_unique_prefix() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 2, 2));
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(0));
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(0));
    let ledger = world.path("m.ledger.jsonl");
    let ledger = ledger.to_str().unwrap();
    let out = world
        .command(&["runs", "--ledger", ledger, "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (
            runs[0]["registered"].as_u64(),
            runs[0]["exit_code"].as_i64()
        ),
        (Some(4), Some(0))
    );
    assert_eq!(runs[1]["registered"], 0);
    let listed = text(
        &world
            .command(&["runs", "--ledger", ledger])
            .output()
            .unwrap()
            .stdout,
    );
    let first = runs[0]["run"].as_str().unwrap();
    assert!(listed.contains(&format!("{}\t", &first[..8])), "{listed}");

    let url = world.sandbox.base_url();
    let short = world
        .command(&[
            "rollback",
            "--ledger",
            ledger,
            "--run",
            &first[..3],
            "--endpoint",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(2));
    assert!(stderr(&short).contains("at least 6"), "{}", stderr(&short));
    let done = world
        .command(&[
            "rollback",
            "--ledger",
            ledger,
            "--run",
            &first[..8],
            "--yes",
            "--endpoint",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    assert!(world.faces().is_empty(), "the first run's faces are gone");
    // verify agrees, and says why the four images are not on the server.
    let verified = world
        .command(&[
            "verify",
            manifest.to_str().unwrap(),
            "--ledger",
            ledger,
            "--endpoint",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
    let report = text(&verified.stdout);
    assert!(
        report.contains("removed in the ledger 4 (not missing"),
        "{report}"
    );
}

#[test]
fn outputs_go_to_stdout_through_symlinks_privately_and_never_onto_the_ledger() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 2));
    let out = world.run(&manifest, &["--summary", "-"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["registered_now"], 2);

    let out = world.run(&manifest, &["--summary", "/dev/stdout"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["already_done"], 2);
    let dev_stdout = std::fs::symlink_metadata("/dev/stdout").unwrap();
    assert!(
        dev_stdout.file_type().is_symlink(),
        "/dev/stdout was replaced"
    );

    let real = world.path("real.json");
    let link = world.path("link.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = world.run(&manifest, &["--summary", link.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let ledger = world.path("m.ledger.jsonl");
    let before = std::fs::read(&ledger).unwrap();
    for flag in ["--summary", "--rejects", "--metrics"] {
        let out = world.run(&manifest, &[flag, ledger.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("would destroy it"),
            "{}",
            stderr(&out)
        );
    }
    let out = world.run(&manifest, &["--summary", manifest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        std::fs::read(&ledger).unwrap(),
        before,
        "the ledger is untouched"
    );
    let export = world
        .command(&["export", "m.csv", "-o", "m.ledger.jsonl.lock"])
        .output()
        .unwrap();
    assert_eq!(export.status.code(), Some(2), "{}", stderr(&export));
    let export = world
        .command(&["export", "m.csv", "-o", "-"])
        .output()
        .unwrap();
    assert_eq!(text(&export.stdout).lines().count(), 3);
}

#[test]
fn json_logs_cover_usage_errors_the_lock_and_a_missing_manifest() {
    let world = World::new(SandboxConfig::for_tests());
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "--log-format", "json", "--no-such-flag"],
        vec![
            "--log-format",
            "json",
            "run",
            "missing.csv",
            "--progress",
            "off",
        ],
        vec![
            "status",
            "--log-format",
            "json",
            "--ledger",
            "missing.jsonl",
        ],
        vec!["check", "missing.csv", "--log-format", "json"],
    ];
    for args in cases {
        let out = world.command(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(!err.trim().is_empty(), "{args:?}");
        for line in err.lines() {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(parsed.is_ok(), "{args:?}: not JSON: {line}");
        }
    }
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    let _lock = face_enroll::ledger::Lock::acquire(&world.path("m.ledger.jsonl")).unwrap();
    let out = world.run(&manifest, &["--log-format", "json"]);
    assert_eq!(out.status.code(), Some(4));
    for line in stderr(&out).lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "{line}"
        );
    }
}

#[test]
fn a_closed_stderr_is_never_a_panic() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", REFUSED);
    for extra in [&[][..], &["-q"], &["--no-such-flag"]] {
        let url = world.sandbox.base_url();
        let mut args = vec!["run", manifest.to_str().unwrap(), "--endpoint", &url];
        args.extend_from_slice(extra);
        let mut child = world
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stderr.take()); // the reading end is closed: every write is EPIPE
        let status = child.wait().unwrap();
        assert!(
            matches!(status.code(), Some(0..=2)),
            "{extra:?}: {status:?} (101 would be a panic)"
        );
    }
    assert!(world.faces().len() <= 1);
}

#[test]
fn debug_logs_one_line_per_request_and_never_a_secret() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 3));
    let out = world
        .command(&[
            "run",
            manifest.to_str().unwrap(),
            "--endpoint",
            &world.sandbox.base_url(),
            "--progress",
            "off",
        ])
        .env("FACE_ENROLL_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let requests = world.sandbox.snapshot().stats.requests;
    let per_request = err
        .lines()
        .filter(|l| l.contains("RegisterCustomFace") || l.contains("ListCustomPersons"))
        .filter(|l| l.contains("DEBUG"))
        .count() as u64;
    assert_eq!(per_request, requests, "{err}");
    assert!(
        !err.contains(face_enroll::sandbox::DEFAULT_ACCESS_KEY_SECRET),
        "{err}"
    );
    assert!(
        !err.contains("pooling idle connection"),
        "pool noise: {err}"
    );
    assert!(!err.to_lowercase().contains("hyper"), "{err}");
}

#[test]
fn unpaced_against_a_throttling_server_the_summary_says_to_lower_qps() {
    let mut config = SandboxConfig::for_tests();
    config.mts_qps = 5;
    let world = World::new(config);
    let manifest = world.manifest("m.csv", &manifest_body("lib", 10, 2));
    let summary = world.path("s.json");
    let out = world.run(
        &manifest,
        &[
            "--qps",
            "0",
            "--max-attempts",
            "30",
            "--summary",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let throttled = json["throttled"].as_u64().unwrap();
    assert!(throttled > 0, "the sandbox throttled nothing");
    // Unpaced against 5/s, most requests are throttled: the hint asks for a pace.
    let requests = json["requests"].as_u64().unwrap();
    assert!(throttled * 100 >= requests, "{throttled} of {requests}");
    let hint = format!("the service throttled {throttled} requests (");
    let err = stderr(&out);
    let line = err.lines().find(|l| l.contains(&hint)).unwrap_or_default();
    assert!(
        line.ends_with(&format!("% of {requests}): lower --qps")),
        "{err}"
    );
    assert_eq!(world.faces().len(), 20);
}

#[test]
fn bash_completion_offers_a_subcommands_flags_and_hides_test_flags() {
    let world = World::new(SandboxConfig::for_tests());
    let script = world
        .command(&["completions", "bash"])
        .output()
        .unwrap()
        .stdout;
    let path = world.path("face-enroll.bash");
    std::fs::write(&path, &script).unwrap();
    let lib_create = text(&script)
        .lines()
        .skip_while(|l| l.trim() != "face__enroll__subcmd__lib__subcmd__create)")
        .find(|l| l.trim().starts_with("opts="))
        .unwrap_or_default()
        .to_string();
    assert!(lib_create.contains("--name"), "{lib_create}");
    assert!(
        !lib_create.contains("--seed"),
        "a hidden flag is offered: {lib_create}"
    );
    let probe = format!(
        "source {}; COMP_WORDS=(face-enroll check --); COMP_CWORD=2; COMP_LINE='face-enroll check --'; \
         COMP_POINT=${{#COMP_LINE}}; _face__enroll face-enroll -- check; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .unwrap();
    let offered = text(&out.stdout);
    assert!(
        offered.lines().any(|l| l == "--ledger"),
        "{offered} {}",
        stderr(&out)
    );
    assert!(offered.lines().any(|l| l == "--encoding"), "{offered}");
    assert!(!offered.contains("--seed"), "{offered}");
}

#[test]
fn a_gbk_manifest_is_registered_with_its_chinese_names_and_a_broken_one_not_at_all() {
    let world = World::new(SandboxConfig::for_tests());
    let body = "category_id,person_id,person_name,image_url\n\
                lib,li,李伟,https://img.example.com/li.jpg\n\
                lib,wang,王芳,https://img.example.com/wang.jpg\n";
    let (gbk, _, _) = encoding_rs::GBK.encode(body);
    let path = world.path("gbk.csv");
    std::fs::write(&path, &gbk).unwrap();
    let out = world.run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    let mut names: Vec<String> = state.mts.categories[0]
        .persons
        .iter()
        .filter_map(|p| p.person_name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["李伟", "王芳"]);

    let mut broken =
        b"category_id,person_id,image_url\nlib,a,https://img.example.com/a.jpg\n".to_vec();
    broken.extend_from_slice(b"lib,b\xff\xff,https://img.example.com/b.jpg\n");
    let path = world.path("broken.csv");
    std::fs::write(&path, &broken).unwrap();
    let before = world.sandbox.snapshot().stats.requests;
    let out = world.run(&path, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("line 3"), "{}", stderr(&out));
    assert_eq!(
        world.sandbox.snapshot().stats.requests,
        before,
        "part of it was sent"
    );

    let tsv = world.manifest(
        "t.tsv",
        "category_id\tperson_id\timage_url\nlib\tt1\thttps://img.example.com/t1.jpg\n",
    );
    let out = world.run(&tsv, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(world.faces().iter().any(|f| f.1 == "t1"));
}

#[test]
fn a_utf8_roster_with_one_gbk_line_is_refused_whole_and_its_sync_removes_no_one() {
    let world = World::new(SandboxConfig::for_tests());
    let mut body = String::from("category_id,person_id,image_url,person_name\r\n");
    for i in 0..20 {
        body.push_str(&format!(
            "staff,员工{i:03},https://img.example.com/s/{i}.jpg,姓名{i}\r\n"
        ));
    }
    let roster = world.manifest("roster.csv", &body);
    let out = world.run(&roster, &["--sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 20);

    // The next night's export has one new hire's line saved in GBK: read as GB18030, every
    // other id would be garbled and the sync would remove the 20 persons.
    let mut night = body.into_bytes();
    let (gbk, _, _) =
        encoding_rs::GBK.encode("staff,员工999,https://img.example.com/s/999.jpg,新人\r\n");
    night.extend_from_slice(&gbk);
    std::fs::write(&roster, &night).unwrap();
    let before = world.sandbox.snapshot().stats.requests;
    let out = world.run(&roster, &["--sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 22, column 7: not UTF-8, while 2 other values are UTF-8"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        world.sandbox.snapshot().stats.requests,
        before,
        "something was sent"
    );
    let faces = world.faces();
    assert_eq!(faces.len(), 20, "{faces:?}");
    assert!(faces.iter().all(|f| f.1.starts_with("员工")), "{faces:?}");
}

#[test]
fn algorithm_without_the_ice_target_is_refused() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    let out = world.run(&manifest, &["--algorithm", "logo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--target ice"), "{}", stderr(&out));
    let check = world
        .command(&["check", "m.csv", "--algorithm", "logo"])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    assert_eq!(world.sandbox.snapshot().stats.requests, 0);
}

#[test]
fn operator_commands_find_the_sandbox_ledger() {
    let world = World::new(SandboxConfig::for_tests());
    world.manifest("m.csv", &manifest_body("lib", 1, 2));
    let run = world
        .command(&["run", "m.csv", "--sandbox", "--progress", "off"])
        .output()
        .unwrap();
    assert!(matches!(run.status.code(), Some(0 | 5)), "{}", stderr(&run));
    assert!(world.path("m.sandbox.ledger.jsonl").exists());
    let status = world
        .command(&["status", "m.csv", "--sandbox", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        report["ledger"]
            .as_str()
            .unwrap()
            .ends_with("m.sandbox.ledger.jsonl")
    );
    assert!(report["images"].as_u64().unwrap() >= 1);
    let export = world
        .command(&["export", "m.csv", "--sandbox"])
        .output()
        .unwrap();
    assert_eq!(export.status.code(), Some(0), "{}", stderr(&export));
    let check = world
        .command(&["check", "m.csv", "--sandbox"])
        .output()
        .unwrap();
    assert!(text(&check.stdout).contains("already registered"));
}

#[test]
fn verify_reports_refused_images_apart_and_not_as_missing() {
    let world = World::new(SandboxConfig::for_tests());
    let body = "category_id,person_id,image_url\n\
                lib,p1,https://img.example.com/noface.jpg\n\
                lib,p1,https://img.example.com/ok.jpg\n";
    let manifest = world.manifest("m.csv", body);
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(1));
    let url = world.sandbox.base_url();
    let out = world
        .command(&["verify", "m.csv", "--json", "--endpoint", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["totals"]["refused"], 1);
    assert_eq!(report["totals"]["missing"], 0);
    let text = world
        .command(&["verify", "m.csv", "--endpoint", &url])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("refused by the service 1"));
    assert!(!stderr(&text).contains("region"), "{}", stderr(&text));
}

#[test]
fn lib_samples_of_an_entity_name_nobody_has_exits_2() {
    let world = World::new(SandboxConfig::for_tests());
    let url = world.sandbox.base_url();
    let created = world
        .command(&[
            "lib",
            "create",
            "--algorithm",
            "face",
            "--name",
            "staff",
            "--endpoint",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(created.status.code(), Some(0), "{}", stderr(&created));
    let lib_id = text(&created.stdout).trim().to_string();
    let out = world
        .command(&[
            "lib",
            "samples",
            "--algorithm",
            "face",
            "--lib-id",
            &lib_id,
            "--entity-name",
            "nobody",
            "--endpoint",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no entity named nobody"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_sandbox_prints_exports_and_refuses_a_remote_listen_with_the_default_secret() {
    let world = World::new(SandboxConfig::for_tests());
    let out = world
        .command(&["sandbox", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--allow-remote"), "{}", stderr(&out));
    let out = world
        .command(&["sandbox", "--listen", "0.0.0.0:0", "--allow-remote"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_in_process_sandbox_counts_samples_for_ice() {
    let world = World::new(SandboxConfig::for_tests());
    world.manifest("m.csv", &manifest_body("lib", 1, 2));
    let out = world
        .command(&[
            "run",
            "m.csv",
            "--sandbox",
            "--target",
            "ice",
            "--progress",
            "off",
        ])
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 5)), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("now holds 2 samples"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn failed_rows_and_rejects_show_the_persons_name_and_the_url_the_manifest_gives_now() {
    let world = World::new(SandboxConfig::for_tests());
    let header = "category_id,person_id,person_name,image_url,image_key\n";
    let written = |version: u32| {
        format!(
            "{header}lib,p1,Wang Fang,https://img.example.com/ok.jpg,k0\n\
             lib,p1,Wang Fang,https://img.example.com/noface.jpg?v={version},k1\n"
        )
    };
    let manifest = world.manifest("m.csv", &written(1));
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(1));
    // The row's link changed since (same image, by its key); it is not sent again.
    std::fs::write(&manifest, written(2)).unwrap();
    let rejects = world.path("rejects.csv");
    let again = world.run(&manifest, &["--rejects", rejects.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let rejects = std::fs::read_to_string(&rejects).unwrap();
    let rows: Vec<&str> = rejects.lines().collect();
    assert_eq!(
        rows[0],
        "line,category_id,person_id,image_url,status,reason,person_name"
    );
    assert!(rows[1].starts_with("3,lib,p1,https://img.example.com/noface.jpg?v=2,failed,"));
    assert!(rows[1].ends_with(",Wang Fang"), "{rejects}");

    let listed = world
        .command(&["status", "m.csv", "--failed"])
        .output()
        .unwrap();
    let listed = text(&listed.stdout);
    assert!(listed.lines().next().unwrap().ends_with("\tPERSON_NAME"));
    let row = listed.lines().nth(1).unwrap();
    assert!(
        row.starts_with("3\tlib\tp1\thttps://img.example.com/noface.jpg?v=2\tfailed\t"),
        "{listed}"
    );
    assert!(row.ends_with("\tWang Fang"), "{listed}");
    // Without the manifest, the ledger's own record: the URL of the night it failed.
    let ledger = world.path("m.ledger.jsonl");
    let bare = world
        .command(&[
            "status",
            "--ledger",
            ledger.to_str().unwrap(),
            "--failed",
            "--json",
        ])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&bare.stdout).unwrap();
    assert_eq!(
        rows[0]["image_url"],
        "https://img.example.com/noface.jpg?v=1"
    );
}

#[test]
fn a_second_sandbox_run_says_the_faces_of_earlier_runs_are_not_in_its_new_sandbox() {
    let world = World::new(SandboxConfig::for_tests());
    world.manifest("m.csv", &manifest_body("lib", 1, 2));
    let sandbox_run = || {
        world
            .command(&["run", "m.csv", "--sandbox", "--progress", "off"])
            .output()
            .unwrap()
    };
    let first = sandbox_run();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    // A first run has nothing from earlier runs to explain.
    assert!(
        stderr(&first)
            .lines()
            .any(|l| l.ends_with("now holds 2 faces")),
        "{}",
        stderr(&first)
    );
    let second = sandbox_run();
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let said = stderr(&second);
    assert!(
        said.contains(
            "now holds 0 faces, those this run sent; the 2 the ledger records from earlier runs"
        ),
        "{said}"
    );
}

#[test]
fn status_of_a_manifest_that_does_not_exist_names_the_manifest_not_its_ledger() {
    let world = World::new(SandboxConfig::for_tests());
    for extra in [&[][..], &["--failed"][..]] {
        let out = world
            .command(&[&["status", "missing.csv"][..], extra].concat())
            .output()
            .unwrap();
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(said.contains("missing.csv"), "{said}");
        assert!(!said.contains("cannot open the ledger"), "{said}");
    }
}
