//! Local photos: uploaded once by content with `--upload-to`, then sent as `oss://` objects;
//! a renamed file is the same image.

use crate::common::*;
use face_enroll::sandbox::SandboxConfig;

/// A JPEG of 400×400 whose comment is `tag`: headers only, which is what the upload checks
/// (whole files by their first and last bytes) and pre-flight reads (the dimensions).
fn jpeg(tag: &str) -> Vec<u8> {
    face_enroll::sandbox::photos::jpeg(400, 400, None, tag)
}

/// A PNG of 400×400 whose text chunk is `tag`.
fn png(tag: &str) -> Vec<u8> {
    face_enroll::sandbox::photos::png(400, 400, tag)
}

/// photos/: a1 and a2 of alice (a2 is a1 again under another name), b1 of bob (a PNG named
/// .jpg), a text file and an empty file.
fn photos(world: &World, names: [&str; 5]) -> std::path::PathBuf {
    let dir = world.dir.path().join("photos");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let files: [(&str, Vec<u8>); 5] = [
        (names[0], jpeg("alice 1")),
        (names[1], jpeg("alice 1")),
        (names[2], png("bob 1")),
        (names[3], b"not a photo".to_vec()),
        (names[4], Vec::new()),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let body = format!(
        "category_id,person_id,image_url\n\
         staff,alice,photos/{}\n\
         staff,alice,photos/{}\n\
         staff,bob,file://photos/{}\n\
         staff,bob,photos/{}\n\
         staff,carol,photos/{}\n\
         staff,dave,https://img.example/dave.jpg\n",
        names[0], names[1], names[2], names[3], names[4]
    );
    world.manifest("m.csv", &body)
}

fn creates(world: &World) -> u64 {
    let state = world.sandbox.snapshot();
    state
        .stats
        .by_action
        .get("RegisterCustomFace")
        .copied()
        .unwrap_or(0)
}

#[test]
fn local_photos_are_uploaded_once_by_content_and_a_renamed_file_is_the_same_image() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let names = ["a1.jpg", "a2.jpg", "b1.jpg", "notes.jpg", "empty.jpg"];
    let manifest = photos(&world, names);
    let upload = [
        "--upload-to",
        "oss://media-faces/staff/",
        "--oss-endpoint",
        &base,
    ];

    // Without --upload-to: refused before anything is sent, naming the flag.
    let out = world.run(&manifest, &["--oss-endpoint", &base]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--upload-to"), "{}", stderr(&out));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    assert_eq!(world.sandbox.snapshot().stats.requests, 0);
    assert!(world.sandbox.snapshot().oss.objects.is_empty());

    let out = world.run(&manifest, &upload);
    // The text file and the empty file are invalid rows: exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    let mut keys: Vec<String> = state.oss.objects.iter().map(|o| o.key.clone()).collect();
    keys.sort();
    let sha = |bytes: &[u8]| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    let mut expected = vec![
        format!("staff/{}.jpg", sha(&jpeg("alice 1"))),
        format!("staff/{}.png", sha(&png("bob 1"))),
    ];
    expected.sort();
    assert_eq!(keys, expected, "one object per content, named by it");
    // alice's two files are one image; bob's PNG; dave's public link.
    assert_eq!(world.faces().len(), 3, "{:?}", world.faces());
    assert_eq!(creates(&world), 3);
    let ledger = std::fs::read_to_string(world.path("m.ledger.jsonl")).unwrap();
    assert!(
        ledger.contains(&format!("oss://media-faces/{}", expected[0])),
        "{ledger}"
    );
    assert!(ledger.contains("is not a JPEG or PNG image"), "{ledger}");
    assert!(ledger.contains("empty.jpg is empty"), "{ledger}");
    let puts = state.oss.requests.put;
    assert_eq!(puts, 2, "each content uploaded once");

    // Every file renamed: the same images; nothing is registered again or stored twice.
    let manifest = photos(
        &world,
        ["x1.jpg", "x2.jpg", "y1.jpg", "notes2.jpg", "empty2.jpg"],
    );
    let out = world.run(&manifest, &upload);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(creates(&world), 3, "a renamed file was sent again");
    let state = world.sandbox.snapshot();
    assert_eq!(state.oss.objects.len(), 2);
    assert!(
        state.oss.requests.put > puts,
        "the upload was tried (409: already there)"
    );

    // One new photo: one upload, one registration.
    std::fs::write(world.dir.path().join("photos/c1.jpg"), jpeg("carol 1")).unwrap();
    // A copy cut short: refused, nothing uploaded for it.
    let cut = jpeg("carol 2");
    std::fs::write(
        world.dir.path().join("photos/c2.jpg"),
        &cut[..cut.len() - 3],
    )
    .unwrap();
    let mut body = std::fs::read_to_string(&manifest).unwrap();
    body.push_str("staff,carol,photos/c1.jpg\nstaff,carol,photos/c2.jpg\n");
    let manifest = world.manifest("m.csv", &body);
    let out = world.run(&manifest, &upload);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let ledger = std::fs::read_to_string(world.path("m.ledger.jsonl")).unwrap();
    assert!(ledger.contains("c2.jpg is not a whole JPEG"), "{ledger}");
    assert_eq!(creates(&world), 4);
    assert_eq!(world.sandbox.snapshot().oss.objects.len(), 3);
    // The service side downloaded each uploaded photo through a link it was sent.
    let fetches = world.sandbox.snapshot().oss.fetches;
    assert_eq!(fetches.len(), 3, "{fetches:?}");
    assert!(fetches.iter().all(|f| f.refused.is_none()), "{fetches:?}");
}

/// photos/<library>/<person>/…: alice twice the same bytes, a hidden file and a text file;
/// bob a PNG; dave 12 photos; a symlink out of the tree.
fn photo_tree(world: &World, suffix: &str) -> std::path::PathBuf {
    let root = world.dir.path().join("photos");
    let _ = std::fs::remove_dir_all(&root);
    let put = |path: &str, bytes: &[u8]| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    put(&format!("staff/alice/1{suffix}.jpg"), &jpeg("alice"));
    put(&format!("staff/alice/2{suffix}.jpg"), &jpeg("alice"));
    put(
        &format!("staff/alice/.3{suffix}.jpg"),
        &jpeg("alice hidden"),
    );
    put(&format!("staff/alice/notes{suffix}.txt"), b"no photo");
    put(&format!("staff/bob/1{suffix}.jpg"), &png("bob"));
    for i in 0..12 {
        put(
            &format!("guests/dave/{i:02}{suffix}.jpg"),
            &jpeg(&format!("dave {i}")),
        );
    }
    // And 96 more persons of 5 photos: 500 files in all.
    for p in 0..96 {
        for i in 0..5 {
            put(
                &format!("bulk/p{p:02}/{i}{suffix}.jpg"),
                &jpeg(&format!("bulk {p} {i}")),
            );
        }
    }
    std::os::unix::fs::symlink(
        world.dir.path().join("outside.jpg"),
        root.join(format!("staff/bob/link{suffix}.jpg")),
    )
    .unwrap();
    std::fs::write(world.dir.path().join("outside.jpg"), jpeg("outside")).unwrap();
    root
}

#[test]
fn a_folder_is_a_manifest_by_its_layout_and_renaming_every_file_sends_nothing() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let root = photo_tree(&world, "");
    let upload = [
        "--upload-to",
        "oss://media-faces/tree/",
        "--oss-endpoint",
        &base,
    ];
    let check = world
        .command(&["check", root.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("read as a folder of photos"), "{text}");
    assert!(
        stderr(&check).contains("skipped=3") && stderr(&check).contains("not_images=1"),
        "{}",
        stderr(&check)
    );
    let out = world.run(&root, &upload);
    // dave's last two photos are over the 10-image limit: exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let faces = world.faces();
    let of = |person: &str| faces.iter().filter(|f| f.1 == person).count();
    assert_eq!(
        (of("alice"), of("bob"), of("dave")),
        (1, 1, 10),
        "{faces:?}"
    );
    assert!(world.path("photos.ledger.jsonl").exists());
    // The 10 kept are the first 10 by name.
    let ledger = std::fs::read_to_string(world.path("photos.ledger.jsonl")).unwrap();
    assert!(ledger.contains("\"skipped\""), "{ledger}");
    let creates = creates(&world);
    assert_eq!(creates, 12 + 480);
    assert_eq!(world.faces().len(), 12 + 480);

    // Every file renamed: nothing is sent or stored again.
    let root = photo_tree(&world, "-renamed");
    let out = world.run(&root, &upload);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(self::creates(&world), creates, "{}", stderr(&out));

    // A folder the layout places nothing in is refused before anything is sent.
    let empty = world.dir.path().join("empty");
    std::fs::create_dir_all(empty.join("a")).unwrap();
    let out = world.run(&empty, &upload);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--layout"), "{}", stderr(&out));
}

#[test]
fn scan_prints_the_folder_as_an_editable_manifest_naming_the_same_photos() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    photo_tree(&world, "");
    let out = world.command(&["scan", "photos"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "category_id,person_id,person_name,image_url");
    assert_eq!(lines.len(), 1 + 12 + 2 + 1 + 480, "{csv}");
    assert!(
        lines.contains(&"staff,alice,,photos/staff/alice/1.jpg"),
        "{csv}"
    );
    // Saved beside the folder, it runs as the folder does.
    let manifest = world.manifest("scanned.csv", &csv);
    let out = world.run(
        &manifest,
        &[
            "--upload-to",
            "oss://media-faces/tree/",
            "--oss-endpoint",
            &base,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 12 + 480);
    let out = world.command(&["scan", "nowhere"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_readmes_photo_folder_command_registers_the_sample_photos_offline() {
    let world = World::new(SandboxConfig::for_tests());
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/photos");
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    assert!(
        readme.contains("run samples/photos --sandbox --upload-to oss://sandbox/faces/"),
        "the README's third command changed"
    );
    let ledger = world.path("photos.ledger.jsonl");
    let out = world
        .command(&[
            "run",
            folder.to_str().unwrap(),
            "--sandbox",
            "--upload-to",
            "oss://sandbox/faces/",
            "--ledger",
            ledger.to_str().unwrap(),
            "--progress",
            "off",
        ])
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("now holds 6 faces"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("local photos: 6 files, 6 uploaded"),
        "{}",
        stderr(&out)
    );
    let last = last_per_image(&ledger);
    assert_eq!(last.len(), 6);
    assert!(last.values().all(|r| {
        r["status"] == "registered"
            && r["image_url"]
                .as_str()
                .unwrap()
                .starts_with("oss://sandbox/faces/")
    }));
}

#[test]
fn the_ledger_journals_uploads_so_an_unchanged_file_is_neither_read_nor_uploaded_again() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let names = ["a1.jpg", "a2.jpg", "b1.jpg", "notes.jpg", "empty.jpg"];
    let manifest = photos(&world, names);
    let upload = [
        "--upload-to",
        "oss://media-faces/staff/",
        "--oss-endpoint",
        &base,
    ];
    let out = world.run(&manifest, &upload);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let ledger = ledger_lines(&world.path("m.ledger.jsonl"));
    let uploads: Vec<_> = ledger.iter().filter(|l| l["kind"] == "upload").collect();
    assert_eq!(uploads.len(), 3, "a1, a2 and b1: {uploads:?}");
    assert!(uploads.iter().all(|u| {
        u["oss_object"]
            .as_str()
            .unwrap()
            .starts_with("oss://media-faces/staff/")
            && u["size"].as_u64().unwrap() > 0
            && std::path::Path::new(u["path"].as_str().unwrap()).is_absolute()
    }));
    // Every line, the upload records included, is what doc/schema/ledger-record.json describes.
    let schema_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/schema/ledger-record.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for line in &ledger {
        let errors: Vec<String> = validator.iter_errors(line).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{line}: {errors:?}");
    }
    // The run's summary says what the upload stage did, as doc/schema/summary.json describes.
    let summary_schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/schema/summary.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let summaries = jsonschema::validator_for(&summary_schema).unwrap();
    let uploads_of = |ledger: &[serde_json::Value]| {
        let end = ledger
            .iter()
            .rev()
            .find(|l| l["kind"] == "run_end")
            .unwrap();
        let errors: Vec<String> = summaries
            .iter_errors(&end["summary"])
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        let u = &end["summary"]["uploads"];
        let count = |name: &str| u[name].as_u64().unwrap();
        assert_eq!(
            count("files"),
            [
                "unchanged",
                "uploaded",
                "already_there",
                "refused",
                "stopped"
            ]
            .map(count)
            .iter()
            .sum::<u64>(),
            "every file is counted once: {u}"
        );
        [
            u["files"].as_u64().unwrap(),
            u["uploaded"].as_u64().unwrap(),
            u["already_there"].as_u64().unwrap(),
            u["unchanged"].as_u64().unwrap(),
            u["refused"].as_u64().unwrap(),
        ]
    };
    // Five files: a1 and a2 (one content, one object) and b1 uploaded; the text file and the
    // empty one not.
    assert_eq!(uploads_of(&ledger), [5, 3, 0, 0, 2]);
    let puts = world.sandbox.snapshot().oss.requests.put;
    // check, status and report read the uploaded files as the objects they became: only the
    // text file and the empty one are invalid (never uploaded, they still read as files).
    let check = world.command(&["check", "m.csv"]).output().unwrap();
    let text = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(text.contains("invalid rows: 2"), "{text}");
    assert!(text.contains("already registered: 3"), "{text}");
    assert!(
        !text.contains("a1.jpg") && !text.contains("b1.jpg"),
        "{text}"
    );
    let failed = world
        .command(&["status", "m.csv", "--failed"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&failed.stdout).into_owned();
    assert_eq!(listed.lines().count(), 1 + 2, "{listed}");

    // Nothing changed: no file read, nothing uploaded, nothing sent.
    let out = world.run(&manifest, &upload);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("unchanged=3"), "{}", stderr(&out));
    assert_eq!(world.sandbox.snapshot().oss.requests.put, puts);
    let ledger = ledger_lines(&world.path("m.ledger.jsonl"));
    assert_eq!(uploads_of(&ledger), [5, 0, 0, 3, 2]);

    // b1 edited in place: read and uploaded again, as a new image of bob's.
    std::fs::write(
        world.dir.path().join("photos/b1.jpg"),
        png("bob, a new photo"),
    )
    .unwrap();
    let out = world.run(&manifest, &upload);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("unchanged=2"), "{}", stderr(&out));
    assert_eq!(world.sandbox.snapshot().oss.requests.put, puts + 1);
    assert_eq!(creates(&world), 4);
}

#[test]
fn a_crash_loop_during_uploads_and_registration_leaves_one_object_per_content_and_one_face_per_photo()
 {
    use std::time::Duration;
    let world = World::new(SandboxConfig {
        latency_ms: 15,
        ..SandboxConfig::for_tests()
    });
    let base = world.sandbox.base_url();
    let root = world.dir.path().join("photos");
    // 40 persons × 4 photos; every fifth photo repeats the person's first under another name.
    for p in 0..40 {
        for i in 0..4 {
            let tag = if i == 3 && p % 5 == 0 {
                format!("p{p} 0")
            } else {
                format!("p{p} {i}")
            };
            let path = root.join(format!("staff/p{p:02}/{i}.jpg"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, jpeg(&tag)).unwrap();
        }
    }
    let contents = 40 * 4 - 8;
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            root.to_str().unwrap(),
            "--endpoint",
            &base,
            "--oss-endpoint",
            &base,
            "--upload-to",
            "oss://media-faces/crash/",
            "--upload-concurrency",
            "2",
            "--progress",
            "off",
            "-q",
        ];
        args.extend_from_slice(extra);
        world.command(&args)
    };
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut kills = 0;
    // Until eight kills have landed mid-run (a run that finishes first does not count), bounded.
    for _ in 0..30 {
        if kills == 8 {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = Duration::from_millis(30 + rng % 400);
        if kill_after(&mut run(&["--qps", "60"]), wait) {
            kills += 1;
        }
    }
    assert!(kills >= 6, "only {kills} kills landed mid-run");
    let out = run(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    // One object per content, named by it: nothing stored twice under two keys.
    assert_eq!(state.oss.objects.len(), contents);
    // One face per distinct photo, whatever the kills interrupted.
    let mut per_object = std::collections::HashMap::new();
    for (_, person, url, _) in faces_of(&state) {
        let o = face_enroll::image::OssObject::from_url(&url).unwrap();
        *per_object.entry((person, o.key().to_string())).or_insert(0) += 1;
    }
    assert_eq!(per_object.len(), contents, "a photo missing");
    assert!(
        per_object.values().all(|&n| n == 1),
        "a photo held twice: {per_object:?}"
    );
    // The ledger replays: a last run registers and uploads nothing (it may read a person again
    // to settle a request a kill left unanswered).
    let (creates_before, puts_before) = (creates(&world), state.oss.requests.put);
    let out = run(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(creates(&world), creates_before);
    assert_eq!(world.sandbox.snapshot().oss.requests.put, puts_before);
}

#[test]
fn no_escape_refuses_a_local_path_that_leaves_the_manifests_folder_and_reads_nothing_of_it() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    std::fs::write(world.dir.path().join("outside.jpg"), jpeg("outside")).unwrap();
    let inner = world.dir.path().join("roster");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(inner.join("in.jpg"), jpeg("inside")).unwrap();
    let manifest = inner.join("m.csv");
    std::fs::write(
        &manifest,
        "category_id,person_id,image_url\nstaff,a,in.jpg\nstaff,b,../outside.jpg\n",
    )
    .unwrap();
    let upload = [
        "--upload-to",
        "oss://media-faces/x/",
        "--oss-endpoint",
        &base,
    ];
    let mut args = upload.to_vec();
    args.push("--no-escape");
    let out = world.run(&manifest, &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let ledger = std::fs::read_to_string(inner.join("m.ledger.jsonl")).unwrap();
    assert!(ledger.contains("leaves the manifest's folder"), "{ledger}");
    let state = world.sandbox.snapshot();
    assert_eq!(
        state.oss.requests.put, 1,
        "only the file inside was uploaded"
    );
    assert_eq!(world.faces().len(), 1);
    // Without the flag, a path out of the folder is the user's to give.
    let out = world.run(&manifest, &[&upload[..], &["--retry-failed"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 2);
}

#[test]
fn ice_samples_from_local_photos_are_uploaded_once_and_a_renamed_file_is_the_same_sample() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let names = ["a1.jpg", "a2.jpg", "b1.jpg", "notes.jpg", "empty.jpg"];
    let manifest = photos(&world, names);
    let args = [
        "--target",
        "ice",
        "--upload-to",
        "oss://media-faces/ice/",
        "--oss-endpoint",
        &base,
    ];
    let samples = |world: &World| -> Vec<String> {
        let state = world.sandbox.snapshot();
        state
            .ice
            .libs
            .iter()
            .flat_map(|l| &l.entities)
            .flat_map(|e| &e.samples)
            .filter_map(|s| s.image_url.clone())
            .collect()
    };
    let out = world.run(&manifest, &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(samples(&world).len(), 3, "{:?}", samples(&world));
    assert_eq!(world.sandbox.snapshot().oss.objects.len(), 2);
    let fetches = world.sandbox.snapshot().oss.fetches;
    assert_eq!(
        fetches.len(),
        2,
        "the two uploaded photos were downloaded by the service"
    );
    let manifest = photos(&world, ["x1.jpg", "x2.jpg", "y1.jpg", "n.jpg", "e.jpg"]);
    let out = world.run(&manifest, &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(samples(&world).len(), 3, "a renamed file was sent again");
}

/// A manifest of `persons` persons with one local photo each, under photos/.
fn one_photo_each(world: &World, persons: usize) -> std::path::PathBuf {
    let dir = world.dir.path().join("photos");
    std::fs::create_dir_all(&dir).unwrap();
    let mut body = String::from("category_id,person_id,image_url\n");
    for i in 0..persons {
        std::fs::write(dir.join(format!("p{i}.jpg")), jpeg(&format!("person {i}"))).unwrap();
        body.push_str(&format!("staff,p{i},photos/p{i}.jpg\n"));
    }
    world.manifest("m.csv", &body)
}

#[test]
fn registration_starts_with_the_first_uploads_not_after_the_last() {
    let mut config = SandboxConfig::for_tests();
    config.oss.slow_body_ms = 3_000;
    let world = World::new(config);
    let base = world.sandbox.base_url();
    let manifest = one_photo_each(&world, 8);
    // The first upload OSS receives is held 3 s before it is answered.
    world
        .sandbox
        .script_oss("PUT", vec![face_enroll::sandbox::OssFault::SlowBody]);
    let out = world.run(
        &manifest,
        &[
            "--upload-to",
            "oss://media-faces/staff/",
            "--oss-endpoint",
            &base,
            "--upload-concurrency",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    assert_eq!(
        state.stats.faults.get("oss_slow_body"),
        Some(&1),
        "the fault happened"
    );
    assert_eq!(world.faces().len(), 8);
    // The ledger is written in the order things happened: persons whose photos were up were
    // registered while the held upload was still on its way.
    let ledger = ledger_lines(&world.path("m.ledger.jsonl"));
    let last_upload = ledger
        .iter()
        .rposition(|l| l["kind"] == "upload")
        .expect("upload records");
    let first_registered = ledger
        .iter()
        .position(|l| l["status"] == "registered")
        .expect("registered records");
    assert!(
        first_registered < last_upload,
        "every registration waited for the last upload: {ledger:#?}"
    );
    assert_eq!(ledger.iter().filter(|l| l["kind"] == "upload").count(), 8);
}

#[test]
fn an_upload_that_fails_is_not_sent_and_the_next_run_uploads_and_registers_it() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let manifest = one_photo_each(&world, 4);
    let upload = [
        "--upload-to",
        "oss://media-faces/staff/",
        "--oss-endpoint",
        &base,
        "--upload-concurrency",
        "1",
    ];
    // Every attempt of the first upload gets OSS's 500.
    use face_enroll::sandbox::OssFault::Error;
    world.sandbox.script_oss("PUT", vec![Error, Error, Error]);
    let out = world.run(&manifest, &upload);
    let state = world.sandbox.snapshot();
    assert_eq!(
        state.stats.faults.get("oss_error"),
        Some(&3),
        "the faults happened"
    );
    // Retries ran out on one image: resumable (exit 5), the three others registered.
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 3);
    assert_eq!(
        creates(&world),
        3,
        "the photo that is not in OSS was not sent"
    );
    let ledger = ledger_lines(&world.path("m.ledger.jsonl"));
    let failed: Vec<_> = ledger.iter().filter(|l| l["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{ledger:#?}");
    assert_eq!(failed[0]["retryable"], true);
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .contains("the upload failed"),
        "{:?}",
        failed[0]
    );
    assert_eq!(ledger.iter().filter(|l| l["kind"] == "upload").count(), 3);

    let out = world.run(&manifest, &upload);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 4);
    assert_eq!(world.sandbox.snapshot().oss.objects.len(), 4);
}

#[test]
fn an_oss_endpoint_that_cannot_be_reached_is_an_outage_exit_6_naming_it_and_nothing_is_sent() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = one_photo_each(&world, 3);
    // A port nothing listens on: every upload is refused before it is sent.
    let dead = format!("127.0.0.1:{}", closed_port());
    let oss = format!("http://{dead}");
    let summary = world.path("summary.json");
    let out = world.run(
        &manifest,
        &[
            "--upload-to",
            "oss://media-faces/staff/",
            "--oss-endpoint",
            &oss,
            "--upload-concurrency",
            "1",
            "--summary",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains(&format!("connection refused connecting to {dead} (OSS")),
        "{text}"
    );
    assert_eq!(creates(&world), 0, "nothing was sent");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["exit_code"], 6, "{json}");
    assert!(
        json["outcome"]
            .as_str()
            .unwrap()
            .contains(&dead.to_string()),
        "{json}"
    );
    // Nothing is lost: the next run with OSS back uploads and registers every photo.
    let base = world.sandbox.base_url();
    let out = world.run(
        &manifest,
        &[
            "--upload-to",
            "oss://media-faces/staff/",
            "--oss-endpoint",
            &base,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 3);
}

#[test]
fn photos_under_folder_and_file_names_in_chinese_are_read_and_registered() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    // The seventh byte of `新闻部/1001_李伟/照片.jpg` and of `ab李伟.jpg` falls inside a
    // character: a cell is cut by bytes nowhere.
    let root = world.dir.path().join("hr");
    let person = root.join("新闻部").join("1001_李伟");
    std::fs::create_dir_all(&person).unwrap();
    std::fs::write(person.join("照片.jpg"), jpeg("li wei")).unwrap();
    std::fs::write(world.dir.path().join("ab李伟.jpg"), jpeg("li wei 2")).unwrap();
    let upload = [
        "--upload-to",
        "oss://media-faces/hr/",
        "--oss-endpoint",
        &base,
    ];
    let layout = ["--layout", "{category_id}/{person_id}_{person_name}/*"];
    let check = world
        .command(&["check", root.to_str().unwrap(), layout[0], layout[1]])
        .output()
        .unwrap();
    assert!(!stderr(&check).contains("panicked"), "{}", stderr(&check));
    let out = world.run(&root, &[&upload[..], &layout[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let manifest = world.manifest(
        "cjk.csv",
        "category_id,person_id,image_url\nstaff,p2,ab李伟.jpg\n",
    );
    let out = world.run(&manifest, &upload);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let faces = world.faces();
    assert!(faces.iter().any(|f| f.1 == "1001"), "{faces:?}");
    assert!(faces.iter().any(|f| f.1 == "p2"), "{faces:?}");
    assert_eq!(faces.len(), 2, "{faces:?}");
}

#[test]
fn check_with_upload_to_plans_local_photos_as_the_objects_they_will_be_and_uploads_nothing() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let root = world.dir.path().join("pics");
    for (person, tag) in [("alice", "a"), ("bob", "b")] {
        let dir = root.join("staff").join(person);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("1.jpg"), jpeg(tag)).unwrap();
    }
    let check = |extra: &[&str]| {
        let out = world
            .command(&[&["check", root.to_str().unwrap()][..], extra].concat())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // Without a destination the photos cannot be planned: each is said to be a local file.
    let (code, plan) = check(&[]);
    assert_eq!(code, Some(1), "{plan}");
    assert!(plan.contains("is a local file"), "{plan}");
    let upload = ["--upload-to", "oss://media-faces/staff/"];
    let (code, plan) = check(&upload);
    assert_eq!(code, Some(0), "{plan}");
    assert!(
        plan.contains("2 persons") && plan.contains("to send: 2 images"),
        "{plan}"
    );
    // Asking OSS about objects not uploaded yet would call every photo missing: refused.
    let probed = world
        .command(
            &[
                &["check", root.to_str().unwrap(), "--probe"][..],
                &upload[..],
            ]
            .concat(),
        )
        .output()
        .unwrap();
    assert_eq!(probed.status.code(), Some(2), "{}", stderr(&probed));
    assert!(
        stderr(&probed).contains("not uploaded yet"),
        "{}",
        stderr(&probed)
    );
    let state = world.sandbox.snapshot();
    assert!(state.oss.objects.is_empty(), "check uploaded something");
    assert_eq!(state.stats.requests, 0, "check sent something");

    let out = world.run(
        &root,
        &[&upload[..], &["--oss-endpoint", base.as_str()][..]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 2);
    // After the run, check names the unchanged files from the ledger's upload records: done.
    let (code, plan) = check(&upload);
    assert_eq!(code, Some(0), "{plan}");
    assert!(
        plan.contains("already registered: 2") && plan.contains("to send: 0 images"),
        "{plan}"
    );
}
