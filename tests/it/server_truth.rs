//! The server is the truth, the ledger the journal: a lost or new ledger, and image URLs
//! presigned afresh, send nothing twice — the run reads what the server holds and adopts it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use face_enroll::sandbox::{FaultRates, SandboxConfig};

/// Creates of `action` the sandbox has admitted so far.
fn creates(world: &World, action: &str) -> u64 {
    world
        .sandbox
        .snapshot()
        .stats
        .by_action
        .get(action)
        .copied()
        .unwrap_or(0)
}

/// A manifest of presigned OSS URLs: V1 shape (`Expires`, `OSSAccessKeyId`, `Signature`) or V4
/// shape (`x-oss-*`), signed with `stamp` so every signing gives other strings.
fn signed_manifest(persons: usize, per_person: usize, v4: bool, stamp: u32) -> String {
    let mut body = String::from("category_id,person_id,image_url\n");
    for p in 0..persons {
        for i in 0..per_person {
            let object = format!("https://bucket.oss-cn-shanghai.aliyuncs.com/p{p}/{i}.jpg");
            let query = if v4 {
                format!(
                    "x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-credential=LTAI%2F2026{stamp}&x-oss-date=2026{stamp}&x-oss-expires=3600&x-oss-signature=s{stamp}"
                )
            } else {
                format!("Expires={stamp}&OSSAccessKeyId=LTAI&Signature=sig{stamp}%3D")
            };
            body.push_str(&format!("lib,person-{p},{object}?{query}\n"));
        }
    }
    body
}

/// Every last ledger record is `registered` with an id the server holds for that image.
fn assert_ledger_holds_the_servers_ids(ledger: &Path, server: &HashMap<String, String>) {
    let last = last_per_image(ledger);
    assert_eq!(last.len(), server.len(), "the ledger lost images");
    let ids: HashSet<&str> = server.values().map(String::as_str).collect();
    for record in last.values() {
        assert_eq!(record["status"], "registered", "{record}");
        let id = record["face_id"]
            .as_str()
            .or(record["sample_id"].as_str())
            .unwrap();
        assert!(ids.contains(id), "{record}");
    }
}

fn mts_ids(world: &World) -> HashMap<String, String> {
    world
        .faces()
        .into_iter()
        .map(|(_, _, url, id)| (url, id))
        .collect()
}

fn ice_ids(world: &World) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    for lib in world.sandbox.snapshot().ice.libs {
        for entity in lib.entities {
            for sample in entity.samples {
                ids.insert(sample.image_url.unwrap_or_default(), sample.sample_id);
            }
        }
    }
    ids
}

#[test]
fn a_new_ledger_against_a_full_library_sends_no_create_and_adopts_every_image() {
    for (target, action) in [
        ("mts", "RegisterCustomFace"),
        ("ice", "CreateRecognitionSample"),
    ] {
        let world = World::new(SandboxConfig::for_tests());
        let manifest = world.manifest("m.csv", &manifest_body("lib", 9, 3));
        let (a, b) = (world.path("a.jsonl"), world.path("b.jsonl"));
        let target_flags = ["--target", target];
        let run = |ledger: &Path| {
            let mut flags = vec!["--ledger", ledger.to_str().unwrap()];
            flags.extend_from_slice(&target_flags);
            world.run(&manifest, &flags)
        };
        assert_eq!(run(&a).status.code(), Some(0));
        let before = creates(&world, action);
        assert_eq!(before, 27);
        let out = run(&b);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(creates(&world, action), before, "{target}: sent again");
        let server = if target == "mts" {
            mts_ids(&world)
        } else {
            ice_ids(&world)
        };
        assert_eq!(server.len(), 27, "{target}: the server holds copies");
        assert_ledger_holds_the_servers_ids(&b, &server);
        let adopted = last_per_image(&b)
            .values()
            .filter(|r| r["adopted"] == true)
            .count();
        assert_eq!(adopted, 27, "{target}");
        let mut args = vec![
            "verify",
            manifest.to_str().unwrap(),
            "--ledger",
            b.to_str().unwrap(),
            "--endpoint",
        ];
        let url = world.sandbox.base_url();
        args.push(&url);
        args.extend_from_slice(&target_flags);
        let verify = world.command(&args).output().unwrap();
        assert_eq!(
            verify.status.code(),
            Some(0),
            "{target}: {}",
            stderr(&verify)
        );
    }
}

#[test]
fn urls_presigned_afresh_are_the_same_images_and_nothing_is_sent_twice() {
    for (target, action) in [
        ("mts", "RegisterCustomFace"),
        ("ice", "CreateRecognitionSample"),
    ] {
        for v4 in [false, true] {
            let world = World::new(SandboxConfig::for_tests());
            let first = world.manifest("m.csv", &signed_manifest(3, 3, v4, 1));
            let again = world.manifest("again.csv", &signed_manifest(3, 3, v4, 2));
            let ledger = world.path("l.jsonl");
            let flags = ["--ledger", ledger.to_str().unwrap(), "--target", target];
            assert_eq!(world.run(&first, &flags).status.code(), Some(0));
            let before = creates(&world, action);
            assert_eq!(before, 9);
            // With the same ledger, and with a new one.
            let out = world.run(&again, &flags);
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            let fresh = world.path("fresh.jsonl");
            let out = world.run(
                &again,
                &["--ledger", fresh.to_str().unwrap(), "--target", target],
            );
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            assert_eq!(
                creates(&world, action),
                before,
                "{target} v4={v4}: re-signed URLs were sent again"
            );
        }
    }
}

#[test]
fn the_same_url_for_two_persons_is_two_images() {
    let world = World::new(SandboxConfig::for_tests());
    let body = "category_id,person_id,image_url\n\
                lib,alice,https://x.example.com/a.jpg?Signature=1\n\
                lib,bob,https://x.example.com/a.jpg?Signature=2\n\
                lib,alice,https://X.example.com:443/a.jpg\n";
    let manifest = world.manifest("m.csv", body);
    let out = world.run(&manifest, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 2, "one image per person");
    let check = world
        .command(&["check", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("line 4: the same image as line 2"), "{text}");
}

#[test]
fn a_crash_loop_with_the_ledger_deleted_between_kills_still_registers_each_image_once() {
    let mut config = SandboxConfig::for_tests();
    config.latency_ms = 5;
    config.faults = FaultRates {
        error_after: 0.05,
        reset_after: 0.03,
        ..FaultRates::default()
    };
    let world = World::new(config);
    let manifest = world.manifest("m.csv", &manifest_body("lib", 60, 3));
    let ledger = world.path("m.ledger.jsonl");
    let url = world.sandbox.base_url();
    let mut kills = 0;
    let mut wait = 150u64;
    for round in 0..16 {
        if kills == 6 {
            break;
        }
        if round == 3 {
            let _ = std::fs::remove_file(&ledger);
        }
        wait = 120 + (wait * 7 + 31) % 400;
        let landed = kill_after(
            world
                .command(&[
                    "run",
                    manifest.to_str().unwrap(),
                    "--endpoint",
                    &url,
                    "--progress",
                    "off",
                    "--timeout",
                    "1",
                    "-q",
                ])
                .stderr(std::process::Stdio::null()),
            Duration::from_millis(wait),
        );
        kills += usize::from(landed);
    }
    assert!(kills >= 4, "only {kills} kills landed mid-run");
    std::fs::remove_file(&ledger).unwrap();
    let mut last = None;
    for _ in 0..4 {
        let out = world.run(&manifest, &["--timeout", "1", "--max-attempts", "30"]);
        last = out.status.code();
        if last == Some(0) {
            break;
        }
    }
    assert_eq!(last, Some(0));
    let copies = copies_per_url(&world.sandbox.snapshot());
    assert_eq!(copies.len(), 180, "an image is missing");
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "registered twice: {twice:?}");
    assert_ledger_holds_the_servers_ids(&ledger, &mts_ids(&world));
}
