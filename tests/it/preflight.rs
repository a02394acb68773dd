//! Pre-flight against the sandbox's OSS and a web server on loopback: each kind of photo the
//! service would refuse gets its verdict by line at `check --preflight`, and `run --preflight`
//! sends none of them — the creates spent equal the valid images exactly.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::*;
use face_enroll::sandbox::SandboxConfig;
use face_enroll::sandbox::photos::{gif, jpeg, jpeg_of_size, png};

/// One answer of the web server: path, status, content type, body.
type Route = (&'static str, u16, &'static str, Vec<u8>);

/// A web server on 127.0.0.1 that answers `routes` (anything else: 404) and closes each
/// connection; it serves at most `MAX_CONNECTIONS` and counts them.
struct Web {
    base: String,
    served: Arc<AtomicUsize>,
}

const MAX_CONNECTIONS: usize = 200;

impl Web {
    fn start(routes: Vec<Route>) -> Web {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(MAX_CONNECTIONS) {
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while head.len() < 16 * 1024 && !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let (status, kind, body) = routes
                    .iter()
                    .find(|(p, ..)| *p == path)
                    .map(|(_, s, k, b)| (*s, *k, b.clone()))
                    .unwrap_or((404, "text/plain", b"no".to_vec()));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        Web { base, served }
    }
}

/// A not-found page of 1,229 bytes, as a web server sends in place of a photo.
fn not_found_page() -> Vec<u8> {
    let mut page = b"<!DOCTYPE html><html><head><title>404</title></head><body>".to_vec();
    page.resize(1229 - 14, b'.');
    page.extend_from_slice(b"</body></html>");
    page
}

const BUCKET: &str = "media-faces";

/// The manifest of the issue, line by line (line 1 is the header); `web` serves the http rows.
struct Roster {
    manifest: std::path::PathBuf,
    web: Web,
}

fn roster(world: &World) -> Roster {
    let shared = jpeg(640, 480, None, "shared");
    let same = jpeg(640, 480, None, "same");
    let web = Web::start(vec![
        ("/ok.jpg", 200, "image/jpeg", jpeg(800, 600, None, "web-ok")),
        ("/shared.jpg", 200, "image/jpeg", shared.clone()),
        ("/missing.jpg", 404, "text/html", not_found_page()),
    ]);
    let put = |key: &str, bytes: &[u8]| world.sandbox.admin_put_object(BUCKET, key, bytes).unwrap();
    put("empty.jpg", b"");
    put("anim.gif", &gif(300, 300, "gif"));
    put("big.jpg", &jpeg_of_size(1024, 768, 6 << 20, "big"));
    put("tiny.png", &png(40, 40, "tiny"));
    put("wide.jpg", &jpeg(5000, 300, None, "wide"));
    put("rotated.jpg", &jpeg(640, 480, Some(6), "rotated"));
    put("really-a-jpeg.png", &jpeg(640, 480, None, "suffix"));
    put("same.jpg", &same);
    put("copy/same.jpg", &same);
    put("shared.jpg", &shared);
    put("fine.png", &png(300, 300, "fine"));
    let w = &web.base;
    let o = format!("oss://{BUCKET}");
    let body = format!(
        "category_id,person_id,image_url\n\
         lib,p1,{w}/missing.jpg\n\
         lib,p1,{o}/empty.jpg\n\
         lib,p2,{o}/anim.gif\n\
         lib,p2,{o}/big.jpg\n\
         lib,p3,{o}/tiny.png\n\
         lib,p3,{o}/wide.jpg\n\
         lib,p4,{o}/rotated.jpg\n\
         lib,p4,{o}/really-a-jpeg.png\n\
         lib,p5,{o}/same.jpg\n\
         lib,p5,{o}/copy/same.jpg\n\
         lib,p6,{o}/shared.jpg\n\
         lib,p7,{w}/shared.jpg\n\
         lib,p8,{w}/ok.jpg\n\
         lib,p8,{o}/fine.png\n"
    );
    Roster {
        manifest: world.manifest("m.csv", &body),
        web,
    }
}

/// Lines the service would refuse, and what each one's verdict starts with.
const REFUSED: [(u64, &str); 8] = [
    (
        2,
        "not reachable: HTTP 404, not an image: text/html, 1.2 kB",
    ),
    (3, "not an image: empty (0 bytes)"),
    (4, "format GIF: convert to JPEG first"),
    (5, "too large: 6.0 MB, over the 5.0 MB limit"),
    (6, "too small: 40×40 px, the short side under 64 px"),
    (7, "too large: 5000×300 px, the long side over 4096 px"),
    (
        12,
        "the same photo as line 13 (lib / p7) under another person",
    ),
    (
        13,
        "the same photo as line 12 (lib / p6) under another person",
    ),
];

/// Lines sent with a warning, and what it starts with.
const WARNED: [(u64, &str); 3] = [
    (8, "EXIF orientation 6"),
    (9, "the name ends in .png but the file is JPEG"),
    (
        11,
        "the same photo as line 10 for the same person under another URL",
    ),
];

/// Lines the service is sent (line 11 is line 10's photo: sent once).
const SENT: [u64; 5] = [8, 9, 10, 14, 15];

fn check(world: &World, manifest: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let base = world.sandbox.base_url();
    let mut args = vec![
        "check",
        manifest.to_str().unwrap(),
        "--preflight",
        "--endpoint",
        &base,
        "--oss-endpoint",
        &base,
    ];
    args.extend_from_slice(extra);
    world.command(&args).output().unwrap()
}

#[test]
fn check_preflight_gives_each_photo_its_verdict_by_line_and_sends_nothing() {
    let world = World::new(SandboxConfig::for_tests());
    let roster = roster(&world);
    let out = check(&world, &roster.manifest, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &json["preflight"];
    assert_eq!(report["checked"], 14, "{report:#}");
    assert_eq!(report["refused"], REFUSED.len(), "{report:#}");
    assert_eq!(report["warned"], WARNED.len(), "{report:#}");
    let images = report["images"].as_array().unwrap();
    let findings = |line: u64| -> Vec<(String, String)> {
        let image = images.iter().find(|i| i["line"] == line).unwrap();
        image["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["severity"].as_str().unwrap().to_string(),
                    f["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    for (line, verdict) in REFUSED {
        let found = findings(line);
        assert_eq!(found.len(), 1, "line {line}: {found:?}");
        assert_eq!(found[0].0, "error", "line {line}: {found:?}");
        assert!(found[0].1.starts_with(verdict), "line {line}: {found:?}");
    }
    for (line, verdict) in WARNED {
        let found = findings(line);
        assert_eq!(found.len(), 1, "line {line}: {found:?}");
        assert_eq!(found[0].0, "warning", "line {line}: {found:?}");
        assert!(found[0].1.starts_with(verdict), "line {line}: {found:?}");
    }
    for line in [10, 14, 15] {
        assert_eq!(findings(line), vec![], "line {line}");
    }
    // What was read is told as read: dimensions and the hash of a photo that passed.
    let fine = images.iter().find(|i| i["line"] == 15).unwrap();
    assert_eq!(
        (fine["format"].as_str(), fine["width"].as_u64()),
        (Some("png"), Some(300))
    );
    assert_eq!(fine["sha256"].as_str().map(str::len), Some(64));

    let state = world.sandbox.snapshot();
    assert_eq!(state.stats.requests, 0, "nothing sent to the face service");
    assert_eq!(state.oss.requests.get, 11, "one signed GET per oss:// row");
    assert_eq!(
        state.oss.requests.refused, 0,
        "every signed GET was let through"
    );
    assert_eq!(
        roster.web.served.load(Ordering::SeqCst),
        3,
        "one GET per http row"
    );

    // As text: the verdicts by line, and the same exit.
    let out = check(&world, &roster.manifest, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("preflight: 14 images read"), "{text}");
    assert!(
        text.contains(
            "  refused: the same photo under two persons ×2, format not accepted ×1, not an \
             image ×1, not reachable ×1, over the size limit ×1, too large in pixels ×1, too \
             small ×1\n  warnings: rotated ×1, suffix names another format ×1, the same photo \
             twice for a person ×1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(": 8 would be refused, 3 with warnings"),
        "{text}"
    );
    assert!(
        text.contains("line 2: lib / p1 http://127.0.0.1:")
            && text.contains(
                "/missing.jpg: error: not reachable: HTTP 404, not an image: text/html, 1.2 kB"
            ),
        "{text}"
    );
    assert!(
        text.contains(
            "line 3: lib / p1 oss://media-faces/empty.jpg: error: not an image: empty (0 bytes)"
        ),
        "{text}"
    );
}

#[test]
fn check_preflight_passes_a_roster_of_good_photos_and_its_limits_are_flags() {
    let world = World::new(SandboxConfig::for_tests());
    world
        .sandbox
        .admin_put_object(BUCKET, "a.gif", &gif(300, 300, "a"))
        .unwrap();
    world
        .sandbox
        .admin_put_object(BUCKET, "b.png", &png(100, 100, "b"))
        .unwrap();
    let manifest = world.manifest(
        "m.csv",
        "category_id,person_id,image_url\n\
         lib,p,oss://media-faces/a.gif\n\
         lib,q,oss://media-faces/b.png\n",
    );
    let out = check(&world, &manifest, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = check(
        &world,
        &manifest,
        &["--accept-formats", "jpeg,png,gif", "--min-side", "50"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("0 would be refused, 1 with warnings"),
        "{text}"
    );
    assert!(
        text.contains("line 3: lib / q oss://media-faces/b.png: warning: small: 100×100 px"),
        "{text}"
    );
    let out = check(
        &world,
        &manifest,
        &["--min-side", "500", "--max-side", "400"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn run_preflight_sends_no_refused_photo_and_spends_creates_on_the_valid_ones_exactly() {
    let world = World::new(SandboxConfig::for_tests());
    let roster = roster(&world);
    let base = world.sandbox.base_url();
    let rejects = world.path("rejects.csv");
    let summary = world.path("summary.json");
    let out = world.run(
        &roster.manifest,
        &[
            "--preflight",
            "--oss-endpoint",
            &base,
            "--rejects",
            rejects.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("8 would be refused, 3 with warnings"),
        "{}",
        stderr(&out)
    );
    // The reasons in words, grouped, in the summary and its JSON.
    assert!(
        stderr(&out).contains(
            "refused by pre-flight, not sent: the same photo under two persons ×2, format not \
             accepted ×1, not an image ×1, not reachable ×1, over the size limit ×1, too large \
             in pixels ×1, too small ×1"
        ),
        "{}",
        stderr(&out)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["preflight_refused"]["not an image"], 1, "{json}");
    assert_eq!(json["invalid"], REFUSED.len(), "{json}");
    assert_eq!(json["duplicates"], 1, "{json}");
    let state = world.sandbox.snapshot();
    let creates = state.stats.by_action.get("RegisterCustomFace").copied();
    assert_eq!(
        creates,
        Some(SENT.len() as u64),
        "{:?}",
        state.stats.by_action
    );
    let faces = faces_of(&state);
    assert_eq!(faces.len(), SENT.len(), "{faces:?}");
    // The service side downloaded only the oss:// photos that were sent, each once.
    let fetched: Vec<&str> = state.oss.fetches.iter().map(|f| f.key.as_str()).collect();
    let mut fetched = fetched.clone();
    fetched.sort();
    assert_eq!(
        fetched,
        ["fine.png", "really-a-jpeg.png", "rotated.jpg", "same.jpg"],
        "{:?}",
        state.oss.fetches
    );

    // The ledger: each refused line `invalid` with its reason, each sent line registered.
    let ledger = world.path("m.ledger.jsonl");
    let lines = ledger_lines(&ledger);
    let last = |line: u64| {
        lines
            .iter()
            .rev()
            .find(|l| l["kind"] == "image" && l["line"] == line)
            .cloned()
    };
    for (line, verdict) in REFUSED {
        let record = last(line).unwrap_or_else(|| panic!("line {line} not recorded"));
        assert_eq!(record["status"], "invalid", "line {line}: {record}");
        let reason = record["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("image_url: pre-flight: {verdict}")),
            "line {line}: {reason}"
        );
    }
    for line in SENT {
        let record = last(line).unwrap_or_else(|| panic!("line {line} not recorded"));
        assert_eq!(record["status"], "registered", "line {line}: {record}");
    }
    assert!(last(11).is_none(), "line 11 is line 10's photo: sent once");
    let rejects = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(rejects.lines().count(), 1 + REFUSED.len(), "{rejects}");
    assert!(
        rejects.contains("pre-flight: too small: 40×40 px"),
        "{rejects}"
    );

    // A re-run: the refused photos are checked again (one may have been fixed) and the one
    // that was fixed is sent. Line 11 stays line 10's photo, which the ledger now holds with its
    // hash; and a new row filing line 8's photo (registered) under another person is refused.
    world
        .sandbox
        .admin_put_object(BUCKET, "tiny.png", &png(400, 400, "tiny-fixed"))
        .unwrap();
    world
        .sandbox
        .admin_put_object(BUCKET, "p9.jpg", &jpeg(640, 480, Some(6), "rotated"))
        .unwrap();
    let mut body = std::fs::read_to_string(&roster.manifest).unwrap();
    body.push_str("lib,p9,oss://media-faces/p9.jpg\n");
    std::fs::write(&roster.manifest, body).unwrap();
    let out = world.run(&roster.manifest, &["--preflight", "--oss-endpoint", &base]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    let creates = state.stats.by_action.get("RegisterCustomFace").copied();
    assert_eq!(
        creates,
        Some(SENT.len() as u64 + 1),
        "{:?}",
        state.stats.by_action
    );
    let lines = ledger_lines(&ledger);
    let last = |line: u64| {
        lines
            .iter()
            .rev()
            .find(|l| l["kind"] == "image" && l["line"] == line)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(last(6)["status"], "registered", "{}", last(6));
    assert!(
        last(6)["sha256"].as_str().is_some_and(|h| h.len() == 64),
        "{}",
        last(6)
    );
    assert_eq!(
        last(11),
        serde_json::Value::Null,
        "line 11 is still line 10's photo"
    );
    assert_eq!(last(16)["status"], "invalid", "{}", last(16));
    assert!(
        last(16)["reason"]
            .as_str()
            .unwrap()
            .contains("the same photo as line 8 (lib / p4, registered) under another person"),
        "{}",
        last(16)
    );
}

#[test]
fn a_rerun_reads_no_photo_that_was_registered() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let mut body = String::from("category_id,person_id,image_url\n");
    for p in 0..4 {
        for i in 0..2 {
            let key = format!("good/p{p}/{i}.jpg");
            let photo = jpeg(640, 480, None, &key);
            world
                .sandbox
                .admin_put_object(BUCKET, &key, &photo)
                .unwrap();
            body.push_str(&format!("lib,p{p},oss://{BUCKET}/{key}\n"));
        }
    }
    let manifest = world.manifest("m.csv", &body);
    let out = world.run(&manifest, &["--preflight", "--oss-endpoint", &base]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    assert_eq!(state.oss.requests.get, 8, "one pre-flight GET per photo");
    assert_eq!(state.stats.by_action["RegisterCustomFace"], 8);
    let out = world.run(&manifest, &["--preflight", "--oss-endpoint", &base]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let again = world.sandbox.snapshot();
    assert_eq!(again.oss.requests.get, 8, "nothing read again");
    assert_eq!(again.stats.by_action["RegisterCustomFace"], 8);
}

#[test]
fn run_preflight_on_ice_sends_no_sample_it_refuses() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let put = |key: &str, bytes: &[u8]| world.sandbox.admin_put_object(BUCKET, key, bytes).unwrap();
    put("good.jpg", &jpeg(640, 480, None, "good"));
    put("tiny.png", &png(40, 40, "tiny"));
    put("page.jpg", b"<html><body>moved</body></html>");
    let manifest = world.manifest(
        "m.csv",
        "category_id,person_id,image_url\n\
         lib,a,oss://media-faces/good.jpg\n\
         lib,a,oss://media-faces/tiny.png\n\
         lib,b,oss://media-faces/page.jpg\n",
    );
    let metrics = world.path("metrics.prom");
    let out = world.run(
        &manifest,
        &[
            "--target",
            "ice",
            "--preflight",
            "--oss-endpoint",
            &base,
            "--metrics",
            metrics.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    assert_eq!(
        state.stats.by_action.get("CreateRecognitionSample"),
        Some(&1)
    );
    let samples: usize = state
        .ice
        .libs
        .iter()
        .flat_map(|l| &l.entities)
        .map(|e| e.samples.len())
        .sum();
    assert_eq!(samples, 1);
    let metrics = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        metrics.contains("face_enroll_last_run_preflight_refused 2"),
        "{metrics}"
    );
    let ledger = ledger_lines(&world.path("m.ice.ledger.jsonl"));
    let invalid: Vec<&str> = ledger
        .iter()
        .filter(|l| l["status"] == "invalid")
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(invalid.len(), 2, "{invalid:?}");
    assert!(invalid[0].contains("too small: 40×40 px"), "{invalid:?}");
    assert!(
        invalid[1].contains("not an image: text/html"),
        "{invalid:?}"
    );
}

#[test]
fn run_reads_oss_objects_first_by_default_public_links_only_with_preflight_and_nothing_with_no_preflight()
 {
    // By default: the oss:// objects are read before anything is sent, the public links not.
    let world = World::new(SandboxConfig::for_tests());
    let photos = roster(&world);
    let base = world.sandbox.base_url();
    let out = world.run(&photos.manifest, &["--oss-endpoint", &base]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    assert!(
        state.oss.requests.get > 0,
        "the oss:// objects were read first"
    );
    assert_eq!(photos.web.served.load(Ordering::SeqCst), 0);
    let creates_by_default = state.stats.by_action["RegisterCustomFace"];

    // --no-preflight: nothing read before sending; the service refuses what it cannot take.
    let world = World::new(SandboxConfig::for_tests());
    let photos = roster(&world);
    let base = world.sandbox.base_url();
    let out = world.run(
        &photos.manifest,
        &["--oss-endpoint", &base, "--no-preflight"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    assert_eq!(state.oss.requests.get, 0, "no GET before sending");
    assert_eq!(photos.web.served.load(Ordering::SeqCst), 0);
    let creates = state.stats.by_action["RegisterCustomFace"];
    assert!(creates > SENT.len() as u64, "{:?}", state.stats.by_action);
    assert!(
        creates > creates_by_default,
        "the default pre-flight kept refused objects back: {creates} vs {creates_by_default}"
    );
}

/// Two local photos, alice's good and bob's too small (20×20), and a manifest naming them.
fn alice_and_bob(world: &World) -> std::path::PathBuf {
    let dir = world.dir.path().join("photos");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("alice.jpg"), jpeg(400, 400, None, "alice")).unwrap();
    std::fs::write(dir.join("bob.png"), png(20, 20, "bob")).unwrap();
    world.manifest(
        "m.csv",
        "category_id,person_id,image_url\nstaff,alice,photos/alice.jpg\nstaff,bob,photos/bob.png\n",
    )
}

#[test]
fn run_preflight_reads_local_photos_from_their_files_before_their_upload() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let manifest = alice_and_bob(&world);
    let summary = world.path("summary.json");
    let out = world.run(
        &manifest,
        &[
            "--upload-to",
            "oss://media-faces/staff/",
            "--oss-endpoint",
            &base,
            "--summary",
            summary.to_str().unwrap(),
        ],
    );
    // bob's photo is too small: invalid (exit 1), never sent; alice's is registered.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 1, "{:?}", world.faces());
    let ledger = ledger_lines(&world.path("m.ledger.jsonl"));
    let invalid: Vec<_> = ledger.iter().filter(|l| l["status"] == "invalid").collect();
    assert_eq!(invalid.len(), 1, "{ledger:#?}");
    assert!(
        invalid[0]["reason"]
            .as_str()
            .unwrap()
            .contains("pre-flight"),
        "{:?}",
        invalid[0]
    );
    // Pre-flight (on by default for local photos) read the files, not the objects (which were
    // not all uploaded yet); bob's photo, refused, was never put in the bucket.
    let state = world.sandbox.snapshot();
    assert_eq!(state.oss.requests.get, 0);
    assert_eq!(state.oss.objects.len(), 1, "{:?}", state.oss.objects);
    assert_eq!(state.oss.requests.put, 1);
    // The summary says what it read, as doc/schema/summary.json describes.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/schema/summary.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&summary)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let p = &summary["preflight"];
    assert_eq!(
        (p["checked"].as_u64(), p["refused"].as_u64()),
        (Some(2), Some(1))
    );
    let u = &summary["uploads"];
    assert_eq!(
        (&u["uploaded"], &u["refused"]),
        (&1.into(), &1.into()),
        "{u}"
    );
    assert!(p["bytes_read"].as_u64().unwrap() > 0);
}

/// The `checked` records of a ledger, by source.
fn checked_records(ledger: &std::path::Path) -> Vec<serde_json::Value> {
    ledger_lines(ledger)
        .into_iter()
        .filter(|l| l["kind"] == "checked")
        .collect()
}

#[test]
fn a_rerun_reads_again_only_the_photos_that_changed_and_keeps_the_verdicts_of_the_rest() {
    let world = World::new(SandboxConfig::for_tests());
    let roster = roster(&world);
    let base = world.sandbox.base_url();
    let summary = world.path("summary.json");
    let args = [
        "--preflight",
        "--oss-endpoint",
        &base,
        "--summary",
        summary.to_str().unwrap(),
    ];
    let first = world.run(&roster.manifest, &args);
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    let ledger = world.path("m.ledger.jsonl");
    // Every oss:// photo that was read got a verdict (with OSS's ETag); the web server sends
    // no validator, so its photos are read every time and get none.
    let checked = checked_records(&ledger);
    let sources: std::collections::BTreeSet<&str> = checked
        .iter()
        .map(|c| c["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 11, "{sources:?}");
    assert!(sources.iter().all(|s| s.starts_with("oss://media-faces/")));
    // Each is what doc/schema/ledger-record.json describes.
    for record in &checked {
        let errors = schema_errors("ledger-record.json", record);
        assert!(errors.is_empty(), "{record}: {errors:?}");
    }
    let tiny = checked
        .iter()
        .find(|c| c["source"] == "oss://media-faces/tiny.png")
        .unwrap();
    assert_eq!(tiny["verdict"], "refused", "{tiny}");
    assert_eq!(tiny["width"], 40, "{tiny}");
    assert!(tiny["etag"].as_str().is_some(), "{tiny}");
    let reasons = |ledger: &[serde_json::Value]| -> Vec<(u64, String)> {
        let mut out: Vec<(u64, String)> = REFUSED
            .iter()
            .map(|(line, _)| {
                let record = ledger
                    .iter()
                    .rev()
                    .find(|l| l["kind"] == "image" && l["line"] == *line)
                    .unwrap();
                (*line, record["reason"].as_str().unwrap().to_string())
            })
            .collect();
        out.sort();
        out
    };
    let first_reasons = reasons(&ledger_lines(&ledger));
    // `check` without pre-flight says these rows were refused before, rather than counting
    // them as simply to send.
    let plan = world
        .command(&["check", roster.manifest.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(
        text.contains("read again first and refused again unless fixed: 8 ("),
        "{text}"
    );
    let before = world.sandbox.snapshot().oss.requests;

    // Nothing changed: no photo is read again. Each oss:// one gets a HEAD, whose ETag is the
    // one read; each refused row is refused again with the same words.
    let second = world.run(&roster.manifest, &args);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let after = world.sandbox.snapshot().oss.requests;
    assert_eq!(after.get, before.get, "no photo read again");
    assert!(
        after.head > before.head,
        "each verdict is checked with a HEAD"
    );
    let lines = ledger_lines(&world.path("m.ledger.jsonl"));
    assert_eq!(reasons(&lines), first_reasons);
    assert_eq!(
        checked_records(&ledger).len(),
        checked.len(),
        "nothing new to record"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    // The rows not registered: the six oss:// refusals (lines 3–7, 12), line 11 (line 10's
    // photo) and the two web photos (lines 2 and 13, read again).
    assert_eq!(json["preflight"]["checked"], 9, "{json}");
    assert_eq!(json["preflight"]["unchanged"], 7, "{json}");
    assert!(
        stderr(&second).contains("7 of them not read again: unchanged since an earlier run"),
        "{}",
        stderr(&second)
    );

    // One photo is replaced: it alone is read again, and sent now that it passes.
    world
        .sandbox
        .admin_put_object(BUCKET, "tiny.png", &png(400, 400, "tiny-fixed"))
        .unwrap();
    let third = world.run(&roster.manifest, &args);
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
    let last = world.sandbox.snapshot().oss.requests;
    assert_eq!(last.get, after.get + 1, "only the replaced photo is read");
    let fixed = checked_records(&ledger)
        .into_iter()
        .rfind(|c| c["source"] == "oss://media-faces/tiny.png")
        .unwrap();
    assert_eq!(fixed["verdict"], "passed", "{fixed}");
    assert_eq!(fixed["width"], 400, "{fixed}");
    let line6 = ledger_lines(&ledger)
        .into_iter()
        .rfind(|l| l["kind"] == "image" && l["line"] == 6)
        .unwrap();
    assert_eq!(line6["status"], "registered", "{line6}");

    // Other limits are another verdict: the photos are read again under them.
    let fourth = world.run(
        &roster.manifest,
        &["--preflight", "--oss-endpoint", &base, "--max-side", "6000"],
    );
    assert!(
        stderr(&fourth).contains("preflight:"),
        "{}",
        stderr(&fourth)
    );
    let reread = world.sandbox.snapshot().oss.requests;
    assert!(reread.get > last.get, "new limits: read again");
}

#[test]
fn a_rerun_reads_no_local_photo_again_whose_object_is_named_by_its_content() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let manifest = alice_and_bob(&world);
    let summary = world.path("summary.json");
    let args = [
        "--upload-to",
        "oss://media-faces/staff/",
        "--oss-endpoint",
        &base,
        "--summary",
        summary.to_str().unwrap(),
    ];
    let out = world.run(&manifest, &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let ledger = world.path("m.ledger.jsonl");
    let checked = checked_records(&ledger);
    assert_eq!(checked.len(), 2, "{checked:?}");
    let before = world.sandbox.snapshot().oss.requests;
    let out = world.run(&manifest, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = world.sandbox.snapshot().oss.requests;
    // bob's photo, refused, is judged again without a byte read: neither the file (its upload
    // record says it is unchanged) nor the object (its key is its content's hash).
    assert_eq!((after.get, after.head), (before.get, before.head));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["preflight"]["checked"], 1, "{json}");
    assert_eq!(json["preflight"]["unchanged"], 1, "{json}");
    assert_eq!(json["preflight"]["bytes_read"], 0, "{json}");
    let bob = ledger_lines(&ledger)
        .into_iter()
        .rfind(|l| l["kind"] == "image" && l["person_id"] == "bob")
        .unwrap();
    assert!(
        bob["reason"]
            .as_str()
            .unwrap()
            .contains("too small: 20×20 px"),
        "{bob}"
    );
}

#[test]
fn image_sha256_holds_a_row_to_its_photo_and_keeps_it_the_same_image_at_a_new_address() {
    use sha2::Digest as _;
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let anna = jpeg(640, 480, None, "anna");
    let ben = jpeg(640, 480, None, "ben");
    let hex = |bytes: &[u8]| hex::encode(sha2::Sha256::digest(bytes));
    world
        .sandbox
        .admin_put_object(BUCKET, "old/anna.jpg", &anna)
        .unwrap();
    // ben's row names his photo's hash, but the object holds another photo.
    world
        .sandbox
        .admin_put_object(BUCKET, "ben.jpg", &jpeg(640, 480, None, "not-ben"))
        .unwrap();
    let manifest = world.manifest(
        "m.csv",
        &format!(
            "category_id,person_id,image_url,image_sha256\n\
             lib,anna,oss://{BUCKET}/old/anna.jpg,{}\n\
             lib,ben,oss://{BUCKET}/ben.jpg,{}\n",
            hex(&anna).to_uppercase(),
            hex(&ben)
        ),
    );
    let args = ["--oss-endpoint", base.as_str()];
    let out = world.run(&manifest, &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 1, "{:?}", world.faces());
    let ledger = world.path("m.ledger.jsonl");
    let last = |person: &str| {
        ledger_lines(&ledger)
            .into_iter()
            .rfind(|l| l["kind"] == "image" && l["person_id"] == person)
            .unwrap()
    };
    let anna_record = last("anna");
    assert_eq!(anna_record["status"], "registered", "{anna_record}");
    assert_eq!(
        anna_record["image_key"],
        format!("sha256:{}", hex(&anna)),
        "{anna_record}"
    );
    let ben_record = last("ben");
    assert_eq!(ben_record["status"], "invalid", "{ben_record}");
    assert!(
        ben_record["reason"]
            .as_str()
            .unwrap()
            .contains("not the photo image_sha256 names"),
        "{ben_record}"
    );
    let creates = world.sandbox.snapshot().stats.by_action["RegisterCustomFace"];
    assert_eq!(creates, 1);

    // anna's photo moves to another key: the same bytes, the same image, nothing sent.
    world
        .sandbox
        .admin_put_object(BUCKET, "new/anna.jpg", &anna)
        .unwrap();
    let moved = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("old/anna.jpg", "new/anna.jpg");
    std::fs::write(&manifest, moved).unwrap();
    let out = world.run(&manifest, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    assert_eq!(
        state.stats.by_action["RegisterCustomFace"],
        creates,
        "sent again: {}",
        stderr(&out)
    );
    assert_eq!(world.faces().len(), 1);
}

/// Good oss:// photos for two persons and their manifest.
fn two_good_objects(world: &World) -> std::path::PathBuf {
    for p in ["ann", "bo"] {
        let key = format!("good/{p}.jpg");
        let photo = jpeg(640, 480, None, &key);
        world
            .sandbox
            .admin_put_object(BUCKET, &key, &photo)
            .unwrap();
    }
    world.manifest(
        "m.csv",
        &format!(
            "category_id,person_id,image_url\nlib,ann,oss://{BUCKET}/good/ann.jpg\n\
             lib,bo,oss://{BUCKET}/good/bo.jpg\n"
        ),
    )
}

#[test]
fn quiet_runs_print_no_preflight_report() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let manifest = two_good_objects(&world);
    let out = world.run(&manifest, &["--oss-endpoint", &base, "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        world.sandbox.snapshot().oss.requests.get,
        2,
        "pre-flight read both"
    );
    assert!(!stderr(&out).contains("preflight:"), "{}", stderr(&out));
}

#[test]
fn credentials_oss_refuses_or_an_oss_that_never_answers_stop_preflight_not_the_rows() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    let manifest = two_good_objects(&world);
    let ledger = world.path("m.ledger.jsonl");
    // A wrong secret: OSS refuses the signature of every read. That is the run's trouble
    // (exit 3), not two photos that are not there: no row is recorded, nothing is sent.
    let out = world
        .command(&[
            "run",
            manifest.to_str().unwrap(),
            "--endpoint",
            &base,
            "--oss-endpoint",
            &base,
            "--progress",
            "off",
        ])
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "wrong-secret-value")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("OSS refused the run's credentials (SignatureDoesNotMatch)"),
        "{err}"
    );
    assert!(!err.contains("would be refused"), "{err}");
    assert!(
        world.sandbox.snapshot().oss.requests.get > 0,
        "pre-flight read"
    );
    assert!(!ledger.exists() || ledger_lines(&ledger).iter().all(|l| l["kind"] != "image"));

    // OSS unreachable: an outage (exit 6) naming where, not rows invalid as "not reachable".
    let dead = format!("127.0.0.1:{}", closed_port());
    let oss = format!("http://{dead}");
    let out = world.run(&manifest, &["--oss-endpoint", &oss]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("connection refused connecting to {dead}")),
        "{err}"
    );
    assert!(!ledger.exists() || ledger_lines(&ledger).iter().all(|l| l["kind"] != "image"));
    let check = world
        .command(&[
            "check",
            manifest.to_str().unwrap(),
            "--preflight",
            "--endpoint",
            &base,
            "--oss-endpoint",
            &oss,
        ])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(6), "{}", stderr(&check));
    // OSS back: both photos are read and registered.
    let out = world.run(&manifest, &["--oss-endpoint", &base]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.faces().len(), 2);
}
