//! The operator commands end to end — status, export, verify (and its repair), rollback, the
//! metrics file, completions — the real binary against the sandbox over TCP, asserting on what
//! the sandbox really holds afterwards.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::*;
use face_enroll::sandbox::SandboxConfig;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

/// `face-enroll <command> <args> --endpoint <sandbox>`.
fn against_sandbox(world: &World, args: &[&str]) -> Output {
    let url = world.sandbox.base_url();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--endpoint", url.as_str()]);
    world.command(&all).output().unwrap()
}

fn verify(world: &World, manifest: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["verify", manifest.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    against_sandbox(world, &args)
}

/// The server's FaceId for each image URL (the first copy when there are several).
fn face_of_url(world: &World) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (_, _, url, id) in world.faces() {
        out.entry(url).or_insert(id);
    }
    out
}

fn url(person: usize, image: usize) -> String {
    format!("https://img.example.com/lib/{person:04}/{image:02}.jpg")
}

fn unregister_calls(world: &World) -> u64 {
    let stats = world.sandbox.snapshot().stats;
    stats
        .by_action
        .get("UnregisterCustomFace")
        .copied()
        .unwrap_or(0)
}

/// A registered manifest of 4 persons × 2 images, then drift made behind the ledger's back:
/// a second copy of 0/0, 1/0 removed, 2/0 removed and registered again, a stranger's face.
fn drifted_world() -> (World, std::path::PathBuf) {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 4, 2));
    let out = world.run(&manifest, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ids = face_of_url(&world);
    world
        .sandbox
        .admin_register_face("lib", "person-0000", &url(0, 0));
    assert!(world.sandbox.admin_remove_face(&ids[&url(1, 0)]));
    assert!(world.sandbox.admin_remove_face(&ids[&url(2, 0)]));
    world
        .sandbox
        .admin_register_face("LIB", "Person-0002", &url(2, 0));
    world
        .sandbox
        .admin_register_face("lib", "stranger", "https://img.example.com/other.jpg");
    (world, manifest)
}

#[test]
fn verify_agrees_after_a_clean_import_and_finds_each_kind_of_drift_made_behind_its_back() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 4, 2));
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(0));
    let clean = verify(&world, &manifest, &[]);
    assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
    assert_eq!(json_of(&clean)["totals"]["server_faces"], 8);

    let ids = face_of_url(&world);
    world
        .sandbox
        .admin_register_face("lib", "person-0000", &url(0, 0));
    assert!(world.sandbox.admin_remove_face(&ids[&url(3, 1)]));
    assert!(world.sandbox.admin_remove_face(&ids[&url(1, 0)]));
    world
        .sandbox
        .admin_register_face("lib", "stranger", "https://img.example.com/other.jpg");
    for i in 0..11 {
        world.sandbox.admin_register_face(
            "lib",
            "crowd",
            &format!("https://img.example.com/crowd/{i}.jpg"),
        );
    }
    let out = verify(&world, &manifest, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json_of(&out);
    let totals = &report["totals"];
    // A vanished image is listed once, as vanished (not also as missing), by person.
    assert_eq!(totals["missing"], 0);
    assert_eq!(totals["duplicate_images"], 1);
    assert_eq!(totals["extra_copies"], 1);
    assert_eq!(totals["orphans"], 12, "the stranger and the crowd's 11");
    assert_eq!(totals["vanished"], 2);
    assert_eq!(totals["persons_over_limit"], 1);
    let lib = &report["libraries"][0];
    let vanished: Vec<&str> = lib["vanished"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["image_url"].as_str().unwrap())
        .collect();
    assert_eq!(vanished, [url(1, 0), url(3, 1)]);
    assert_eq!(lib["vanished"][0]["face_id"], ids[&url(1, 0)].as_str());
    assert_eq!(lib["duplicates"][0]["keep"], ids[&url(0, 0)].as_str());
    assert_eq!(lib["persons_over_limit"][0]["faces"], 11);
    let text = against_sandbox(&world, &["verify", manifest.to_str().unwrap()]);
    assert_eq!(text.status.code(), Some(1));
    assert!(stdout(&text).contains("vanished (in the ledger, gone from the server): 2"));
    assert!(!stdout(&text).contains("missing on the server"));
}

#[test]
fn verify_repair_without_yes_prints_the_plan_and_changes_nothing() {
    let (world, manifest) = drifted_world();
    let ledger = world.path("m.ledger.jsonl");
    let ledger_before = std::fs::read(&ledger).unwrap();
    let faces_before = world.faces();
    let out = verify(&world, &manifest, &["--repair", "--prune-duplicates"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let repair = &json_of(&out)["repair"];
    assert_eq!(repair["applied"], false);
    assert_eq!(repair["adopt"].as_array().unwrap().len(), 1);
    assert_eq!(repair["mark_removed"].as_array().unwrap().len(), 1);
    assert_eq!(repair["prune"].as_array().unwrap().len(), 1);
    assert!(stderr(&out).contains("nothing changed"));
    assert_eq!(std::fs::read(&ledger).unwrap(), ledger_before);
    assert_eq!(world.faces(), faces_before);
    assert_eq!(unregister_calls(&world), 0);
}

#[test]
fn verify_repair_then_a_rerun_converges_to_exactly_one_face_per_manifest_image() {
    let (world, manifest) = drifted_world();
    let readopted = face_of_url(&world)[&url(2, 0)].clone();
    let out = verify(&world, &manifest, &["--repair", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "drift was found: {}",
        stderr(&out)
    );
    assert_eq!(
        unregister_calls(&world),
        0,
        "--repair alone removes nothing"
    );
    let ledger = world.path("m.ledger.jsonl");
    let last = last_per_image(&ledger);
    assert_eq!(last[&url(2, 0)]["status"], "registered");
    assert_eq!(last[&url(2, 0)]["face_id"], readopted.as_str());
    assert_eq!(last[&url(2, 0)]["recovered"], true);
    assert_eq!(last[&url(1, 0)]["status"], "removed");
    assert_eq!(last[&url(1, 0)]["reason"], "vanished from the server");
    let kinds: Vec<String> = ledger_lines(&ledger)
        .iter()
        .rev()
        .take(1)
        .map(|l| l["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["run_end"]);

    let kept = face_of_url(&world)[&url(0, 0)].clone();
    let rerun = world.run(&manifest, &[]);
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr(&rerun));
    // The rerun reads once more the persons the first run created images for (another writer
    // may have made them too): of the two ids under 0/0 the lowest is kept, the other removed.
    let copies = copies_per_url(&world.sandbox.snapshot());
    for p in 0..4 {
        for i in 0..2 {
            assert_eq!(copies.get(&url(p, i)), Some(&1), "{p}/{i}");
        }
    }
    let recorded = ledger_ids(&ledger)[&url(0, 0)].clone();
    assert!(
        recorded == face_of_url(&world)[&url(0, 0)] && recorded <= kept,
        "0/0: the ledger holds {recorded}, the server {:?}",
        face_of_url(&world).get(&url(0, 0))
    );
    let pruned = verify(&world, &manifest, &["--prune-duplicates", "--yes"]);
    assert_eq!(pruned.status.code(), Some(1), "{}", stderr(&pruned));
    let copies = copies_per_url(&world.sandbox.snapshot());
    assert!(copies.iter().all(|(u, n)| *n == 1 || u.contains("other")));
    let again = verify(&world, &manifest, &[]);
    let totals = json_of(&again)["totals"].clone();
    assert_eq!(totals["missing"], 0);
    assert_eq!(totals["duplicate_images"], 0);
    assert_eq!(totals["vanished"], 0);
    assert_eq!(
        totals["orphans"], 1,
        "the stranger is not ours to adopt or remove"
    );
}

#[test]
fn prune_duplicates_with_yes_removes_the_extra_copies_by_face_id_and_keeps_the_ledgers() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 3, 1));
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(0));
    let kept = face_of_url(&world)[&url(0, 0)].clone();
    let extra1 = world
        .sandbox
        .admin_register_face("lib", "person-0000", &url(0, 0));
    let extra2 = world
        .sandbox
        .admin_register_face("lib", "PERSON-0000", &url(0, 0));
    let out = verify(&world, &manifest, &["--prune-duplicates", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let ids: HashSet<String> = world.faces().into_iter().map(|f| f.3).collect();
    assert!(ids.contains(&kept));
    assert!(!ids.contains(&extra1) && !ids.contains(&extra2));
    assert_eq!(ids.len(), 3);
    assert_eq!(unregister_calls(&world), 2, "one call per extra copy");
    let end = ledger_lines(&world.path("m.ledger.jsonl"))
        .last()
        .unwrap()
        .clone();
    assert_eq!(end["summary"]["pruned"], 2);
    let again = verify(&world, &manifest, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));
}

/// The run ids of the ledger's `run_start` records, in order.
fn run_ids(ledger: &Path) -> Vec<String> {
    ledger_lines(ledger)
        .iter()
        .filter(|l| l["kind"] == "run_start")
        .map(|l| l["run"].as_str().unwrap().to_string())
        .collect()
}

/// One ledger, two runs: the first registers images 0 and 1 of 30 persons, the second image 9
/// of the same persons (so a FaceId=ALL for a person would take the second run's face too).
fn two_runs_on_one_ledger() -> (World, std::path::PathBuf, String, String) {
    let mut config = SandboxConfig::for_tests();
    config.latency_ms = 5;
    let world = World::new(config);
    let ledger = world.path("shared.ledger.jsonl");
    let first = world.manifest("first.csv", &manifest_body("lib", 30, 2));
    let mut second_body = String::from("category_id,person_id,image_url\n");
    for p in 0..30 {
        second_body.push_str(&format!("lib,person-{p:04},{}\n", url(p, 9)));
    }
    let second = world.manifest("second.csv", &second_body);
    let ledger_arg = ["--ledger", ledger.to_str().unwrap()];
    assert_eq!(world.run(&first, &ledger_arg).status.code(), Some(0));
    assert_eq!(world.run(&second, &ledger_arg).status.code(), Some(0));
    let runs = run_ids(&ledger);
    let (first_run, second_run) = (runs[0].clone(), runs[1].clone());
    (world, ledger, first_run, second_run)
}

#[test]
fn rollback_after_kill_9_completes_removes_only_that_runs_faces_and_never_sends_all() {
    let (world, ledger, first_run, second_run) = two_runs_on_one_ledger();
    let faces = world.faces();
    assert_eq!(faces.len(), 90);
    let ours: HashSet<String> = faces
        .iter()
        .filter(|f| !f.2.ends_with("/09.jpg"))
        .map(|f| f.3.clone())
        .collect();
    let theirs: HashSet<String> = faces
        .iter()
        .filter(|f| f.2.ends_with("/09.jpg"))
        .map(|f| f.3.clone())
        .collect();

    let ledger_path = ledger.to_str().unwrap();
    let plan_only = world
        .command(&["rollback", "--ledger", ledger_path, "--run", &first_run])
        .output()
        .unwrap();
    assert_eq!(plan_only.status.code(), Some(0), "{}", stderr(&plan_only));
    assert!(stdout(&plan_only).contains("unregister 60 faces of 30 persons in 1 library"));
    assert_eq!(world.faces().len(), 90, "without --yes nothing changes");

    let url = world.sandbox.base_url();
    let rollback = |qps: &str| {
        world.command(&[
            "rollback",
            "--ledger",
            ledger_path,
            "--run",
            &first_run,
            "--yes",
            "--endpoint",
            &url,
            "--remove-qps",
            qps,
        ])
    };
    let mut kills = 0;
    // Each start follows a run or a killed rollback a moment ago, so its first request waits
    // out one second of that budget first.
    for wait_ms in [1_300u64, 1_450, 1_600] {
        if kill_after(
            rollback("10")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
            Duration::from_millis(wait_ms),
        ) {
            kills += 1;
        }
    }
    assert!(kills >= 1, "no kill landed mid-rollback");
    let left_after_kills = world.faces().iter().filter(|f| ours.contains(&f.3)).count();
    assert!(
        (1..60).contains(&left_after_kills),
        "the killed rollbacks removed nothing, or everything: {left_after_kills} left"
    );

    let done = rollback("100").output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    // The killed rollback may have spent this second's budget: the restart waits it out.
    assert!(
        stderr(&done).contains("may have sent requests a moment ago"),
        "{}",
        stderr(&done)
    );
    let remaining: HashSet<String> = world.faces().into_iter().map(|f| f.3).collect();
    assert!(
        remaining.is_disjoint(&ours),
        "a face of the rolled-back run remains"
    );
    assert_eq!(remaining, theirs, "another run's face was removed (ALL?)");
    let last = last_per_image(&ledger);
    for record in last.values() {
        let removed = record["status"] == "removed";
        assert_eq!(
            removed,
            !record["image_url"].as_str().unwrap().ends_with("/09.jpg")
        );
        if removed {
            assert!(ours.contains(record["face_id"].as_str().unwrap()));
        }
    }
    let again = rollback("100").output().unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert!(stdout(&again).contains("nothing to unregister"));
    assert_eq!(world.faces().len(), 30);
    let second_registered = last
        .values()
        .filter(|r| r["status"] == "registered")
        .all(|r| r["run"] == second_run.as_str());
    assert!(second_registered);
}

#[test]
fn export_neutralises_formula_cells_in_csv_and_keeps_them_exact_in_jsonl() {
    let world = World::new(SandboxConfig::for_tests());
    let body = "category_id,person_id,person_name,image_url\n\
=lib,+alice,=HYPERLINK(\"http://evil\"),https://img.example.com/a.jpg\n\
=lib,-bob,@bob,https://img.example.com/b.jpg\n\
=lib,@carol,Carol,https://img.example.com/c.jpg\n";
    let manifest = world.manifest("m.csv", body);
    let out = world.run(&manifest, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ledger = world.path("m.ledger.jsonl");
    let csv_path = world.path("out/faces.csv");
    std::fs::create_dir(world.path("out")).unwrap();
    let csv = world
        .command(&[
            "export",
            "--ledger",
            ledger.to_str().unwrap(),
            "-o",
            csv_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(csv.status.code(), Some(0), "{}", stderr(&csv));
    assert_eq!(std::fs::read_dir(world.path("out")).unwrap().count(), 1);
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "category_id",
            "person_id",
            "person_name",
            "image_url",
            "face_id",
            "registered_at"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(&rows[0][0], "'=lib");
    assert_eq!(&rows[0][1], "'+alice");
    assert_eq!(&rows[0][2], "'=HYPERLINK(\"http://evil\")");
    assert_eq!((&rows[1][1], &rows[1][2]), ("'-bob", "'@bob"));
    assert_eq!((&rows[2][1], &rows[2][2]), ("'@carol", "Carol"));
    let server: HashSet<String> = world.faces().into_iter().map(|f| f.3).collect();
    assert!(rows.iter().all(|r| server.contains(&r[4])));

    let jsonl = world
        .command(&[
            "export",
            "--ledger",
            ledger.to_str().unwrap(),
            "--format",
            "jsonl",
        ])
        .output()
        .unwrap();
    assert_eq!(jsonl.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = stdout(&jsonl)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["category_id"], "=lib");
    assert_eq!(lines[0]["person_id"], "+alice");
    assert_eq!(lines[0]["person_name"], "=HYPERLINK(\"http://evil\")");
    assert_eq!(lines[1]["person_id"], "-bob");
    assert_eq!(lines[2]["person_id"], "@carol");
    assert!(server.contains(lines[2]["face_id"].as_str().unwrap()));
}

#[test]
fn status_counts_match_the_ledger_and_the_manifests_work_left() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.path("faces.csv");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/faces.csv");
    std::fs::copy(sample, &manifest).unwrap();
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(1));
    let out = world
        .command(&["status", manifest.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json_of(&out);
    let last = last_per_image(&world.path("faces.ledger.jsonl"));
    for status in [
        "registered",
        "invalid",
        "skipped",
        "failed",
        "pending",
        "removed",
    ] {
        let in_ledger = last.values().filter(|r| r["status"] == status).count();
        assert_eq!(report["statuses"][status], in_ledger as u64, "{status}");
    }
    assert_eq!(report["statuses"]["registered"], 37);
    assert_eq!(report["images"], last.len() as u64);
    let per_library: u64 = report["libraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["images"].as_u64().unwrap())
        .sum();
    assert_eq!(per_library, last.len() as u64);
    assert_eq!(report["last_run"]["exit_code"], 1);
    assert_eq!(report["last_run"]["command"], "run");
    assert!(report["last_run"]["ended"].is_string());
    assert_eq!(report["manifest"]["to_send"], 0);
    assert_eq!(report["manifest"]["already_registered"], 37);
    let text = world
        .command(&["status", "--ledger", "faces.ledger.jsonl"])
        .output()
        .unwrap();
    assert!(stdout(&text).contains("registered 37"), "{}", stdout(&text));
}

/// Checks the text exposition format line by line; returns the samples.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = HashSet::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(name_ok(rest.split(' ').next().unwrap()), "{line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(name_ok(name) && kind == "gauge", "{line}");
            assert!(typed.insert(name.to_string()), "TYPE twice: {line}");
        } else {
            // `name value`, or `name{label="…",…} value` (a label value may hold spaces).
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(name_ok(name) && typed.contains(name), "{line}");
            if series.len() > name.len() {
                assert!(series.ends_with('}'), "{line}");
            }
            samples.insert(series.to_string(), value.parse::<f64>().unwrap());
        }
    }
    samples
}

#[test]
fn run_and_verify_write_valid_prometheus_metrics_atomically() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 3, 2));
    let dir = world.path("textfile");
    std::fs::create_dir(&dir).unwrap();
    let run_prom = dir.join("face_enroll_run.prom");
    std::fs::write(&run_prom, "stale").unwrap();
    let out = world.run(&manifest, &["--metrics", run_prom.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = parse_prometheus(&std::fs::read_to_string(&run_prom).unwrap());
    assert_eq!(run["face_enroll_last_run_registered"], 6.0);
    assert_eq!(run["face_enroll_last_run_exit_code"], 0.0);
    assert_eq!(run["face_enroll_last_run_failed"], 0.0);
    assert!(run["face_enroll_last_run_timestamp_seconds"] > 1.6e9);

    let verify_prom = dir.join("face_enroll_verify.prom");
    world
        .sandbox
        .admin_register_face("lib", "person-0000", &url(0, 0));
    let out = verify(
        &world,
        &manifest,
        &["--metrics", verify_prom.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let verified = parse_prometheus(&std::fs::read_to_string(&verify_prom).unwrap());
    assert_eq!(verified["face_enroll_verify_extra_copies"], 1.0);
    assert_eq!(verified["face_enroll_verify_missing"], 0.0);
    assert_eq!(verified["face_enroll_verify_exit_code"], 1.0);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "a temporary file was left behind: {names:?}"
    );

    let _lock = face_enroll::ledger::Lock::acquire(&world.path("m.ledger.jsonl")).unwrap();
    let locked = world.run(&manifest, &["--metrics", run_prom.to_str().unwrap()]);
    assert_eq!(locked.status.code(), Some(4));
    let run = parse_prometheus(&std::fs::read_to_string(&run_prom).unwrap());
    assert_eq!(run["face_enroll_last_run_exit_code"], 4.0);
}

#[test]
fn completions_print_for_bash() {
    let world = World::new(SandboxConfig::for_tests());
    let out = world.command(&["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let script = stdout(&out);
    for word in [
        "face-enroll",
        "verify",
        "rollback",
        "export",
        "--prune-duplicates",
    ] {
        assert!(script.contains(word), "missing {word}");
    }
}

#[test]
fn rollback_settles_an_unknown_outcome_by_listing_the_person_before_sending_again() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 2));
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(0));
    let ledger = world.path("m.ledger.jsonl");
    world.sandbox.script(
        "UnregisterCustomFace",
        vec![
            face_enroll::sandbox::Fault::ErrorAfter,
            face_enroll::sandbox::Fault::ResetAfter,
        ],
    );
    let lists = |w: &World| {
        let stats = w.sandbox.snapshot().stats;
        stats
            .by_action
            .get("ListCustomPersons")
            .copied()
            .unwrap_or(0)
    };
    let lists_before = lists(&world);
    let out = against_sandbox(
        &world,
        &[
            "rollback",
            "--ledger",
            ledger.to_str().unwrap(),
            "--all",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(world.faces().is_empty());
    let stats = world.sandbox.snapshot().stats;
    assert_eq!(stats.faults["error_after"], 1);
    assert_eq!(stats.faults["reset_after"], 1);
    // Both were removed by this rollback, their answers lost: none was "already gone".
    assert!(
        stderr(&out).contains("removed 2, already gone 0,"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lists(&world), lists_before + 2);
    assert_eq!(
        stats.by_action["UnregisterCustomFace"], 2,
        "nothing sent twice"
    );
    let last = last_per_image(&ledger);
    assert!(last.values().all(|r| {
        r["status"] == "removed"
            && r["reason"] == "rollback: gone from the server after an unknown outcome"
    }));
}

#[test]
fn a_repair_or_rollback_given_a_path_that_names_nothing_creates_no_ledger() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(0));
    let ledger = world.path("m.ledger.jsonl");
    let typo = world.path("mm.csv");
    let repaired = verify(
        &world,
        &typo,
        &["--ledger", ledger.to_str().unwrap(), "--repair", "--yes"],
    );
    assert_eq!(repaired.status.code(), Some(2), "{}", stderr(&repaired));
    assert!(
        stderr(&repaired).contains("mm.csv"),
        "{}",
        stderr(&repaired)
    );
    let typo_ledger = world.path("m.ledgr.jsonl");
    let rolled = against_sandbox(
        &world,
        &[
            "rollback",
            "--ledger",
            typo_ledger.to_str().unwrap(),
            "--all",
            "--yes",
        ],
    );
    assert_eq!(rolled.status.code(), Some(2), "{}", stderr(&rolled));
    assert!(
        !typo_ledger.exists(),
        "rollback created the ledger it was to read"
    );
    let mut names: Vec<String> = std::fs::read_dir(world.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["m.csv", "m.ledger.jsonl", "m.ledger.jsonl.lock"],
        "only the run's own files"
    );
    assert_eq!(world.faces().len(), 1, "nothing was removed");
}

/// `face-enroll ARGS` with its stdout a pipe whose reader is already gone (as behind
/// `| head -1` once head has read its line): every write fails with EPIPE.
fn into_closed_pipe(world: &World, args: &[&str]) -> Output {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    let url = world.sandbox.base_url();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--endpoint", url.as_str()]);
    world
        .command(&all)
        .stdout(std::process::Stdio::from(writer))
        .output()
        .unwrap()
}

#[test]
fn verify_and_rollback_into_a_closed_pipe_end_quietly_without_a_panic() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 2, 2));
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(0));
    let manifest = manifest.to_str().unwrap();
    for args in [
        vec!["verify", manifest],
        vec!["verify", manifest, "--json"],
        vec!["rollback", "--ledger", "m.ledger.jsonl", "--all"],
    ] {
        let out = into_closed_pipe(&world, &args);
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {:?} {}",
            out.status,
            stderr(&out)
        );
    }
}

#[test]
fn verify_accept_foreign_reports_other_tools_faces_apart_and_still_fails_on_our_own_drift() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 2, 1));
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(0));
    world
        .sandbox
        .admin_register_face("lib", "stranger", "https://img.example.com/other.jpg");
    // Without the flag another tool's face is an orphan: disagreement.
    let strict = verify(&world, &manifest, &[]);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    assert_eq!(json_of(&strict)["totals"]["orphans"], 1);
    let metrics = world.path("verify.prom");
    let accepted = verify(
        &world,
        &manifest,
        &["--accept-foreign", "--metrics", metrics.to_str().unwrap()],
    );
    assert_eq!(accepted.status.code(), Some(0), "{}", stderr(&accepted));
    let report = json_of(&accepted);
    assert_eq!(report["totals"]["orphans"], 0);
    assert_eq!(report["totals"]["foreign"], 1);
    let lib = &report["libraries"][0];
    assert_eq!(lib["foreign"][0]["person_id"], "stranger");
    assert_eq!(
        lib["foreign"][0]["image_url"],
        "https://img.example.com/other.jpg"
    );
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("face_enroll_verify_foreign 1"), "{prom}");
    let text = against_sandbox(
        &world,
        &["verify", manifest.to_str().unwrap(), "--accept-foreign"],
    );
    assert_eq!(text.status.code(), Some(0));
    assert!(
        stdout(&text).contains("foreign (other tools' faces"),
        "{}",
        stdout(&text)
    );
    // Our own drift still fails: a second copy of a manifest image.
    world
        .sandbox
        .admin_register_face("lib", "person-0000", &url(0, 0));
    let ours = verify(&world, &manifest, &["--accept-foreign"]);
    assert_eq!(ours.status.code(), Some(1), "{}", stderr(&ours));
    assert_eq!(json_of(&ours)["totals"]["duplicate_images"], 1);
}

#[test]
fn the_open_rejections_gauge_stays_until_the_rows_are_fixed_not_only_the_night_they_appear() {
    let world = World::new(SandboxConfig::for_tests());
    let body = "category_id,person_id,person_name,image_url\n\
        lib,p1,P One,https://img.example.com/noface-1.jpg\n\
        lib,p1,P One,https://img.example.com/ok.jpg\n\
        ,p3,P Three,https://img.example.com/bad-row.jpg\n";
    let manifest = world.manifest("m.csv", body);
    let prom = world.path("run.prom");
    let night = |manifest: &Path| {
        let out = world.run(manifest, &["--metrics", prom.to_str().unwrap()]);
        let metrics = parse_prometheus(&std::fs::read_to_string(&prom).unwrap());
        (out.status.code(), metrics)
    };
    let (code, first) = night(&manifest);
    assert_eq!(code, Some(1));
    assert_eq!(first["face_enroll_last_run_new_rejections"], 2.0);
    assert_eq!(first["face_enroll_last_run_open_rejections"], 2.0);
    // The service's refusal, by its Code (the invalid row is no refusal).
    let refused: Vec<(&String, &f64)> = first
        .iter()
        .filter(|(k, _)| k.starts_with("face_enroll_last_run_refused{"))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].0.contains("by=\"service\""), "{refused:?}");
    assert_eq!(*refused[0].1, 1.0);
    // The next night nothing is new, but the two rows are still not registered.
    let (code, second) = night(&manifest);
    assert_eq!(code, Some(0));
    assert_eq!(second["face_enroll_last_run_new_rejections"], 0.0);
    assert_eq!(second["face_enroll_last_run_open_rejections"], 2.0);
    // HR replaces the photo and fixes the row: nothing is open any more.
    let fixed = world.manifest(
        "m.csv",
        &body
            .replace("noface-1.jpg", "face-1.jpg")
            .replace(",p3,", "lib,p3,"),
    );
    let (code, third) = night(&fixed);
    assert_eq!(code, Some(0));
    assert_eq!(third["face_enroll_last_run_open_rejections"], 0.0);
    assert_eq!(world.faces().len(), 3);
}

#[test]
fn verify_right_after_a_killed_run_waits_out_that_run_s_budget_first() {
    let mut config = SandboxConfig::for_tests();
    config.latency_ms = 100;
    let world = World::new(config);
    let manifest = world.manifest("m.csv", &manifest_body("lib", 20, 2));
    let url = world.sandbox.base_url();
    let mut run = world.command(&[
        "run",
        manifest.to_str().unwrap(),
        "--endpoint",
        &url,
        "--progress",
        "off",
        "--qps",
        "10",
    ]);
    run.stderr(std::process::Stdio::null());
    assert!(
        kill_after(&mut run, Duration::from_millis(1_500)),
        "the kill did not land mid-run"
    );
    let ledger = world.path("m.ledger.jsonl");
    assert!(
        ledger_lines(&ledger)
            .iter()
            .any(|l| l["kind"] == "run_start"),
        "the killed run had started"
    );
    let out = verify(&world, &manifest, &[]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("may have sent requests a moment ago"),
        "{}",
        stderr(&out)
    );
}
