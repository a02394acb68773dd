//! ICE end to end: `lib` commands and `run --target ice`, the real binary against the sandbox
//! over TCP, asserting on what the sandbox really holds afterwards.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::*;
use face_enroll::sandbox::{Fault, FaultRates, SandboxConfig, StateSnapshot};

/// `lib <args> --endpoint <sandbox>`.
fn lib(world: &World, args: &[&str]) -> std::process::Output {
    let url = world.sandbox.base_url();
    let mut all = vec!["lib"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--endpoint", &url]);
    world.command(&all).output().unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn run_ice(world: &World, manifest: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--target", "ice"];
    args.extend_from_slice(extra);
    world.run(manifest, &args)
}

/// Every sample on the server as (lib name, entity name, image URL, sample id).
fn samples_of(state: &StateSnapshot) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for lib in &state.ice.libs {
        for entity in &lib.entities {
            for sample in &entity.samples {
                out.push((
                    lib.lib_name.clone(),
                    entity.entity_name.clone(),
                    sample.image_url.clone().unwrap_or_default(),
                    sample.sample_id.clone(),
                ));
            }
        }
    }
    out
}

/// Exactly one library per name, one entity per name within it, one sample per image URL.
fn assert_exactly_once(state: &StateSnapshot, libs: usize, entities: usize, samples: usize) {
    let lib_names: HashSet<&str> = state.ice.libs.iter().map(|l| l.lib_name.as_str()).collect();
    assert_eq!(lib_names.len(), state.ice.libs.len(), "a library twice");
    assert_eq!(state.ice.libs.len(), libs);
    let mut entity_count = 0;
    for lib in &state.ice.libs {
        let names: HashSet<&str> = lib
            .entities
            .iter()
            .map(|e| e.entity_name.as_str())
            .collect();
        assert_eq!(
            names.len(),
            lib.entities.len(),
            "an entity twice in {}",
            lib.lib_name
        );
        entity_count += lib.entities.len();
    }
    assert_eq!(entity_count, entities);
    let mut copies: HashMap<String, usize> = HashMap::new();
    for (_, _, url, _) in samples_of(state) {
        *copies.entry(url).or_insert(0) += 1;
    }
    assert_eq!(copies.len(), samples, "a sample is missing");
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "samples twice: {twice:?}");
}

#[test]
fn lib_create_list_and_delete_work_against_the_sandbox() {
    let world = World::new(SandboxConfig::for_tests());
    let out = lib(
        &world,
        &[
            "create",
            "--algorithm",
            "face",
            "--name",
            "staff",
            "--description",
            "员工",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lib_id = stdout(&out).trim().to_string();
    let state = world.sandbox.snapshot();
    assert_eq!(state.ice.libs.len(), 1);
    assert_eq!(state.ice.libs[0].lib_id, lib_id);
    assert_eq!(state.ice.libs[0].lib_description.as_deref(), Some("员工"));

    let json = lib(
        &world,
        &[
            "create",
            "--algorithm",
            "logo",
            "--name",
            "brands",
            "--json",
        ],
    );
    let answer: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        answer["LibId"].as_str().is_some_and(|id| !id.is_empty()),
        "{answer}"
    );

    let listed = lib(&world, &["list", "--algorithm", "face", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "only the face library: {listed}"
    );
    assert_eq!(listed[0]["LibName"], "staff");
    let text = stdout(&lib(&world, &["list", "--algorithm", "face"]));
    assert!(text.contains(&format!("{lib_id}\tstaff\t员工")), "{text}");

    let refused = lib(
        &world,
        &["delete", "--algorithm", "face", "--lib-id", &lib_id],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("entity and sample"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(world.sandbox.snapshot().ice.libs.len(), 2);
    let deleted = lib(
        &world,
        &[
            "delete",
            "--algorithm",
            "face",
            "--lib-id",
            &lib_id,
            "--yes",
        ],
    );
    assert_eq!(deleted.status.code(), Some(0), "{}", stderr(&deleted));
    let state = world.sandbox.snapshot();
    assert_eq!(state.ice.libs.len(), 1);
    assert_eq!(state.ice.libs[0].algorithm, "logo");
}

#[test]
fn lib_delete_of_an_unknown_library_exits_2_says_so_and_deletes_nothing() {
    let world = World::new(SandboxConfig::for_tests());
    let made = lib(
        &world,
        &["create", "--algorithm", "face", "--name", "staff"],
    );
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let out = lib(
        &world,
        &[
            "delete",
            "--algorithm",
            "face",
            "--lib-id",
            "no-such-lib",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("there is no library no-such-lib"), "{said}");
    assert!(!said.contains("deleted library"), "{said}");
    let stats = world.sandbox.snapshot().stats;
    assert_eq!(
        stats.by_action["DeleteRecognitionLib"], 1,
        "the delete was really sent and refused"
    );
    assert_eq!(world.sandbox.snapshot().ice.libs.len(), 1);
}

#[test]
fn lib_entities_and_samples_list_what_a_run_put_into_an_existing_library() {
    let world = World::new(SandboxConfig::for_tests());
    let out = lib(
        &world,
        &["create", "--algorithm", "face", "--name", "staff"],
    );
    let lib_id = stdout(&out).trim().to_string();
    let manifest = world.manifest("m.csv", &manifest_body("staff", 2, 2));
    assert_eq!(run_ice(&world, &manifest, &[]).status.code(), Some(0));
    let entities = lib(
        &world,
        &[
            "entities",
            "--algorithm",
            "face",
            "--lib-id",
            &lib_id,
            "--json",
        ],
    );
    let entities: serde_json::Value = serde_json::from_slice(&entities.stdout).unwrap();
    assert_eq!(
        entities.as_array().unwrap().len(),
        2,
        "the run used the existing library"
    );
    let samples = lib(
        &world,
        &[
            "samples",
            "--algorithm",
            "face",
            "--lib-id",
            &lib_id,
            "--entity-name",
            "person-0001",
            "--json",
        ],
    );
    let samples: serde_json::Value = serde_json::from_slice(&samples.stdout).unwrap();
    assert_eq!(samples.as_array().unwrap().len(), 2, "{samples}");
}

#[test]
fn lib_create_refuses_bad_input_before_sending_anything() {
    let world = World::new(SandboxConfig::for_tests());
    let long = "名".repeat(22); // 66 bytes in 22 characters
    let long_description = "d".repeat(129);
    let cases: Vec<Vec<&str>> = vec![
        vec!["create", "--algorithm", "faces", "--name", "x"],
        vec!["create", "--algorithm", "face", "--name", &long],
        vec!["create", "--algorithm", "face", "--name", ""],
        vec![
            "create",
            "--algorithm",
            "face",
            "--name",
            "x",
            "--description",
            &long_description,
        ],
    ];
    for args in cases {
        let out = lib(&world, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let region = world
        .command(&[
            "lib",
            "list",
            "--algorithm",
            "face",
            "--region",
            "us-west-1",
        ])
        .output()
        .unwrap();
    assert_eq!(region.status.code(), Some(2));
    assert!(
        stderr(&region).contains("cn-shenzhen"),
        "{}",
        stderr(&region)
    );
    assert_eq!(
        world.sandbox.snapshot().stats.requests,
        0,
        "a request was sent"
    );
}

#[test]
fn an_ice_import_makes_one_lib_per_category_one_entity_per_person_one_sample_per_image() {
    let world = World::new(SandboxConfig::for_tests());
    let mut body = String::from("category_id,person_id,person_name,image_url\n");
    for i in 0..12 {
        body.push_str(&format!(
            "staff,li-wei,李伟,https://img.example.com/lw/{i}.jpg\n"
        ));
    }
    body.push_str("staff,ann,,https://img.example.com/ann/1.jpg\n");
    body.push_str("guests,bob,Bob,https://img.example.com/bob/1.jpg\n");
    body.push_str("Guests,BOB,Bob,https://img.example.com/bob/2.jpg\n");
    let manifest = world.manifest("m.csv", &body);
    let summary = world.path("s.json");
    let out = run_ice(&world, &manifest, &["--summary", summary.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let state = world.sandbox.snapshot();
    assert_exactly_once(&state, 2, 3, 15);
    assert!(state.ice.libs.iter().all(|l| l.algorithm == "face"));
    let staff = state
        .ice
        .libs
        .iter()
        .find(|l| l.lib_name == "staff")
        .unwrap();
    let li_wei = staff
        .entities
        .iter()
        .find(|e| e.entity_name == "li-wei")
        .unwrap();
    assert_eq!(li_wei.entity_info.as_deref(), Some(r#"{"name":"李伟"}"#));
    assert_eq!(li_wei.samples.len(), 12, "no ten-image limit for ICE");
    let ann = staff
        .entities
        .iter()
        .find(|e| e.entity_name == "ann")
        .unwrap();
    assert_eq!(ann.entity_info, None);

    let ledger = world.path("m.ice.ledger.jsonl");
    assert!(
        !world.path("m.ledger.jsonl").exists(),
        "the MTS ledger was used"
    );
    let server: HashMap<String, (String, String)> = state
        .ice
        .libs
        .iter()
        .flat_map(|l| {
            l.entities.iter().flat_map(move |e| {
                e.samples
                    .iter()
                    .map(move |s| (s.sample_id.clone(), (l.lib_id.clone(), e.entity_id.clone())))
            })
        })
        .collect();
    let last = last_per_image(&ledger);
    assert_eq!(last.len(), 15);
    for record in last.values() {
        assert_eq!(record["status"], "registered", "{record}");
        assert_eq!(record["target"], "ice");
        assert_eq!(record["algorithm"], "face");
        let (lib_id, entity_id) = &server[record["sample_id"].as_str().unwrap()];
        assert_eq!(record["lib_id"].as_str().unwrap(), lib_id);
        assert_eq!(record["entity_id"].as_str().unwrap(), entity_id);
        assert!(record.get("face_id").is_none());
    }
    let lines = ledger_lines(&ledger);
    assert_eq!(lines[0]["target"], "ice");
    let created: Vec<_> = lines.iter().filter(|l| l["kind"] == "created").collect();
    assert_eq!(
        created.len(),
        2 + 3,
        "one created record per library and entity"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    assert_eq!(summary["registered_now"], 15);
}

#[test]
fn names_over_64_bytes_are_invalid_rows_and_nothing_is_created_for_them() {
    let world = World::new(SandboxConfig::for_tests());
    let long_person = "伟".repeat(22); // 66 bytes
    let long_lib = "l".repeat(65);
    let body = format!(
        "category_id,person_id,image_url\n\
         staff,{long_person},https://img.example.com/a.jpg\n\
         {long_lib},p,https://img.example.com/b.jpg\n\
         staff,p,https://img.example.com/c.jpg\n"
    );
    let manifest = world.manifest("m.csv", &body);
    let out = run_ice(&world, &manifest, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    assert_exactly_once(&state, 1, 1, 1);
    let last = last_per_image(&world.path("m.ice.ledger.jsonl"));
    for url in [
        "https://img.example.com/a.jpg",
        "https://img.example.com/b.jpg",
    ] {
        assert_eq!(last[url]["status"], "invalid");
        assert_eq!(last[url]["target"], "ice");
        assert!(
            last[url]["reason"].as_str().unwrap().contains("64"),
            "{}",
            last[url]
        );
    }
}

#[test]
fn a_rerun_with_everything_done_sends_nothing() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 4, 3));
    assert_eq!(run_ice(&world, &manifest, &[]).status.code(), Some(0));
    // The first re-run reads once more the persons the run created samples for (another
    // writer's copies), and creates nothing.
    let again = run_ice(&world, &manifest, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let stats = world.sandbox.snapshot().stats;
    assert!(
        !stats
            .applied_by_action
            .contains_key("DeleteRecognitionSample")
    );
    assert_eq!(stats.applied_by_action["CreateRecognitionSample"].count, 12);
    let before = stats.requests;
    let again = run_ice(&world, &manifest, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    // Only the one read that checks the endpoint and the credentials.
    assert_eq!(
        world.sandbox.snapshot().stats.requests,
        before + 1,
        "requests were sent"
    );
    assert_exactly_once(&world.sandbox.snapshot(), 1, 4, 12);
}

#[test]
fn errors_after_apply_on_every_create_never_leave_a_second_lib_entity_or_sample() {
    let world = World::new(SandboxConfig::for_tests());
    for action in [
        "CreateRecognitionLib",
        "CreateRecognitionEntity",
        "CreateRecognitionSample",
    ] {
        world.sandbox.script(
            action,
            vec![Fault::ErrorAfter, Fault::ResetAfter, Fault::MalformedAfter],
        );
    }
    let manifest = world.manifest("m.csv", &manifest_body("lib", 3, 3));
    let summary = world.path("s.json");
    let out = run_ice(&world, &manifest, &["--summary", summary.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_exactly_once(&world.sandbox.snapshot(), 1, 3, 9);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    assert!(summary["recovered"].as_u64().unwrap() >= 1, "{summary}");
    let lines = ledger_lines(&world.path("m.ice.ledger.jsonl"));
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "created" && l["recovered"] == true)
    );
}

#[test]
fn kill_9_at_random_moments_then_resume_leaves_one_lib_entity_and_sample_each() {
    let mut config = SandboxConfig::for_tests();
    config.ice_qps = 0;
    config.latency_ms = 3;
    config.latency_jitter_ms = 3;
    config.faults = FaultRates {
        error_after: 0.15,
        reset_after: 0.05,
        ..FaultRates::default()
    };
    let world = World::new(config);
    let mut body = manifest_body("staff", 60, 3);
    body.push_str(&manifest_body("guests", 60, 2).replacen(
        "category_id,person_id,person_name,image_url\n",
        "",
        1,
    ));
    let manifest = world.manifest("m.csv", &body);
    let url = world.sandbox.base_url();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut kills = 0;
    // Until ten kills have landed mid-run (a run that finishes first does not count), bounded.
    for _ in 0..40 {
        if kills == 10 {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = Duration::from_millis(20 + rng % 200);
        if kill_after(
            &mut world.command(&[
                "run",
                manifest.to_str().unwrap(),
                "--target",
                "ice",
                "--endpoint",
                &url,
                "--progress",
                "off",
                "--qps",
                "100",
                "-q",
            ]),
            wait,
        ) {
            kills += 1;
        }
    }
    assert!(kills >= 8, "only {kills} kills landed mid-run");
    let out = run_ice(&world, &manifest, &["--qps", "400", "--max-attempts", "30"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    assert_exactly_once(&state, 2, 120, 300);
    let ids: HashSet<String> = samples_of(&state).into_iter().map(|s| s.3).collect();
    let last = last_per_image(&world.path("m.ice.ledger.jsonl"));
    assert_eq!(last.len(), 300);
    for record in last.values() {
        assert_eq!(record["status"], "registered");
        assert!(
            ids.contains(record["sample_id"].as_str().unwrap()),
            "{record}"
        );
    }
}

#[test]
fn an_mts_ledger_is_not_resumed_as_an_ice_import() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 1, 1));
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(0));
    let ledger = world.path("m.ledger.jsonl");
    let before = world.sandbox.snapshot().stats.requests;
    let out = run_ice(&world, &manifest, &["--ledger", ledger.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("target mts"), "{}", stderr(&out));
    assert_eq!(world.sandbox.snapshot().stats.requests, before);
}

fn client(world: &World) -> face_enroll::api::Client {
    use face_enroll::credentials::{Credentials, Secret};
    use face_enroll::sandbox::{DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET};
    face_enroll::api::Client::new(face_enroll::api::ClientConfig {
        endpoints: face_enroll::api::Endpoints::single(&world.sandbox.base_url()).unwrap(),
        credentials: Credentials {
            access_key_id: DEFAULT_ACCESS_KEY_ID.into(),
            access_key_secret: Secret::new(DEFAULT_ACCESS_KEY_SECRET),
            security_token: None,
        },
        signature: Default::default(),
        timeout: Duration::from_secs(10),
        max_idle_per_host: 2,
    })
    .unwrap()
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// `verify MANIFEST --target ice --json` against the world's sandbox.
fn verify_json(world: &World, manifest: &std::path::Path) -> serde_json::Value {
    let url = world.sandbox.base_url();
    let out = world
        .command(&[
            "verify",
            manifest.to_str().unwrap(),
            "--target",
            "ice",
            "--json",
            "--endpoint",
            &url,
        ])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)))
}

/// Every finding of one kind across the report's libraries.
fn findings(report: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    report["libraries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l[kind].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn verify_agrees_after_an_import_then_names_a_vanished_and_an_orphaned_sample() {
    use face_enroll::api::Algorithm;
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 3, 2));
    assert_eq!(run_ice(&world, &manifest, &[]).status.code(), Some(0));
    let client = client(&world);
    let clean = verify_json(&world, &manifest);
    assert_eq!(clean["totals"]["exit_code"], 0, "{clean}");
    assert_eq!(
        (clean["checked"].as_u64(), clean["agree"].as_u64()),
        (Some(6), Some(6))
    );

    let state = world.sandbox.snapshot();
    let (lib, entity) = (&state.ice.libs[0], &state.ice.libs[0].entities[0]);
    let gone = &entity.samples[0];
    block_on(async {
        let face = Algorithm::Face;
        client
            .delete_recognition_sample(face, &lib.lib_id, &entity.entity_id, &gone.sample_id)
            .await
            .unwrap();
        client
            .create_recognition_sample(
                face,
                &lib.lib_id,
                &entity.entity_id,
                "https://x/extra.jpg",
                None,
            )
            .await
            .unwrap();
    });
    let drift = verify_json(&world, &manifest);
    let vanished = findings(&drift, "vanished");
    assert_eq!(vanished.len(), 1, "{drift}");
    assert_eq!(vanished[0]["sample_id"], gone.sample_id.as_str());
    let orphans = findings(&drift, "orphans");
    assert_eq!(orphans.len(), 1, "{drift}");
    assert_eq!(orphans[0]["image_url"], "https://x/extra.jpg");
    // One verify for both targets: an image the server lost is listed once, as vanished (as
    // on MTS), not also as missing.
    assert!(findings(&drift, "missing").is_empty(), "{drift}");
    assert!(findings(&drift, "duplicates").is_empty());
}

#[test]
fn rollback_deletes_recorded_samples_and_only_the_empty_libs_and_entities_the_run_created() {
    use face_enroll::api::Algorithm;
    let world = World::new(SandboxConfig::for_tests());
    let made = lib(
        &world,
        &["create", "--algorithm", "face", "--name", "shared"],
    );
    let shared_id = stdout(&made).trim().to_string();
    let mut body = manifest_body("shared", 2, 2);
    body.push_str(&manifest_body("fresh", 1, 2).replacen(
        "category_id,person_id,person_name,image_url\n",
        "",
        1,
    ));
    let manifest = world.manifest("m.csv", &body);
    assert_eq!(run_ice(&world, &manifest, &[]).status.code(), Some(0));
    let state = world.sandbox.snapshot();
    let shared = state
        .ice
        .libs
        .iter()
        .find(|l| l.lib_id == shared_id)
        .unwrap();
    let foreign_home = shared.entities[0].entity_id.clone();
    let client = client(&world);
    block_on(client.create_recognition_sample(
        Algorithm::Face,
        &shared_id,
        &foreign_home,
        "https://x/theirs.jpg",
        None,
    ))
    .unwrap();

    let ledger = world.path("m.ice.ledger.jsonl");
    let url = world.sandbox.base_url();
    let rollback = |yes: bool| {
        let mut args = vec![
            "rollback",
            "--ledger",
            ledger.to_str().unwrap(),
            "--all",
            "--json",
            "--endpoint",
            &url,
        ];
        if yes {
            args.push("--yes");
        }
        world.command(&args).output().unwrap()
    };
    let preview = rollback(false);
    assert_eq!(preview.status.code(), Some(0), "{}", stderr(&preview));
    assert!(
        stdout(&preview).contains("would delete 6 samples"),
        "{}",
        stdout(&preview)
    );
    assert_eq!(
        samples_of(&world.sandbox.snapshot()).len(),
        7,
        "a dry run deleted something"
    );

    let out = rollback(true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let report: serde_json::Value =
        serde_json::from_str(&text[text.find("{\n").unwrap()..]).unwrap();
    assert_eq!(
        (report["removed"].as_u64(), report["already_gone"].as_u64()),
        (Some(6), Some(0)),
        "{report}"
    );
    assert_eq!(report["failed"], 0);
    assert_eq!(
        report["entities_deleted"].as_array().unwrap().len(),
        2,
        "fresh's entity and shared's second: {report}"
    );
    assert_eq!(
        report["libs_deleted"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert!(
        report["kept_not_empty"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(foreign_home)),
        "{report}"
    );
    let state = world.sandbox.snapshot();
    assert_eq!(
        state.ice.libs.len(),
        1,
        "the library the run did not create stays"
    );
    assert_eq!(state.ice.libs[0].lib_id, shared_id);
    let left = samples_of(&state);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].2, "https://x/theirs.jpg");
    let last = last_per_image(&ledger);
    assert!(last.values().all(|r| r["status"] == "removed"), "{last:?}");

    let again = run_ice(&world, &manifest, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_exactly_once(&world.sandbox.snapshot(), 2, 3, 7);
}

#[test]
fn the_verify_and_rollback_commands_recognise_an_ice_ledger() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest("m.csv", &manifest_body("lib", 2, 2));
    assert_eq!(run_ice(&world, &manifest, &[]).status.code(), Some(0));
    let url = world.sandbox.base_url();
    let m = manifest.to_str().unwrap();
    let verify = world
        .command(&["verify", m, "--target", "ice", "--endpoint", &url])
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
    assert!(
        stdout(&verify).contains("4 images checked, 4 agree"),
        "{}",
        stdout(&verify)
    );

    let ledger = world.path("m.ice.ledger.jsonl");
    let l = ledger.to_str().unwrap();
    let dry = world
        .command(&["rollback", "--ledger", l, "--all", "--endpoint", &url])
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("would delete 4 samples"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(
        samples_of(&world.sandbox.snapshot()).len(),
        4,
        "a dry run deleted"
    );

    let real = world
        .command(&[
            "rollback",
            "--ledger",
            l,
            "--all",
            "--yes",
            "--endpoint",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(real.status.code(), Some(0), "{}", stderr(&real));
    assert!(samples_of(&world.sandbox.snapshot()).is_empty());
    let drift = world
        .command(&["verify", m, "--ledger", l, "--endpoint", &url])
        .output()
        .unwrap();
    assert_eq!(
        drift.status.code(),
        Some(0),
        "after rollback the ledger says removed: {}",
        stdout(&drift)
    );
}

#[test]
fn check_plans_an_ice_import_without_the_ten_image_limit_and_with_byte_limits() {
    let world = World::new(SandboxConfig::for_tests());
    let mut body = manifest_body("lib", 1, 12);
    body.push_str(&format!(
        "{},p,https://img.example.com/long.jpg\n",
        "库".repeat(22)
    ));
    let manifest = world.manifest("m.csv", &body);
    let out = world
        .command(&["check", manifest.to_str().unwrap(), "--target", "ice"])
        .output()
        .unwrap();
    let plan = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{plan}");
    assert!(
        plan.contains("invalid rows: 1"),
        "66-byte library name: {plan}"
    );
    assert!(plan.contains("to send: 12 images"), "{plan}");
    assert!(plan.contains("estimated time at 50/s"), "{plan}");
    assert_eq!(world.sandbox.snapshot().stats.requests, 0);
}
