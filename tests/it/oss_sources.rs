//! `oss://BUCKET/KEY` images: sent as a V4 link signed for each attempt, never stored or shown
//! signed, and one identity for every form of an object (a lost ledger adopts, a manifest moved
//! between `oss://` and signed links sends nothing).

use std::path::Path;

use crate::common::*;
use face_enroll::sandbox::{DEFAULT_ACCESS_KEY_SECRET, SandboxConfig};
use face_enroll::sign::oss::{Received, verify_presigned};

const PERSONS: usize = 6;
const PER_PERSON: usize = 2;

/// A JPEG of 400×400 (headers only) tagged with its key, so that no two objects hold the same
/// photo: what the sandbox's service side checks when it downloads and what the run's default
/// pre-flight of `oss://` objects reads.
fn jpeg(key: &str) -> Vec<u8> {
    face_enroll::sandbox::photos::jpeg(400, 400, None, key)
}

/// A manifest of `oss://` rows whose objects are in the sandbox's OSS (which the service side
/// downloads from when it registers them).
fn oss_manifest(world: &World) -> std::path::PathBuf {
    let mut body = String::from("category_id,person_id,person_name,image_url\n");
    for p in 0..PERSONS {
        for i in 0..PER_PERSON {
            let key = format!("faces/p{p}/照片 {i:02}.jpg");
            world
                .sandbox
                .admin_put_object("media-faces", &key, &jpeg(&key))
                .unwrap();
            body.push_str(&format!("lib,p{p},Person {p},oss://media-faces/{key}\n"));
        }
    }
    world.manifest("m.csv", &body)
}

/// Every file the run wrote beside the manifest, whole.
fn written_files(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            (p.display().to_string(), text)
        })
        .collect()
}

fn assert_no_signed_link(what: &str, text: &str) {
    for needle in [
        "x-oss-signature",
        "x-oss-credential",
        "Signature=",
        "OSSAccessKeyId",
    ] {
        assert!(!text.contains(needle), "{what} holds {needle}:\n{text}");
    }
}

/// The link as the sandbox received it: a V4 presigned GET to the object on the sandbox's
/// own address that verifies with its secret now, valid for `ttl` seconds.
fn assert_signed_link(url: &str, ttl: u64) {
    let parsed = reqwest::Url::parse(url).unwrap();
    let object = face_enroll::image::OssObject::from_url(url).unwrap();
    let (bucket, key) = (object.bucket(), object.key());
    let query: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    let expires = query.iter().find(|(n, _)| n == "x-oss-expires").unwrap();
    assert_eq!(expires.1, ttl.to_string(), "{url}");
    let received = Received {
        method: "GET",
        bucket,
        key,
        query: &query,
        headers: &[],
    };
    verify_presigned(
        &received,
        "cn-shanghai",
        time::OffsetDateTime::now_utc(),
        |_, _| Some(DEFAULT_ACCESS_KEY_SECRET),
    )
    .unwrap_or_else(|e| panic!("{url}: {e}"));
}

#[test]
fn oss_rows_go_out_as_fresh_signed_links_and_only_their_address_is_ever_written() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = oss_manifest(&world);
    let base = world.sandbox.base_url();
    let summary = world.path("summary.json");
    let rejects = world.path("rejects.csv");
    let metrics = world.path("metrics.prom");
    let out = world
        .command(&[
            "run",
            manifest.to_str().unwrap(),
            "--endpoint",
            &base,
            "--progress",
            "log",
            "--oss-endpoint",
            &base,
            "--link-ttl",
            "90s",
            "--summary",
            summary.to_str().unwrap(),
            "--rejects",
            rejects.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
        ])
        .env("FACE_ENROLL_LOG", "debug")
        .output()
        .unwrap();
    assert!(stderr(&out).contains("DEBUG"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let faces = world.faces();
    assert_eq!(faces.len(), PERSONS * PER_PERSON);
    for (_, _, url, _) in &faces {
        assert!(url.starts_with(base.trim_end_matches('/')), "{url}");
        assert_signed_link(url, 90);
    }
    // The service side downloaded each object through its link, and OSS let every one through.
    let fetches = world.sandbox.snapshot().oss.fetches;
    assert_eq!(fetches.len(), PERSONS * PER_PERSON, "{fetches:?}");
    assert!(fetches.iter().all(|f| f.refused.is_none()), "{fetches:?}");
    assert_no_signed_link("stdout", &String::from_utf8_lossy(&out.stdout));
    assert_no_signed_link("stderr", &stderr(&out));
    let files = written_files(world.dir.path());
    assert!(
        files.len() >= 5,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, text) in &files {
        if name.ends_with("m.csv") {
            continue;
        }
        assert_no_signed_link(name, text);
    }
    let ledger = world.path("m.ledger.jsonl");
    let recorded: Vec<String> = ledger_lines(&ledger)
        .iter()
        .filter(|l| l["kind"] == "image" && l["status"] == "registered")
        .map(|l| l["image_url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(recorded.len(), PERSONS * PER_PERSON);
    assert!(
        recorded
            .iter()
            .all(|u| u.starts_with("oss://media-faces/faces/"))
    );

    // Links are signed afresh; the identity is the object: a re-run sends nothing.
    let before = world.sandbox.snapshot().stats.requests;
    let out = world.run(&manifest, &["--oss-endpoint", &base, "--no-probe"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.sandbox.snapshot().stats.requests, before);
}

#[test]
fn a_lost_ledger_adopts_every_object_and_signed_https_links_are_the_same_images() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = oss_manifest(&world);
    let base = world.sandbox.base_url();
    let out = world.run(&manifest, &["--oss-endpoint", &base]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let created = |world: &World| {
        world
            .sandbox
            .snapshot()
            .stats
            .by_action
            .get("RegisterCustomFace")
            .copied()
            .unwrap_or(0)
    };
    let first = created(&world);
    assert_eq!(first, (PERSONS * PER_PERSON) as u64);

    // A new ledger: the server lists the links it was sent, which name the same objects.
    let fresh = world.path("fresh.jsonl");
    let out = world.run(
        &manifest,
        &["--oss-endpoint", &base, "--ledger", fresh.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(created(&world), first, "a lost ledger created again");
    assert_eq!(world.faces().len(), PERSONS * PER_PERSON);

    // The same photos written as links someone signed by hand on the public endpoint.
    let body = std::fs::read_to_string(&manifest).unwrap().replace(
        "oss://media-faces/",
        "https://media-faces.oss-cn-shanghai.aliyuncs.com/",
    );
    let body: String = body
        .lines()
        .map(|l| {
            if l.starts_with("lib,") {
                format!("{l}?x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-expires=60&x-oss-signature=00\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let signed = world.manifest("m.csv", &body.replace(' ', "%20"));
    let out = world.run(&signed, &["--oss-endpoint", &base]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        created(&world),
        first,
        "signed links of the same objects were sent"
    );
}

#[test]
fn a_bad_oss_address_is_an_invalid_row_and_a_bad_link_ttl_is_a_usage_error() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest(
        "m.csv",
        "category_id,person_id,image_url\nlib,a,oss://Bad_Bucket/a.jpg\nlib,b,oss://media-faces/\nlib,c,OSS://media-faces/c.jpg\n",
    );
    let out = world
        .command(&["check", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("invalid rows: 3"), "{text}");
    assert!(text.contains("the bucket name 'Bad_Bucket'"), "{text}");
    let good = world.manifest(
        "g.csv",
        "category_id,person_id,image_url\nlib,a,oss://media-faces/a.jpg\n",
    );
    for ttl in ["8d", "0s"] {
        let out = world.run(&good, &["--link-ttl", ttl]);
        assert_eq!(out.status.code(), Some(2), "{ttl}: {}", stderr(&out));
        assert!(stderr(&out).contains("--link-ttl"), "{}", stderr(&out));
    }
    assert_eq!(world.sandbox.snapshot().stats.requests, 0);
}

#[test]
fn ice_samples_from_oss_rows_are_signed_links_and_the_ledger_holds_the_address() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = oss_manifest(&world);
    let base = world.sandbox.base_url();
    let out = world.run(&manifest, &["--target", "ice", "--oss-endpoint", &base]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    let urls: Vec<&str> = state
        .ice
        .libs
        .iter()
        .flat_map(|l| &l.entities)
        .flat_map(|e| &e.samples)
        .filter_map(|s| s.image_url.as_deref())
        .collect();
    assert_eq!(urls.len(), PERSONS * PER_PERSON);
    for url in urls {
        assert_signed_link(url, 3600);
    }
    let ledger = world.path("m.ice.ledger.jsonl");
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert_no_signed_link("the ICE ledger", &text);
    assert!(text.contains("oss://media-faces/faces/p0/"), "{text}");
    // A lost ledger adopts every sample: no second one.
    let fresh = world.path("fresh.jsonl");
    let out = world.run(
        &manifest,
        &[
            "--target",
            "ice",
            "--oss-endpoint",
            &base,
            "--ledger",
            fresh.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let samples: usize = world
        .sandbox
        .snapshot()
        .ice
        .libs
        .iter()
        .flat_map(|l| &l.entities)
        .map(|e| e.samples.len())
        .sum();
    assert_eq!(samples, PERSONS * PER_PERSON);
}

#[test]
fn links_signed_with_temporary_credentials_never_outlive_the_token() {
    let lifetime = std::time::Duration::from_secs(300);
    let world = World::new(SandboxConfig {
        sts_lifetime: lifetime,
        ..SandboxConfig::for_tests()
    });
    let manifest = oss_manifest(&world);
    let base = world.sandbox.base_url();
    let config = world.path("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"current": "main", "profiles": [{{"name": "main", "mode": "RamRoleArn",
                "access_key_id": "{}", "access_key_secret": "{DEFAULT_ACCESS_KEY_SECRET}",
                "ram_role_arn": "{}", "ram_session_name": "import"}}]}}"#,
            face_enroll::sandbox::DEFAULT_ACCESS_KEY_ID,
            face_enroll::sandbox::DEFAULT_ROLE_ARN
        ),
    )
    .unwrap();
    let out = world
        .command(&[
            "run",
            manifest.to_str().unwrap(),
            "--endpoint",
            &base,
            "--progress",
            "off",
            "--oss-endpoint",
            &base,
            "--link-ttl",
            "1h",
        ])
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .env("ALIBABA_CLOUD_CONFIG_FILE", &config)
        .env("FACE_ENROLL_STS_ENDPOINT", &base)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let issued = world.sandbox.issued_credentials();
    assert!(!issued.is_empty(), "no temporary credentials were used");
    let faces = world.faces();
    assert_eq!(faces.len(), PERSONS * PER_PERSON);
    for (_, _, url, _) in &faces {
        let parsed = reqwest::Url::parse(url).unwrap();
        let query: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        let get = |name: &str| {
            query
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{url} has no {name}"))
        };
        let expires: u64 = get("x-oss-expires").parse().unwrap();
        // Issued for 300 s, a link ends a minute before: at most 240 s, however long --link-ttl.
        assert!(expires <= 240 && expires > 200, "{expires} s: {url}");
        let token = get("x-oss-security-token");
        let (_, secret, _) = issued
            .iter()
            .find(|(_, _, t)| *t == token)
            .expect("the link carries a token the sandbox issued");
        let object = face_enroll::image::OssObject::from_url(url).unwrap();
        verify_presigned(
            &Received {
                method: "GET",
                bucket: object.bucket(),
                key: object.key(),
                query: &query,
                headers: &[],
            },
            "cn-shanghai",
            time::OffsetDateTime::now_utc(),
            |_, _| Some(secret.clone()),
        )
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    let ledger = std::fs::read_to_string(world.path("m.ledger.jsonl")).unwrap();
    assert_no_signed_link("the ledger", &ledger);
    for (_, _, token) in &issued {
        assert!(!ledger.contains(token.as_str()));
    }
}

#[test]
fn links_the_user_signed_are_sent_as_they_are_and_recorded_without_their_signature() {
    let world = World::new(SandboxConfig::for_tests());
    let mut body = String::from("category_id,person_id,image_url\n");
    // Eleven photos for one person: the eleventh is skipped and listed in the rejects file.
    for i in 0..11 {
        body.push_str(&format!(
            "lib,alice,https://media-faces.oss-cn-shanghai.aliyuncs.com/alice/{i:02}.jpg?\
             x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-expires=900&\
             x-oss-credential=LTAIcanary%2F20261205%2Fcn-shanghai%2Foss%2Faliyun_v4_request&\
             x-oss-signature=5ec7e7canary{i}\n"
        ));
    }
    body.push_str(
        "lib,bob,https://img.example.com/bob.jpg?X-Amz-Credential=AKIAcanary&X-Amz-Signature=5ec7e7canary\n",
    );
    let manifest = world.manifest("m.csv", &body);
    let rejects = world.path("rejects.csv");
    let out = world.run(&manifest, &["--rejects", rejects.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Sent as written: the service fetches the link the user signed.
    let sent: Vec<String> = world.faces().into_iter().map(|f| f.2).collect();
    assert_eq!(sent.len(), 11);
    assert!(sent.iter().all(|u| u.contains("canary")), "{sent:?}");
    for (name, text) in written_files(world.dir.path()) {
        if name.ends_with("m.csv") {
            continue;
        }
        assert!(
            !text.contains("canary"),
            "{name} holds a signature:\n{text}"
        );
    }
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    assert!(
        rejected.contains("oss://media-faces/alice/10.jpg"),
        "{rejected}"
    );
    // A second run: the links (same objects) are already registered.
    let before = world.sandbox.snapshot().stats.requests;
    let out = world.run(&manifest, &["--no-probe"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.sandbox.snapshot().stats.requests, before);
}

/// A sandbox that holds the next `late` RegisterCustomFace calls `hold_ms` before applying
/// them, so a link signed for 1 s has expired when the service downloads the image.
fn holding_world(hold_ms: u64, late: usize) -> World {
    let world = World::new(SandboxConfig {
        stall_ms: hold_ms,
        ..SandboxConfig::for_tests()
    });
    world.sandbox.script(
        "RegisterCustomFace",
        vec![face_enroll::sandbox::Fault::Late; late],
    );
    world
}

fn one_person_manifest(world: &World, photos: usize) -> std::path::PathBuf {
    let mut body = String::from("category_id,person_id,person_name,image_url\n");
    for i in 0..photos {
        let key = format!("faces/solo/{i}.jpg");
        world
            .sandbox
            .admin_put_object("media-faces", &key, &jpeg(&key))
            .unwrap();
        body.push_str(&format!("lib,solo,Solo,oss://media-faces/{key}\n"));
    }
    world.manifest("m.csv", &body)
}

fn refused_fetches(world: &World) -> Vec<String> {
    let fetches = world.sandbox.snapshot().oss.fetches;
    fetches.into_iter().filter_map(|f| f.refused).collect()
}

#[test]
fn a_download_refused_through_an_expired_link_is_sent_once_more_with_a_new_link() {
    // The first create is held 4 s: its 2 s link has expired when the service fetches it. (The
    // link signed anew must outlive its own create, which a loaded machine may take a second
    // to send: 2 s, not 1 s.)
    let world = holding_world(4000, 1);
    let manifest = one_person_manifest(&world, 2);
    let base = world.sandbox.base_url();
    let summary = world.path("summary.json");
    let out = world.run(
        &manifest,
        &[
            "--oss-endpoint",
            &base,
            "--link-ttl",
            "2s",
            "--summary",
            summary.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The fault happened: one download was refused, for an expired link.
    assert_eq!(refused_fetches(&world), ["AccessDenied"]);
    assert_eq!(world.faces().len(), 2, "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(summary["links_renewed"], 1, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert!(
        stderr(&out).contains("links signed anew after a refused download 1"),
        "{}",
        stderr(&out)
    );
    let ledger = ledger_lines(&world.path("m.ledger.jsonl"));
    assert!(ledger.iter().all(|l| l["status"] != "failed"), "{ledger:?}");
}

#[test]
fn a_download_refused_again_through_a_new_link_is_recorded_failed_with_the_services_words() {
    // Every create is held longer than the links live: the new link expires as well.
    let world = holding_world(1500, 8);
    let manifest = one_person_manifest(&world, 1);
    let base = world.sandbox.base_url();
    let out = world.run(&manifest, &["--oss-endpoint", &base, "--link-ttl", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(refused_fetches(&world), ["AccessDenied", "AccessDenied"]);
    assert!(world.faces().is_empty());
    let ledger = ledger_lines(&world.path("m.ledger.jsonl"));
    let failed: Vec<_> = ledger.iter().filter(|l| l["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{ledger:?}");
    let message = failed[0]["message"].as_str().unwrap();
    assert!(message.contains("the link has expired"), "{message}");
    assert_no_signed_link("the ledger", &serde_json::to_string(&ledger).unwrap());
    let creates = world.sandbox.snapshot().stats.by_action["RegisterCustomFace"];
    assert_eq!(creates, 2, "one create, and one with a new link");
}

/// A link the user signed for `key` in the sandbox's OSS at `at`, valid `ttl` seconds.
fn user_link(world: &World, key: &str, at: time::OffsetDateTime, ttl: u64) -> String {
    use face_enroll::sign::oss::{Keys, Presign, presign_get};
    let object = face_enroll::image::OssObject::new("media-faces", key).unwrap();
    let endpoint = format!("http://{}", world.sandbox.addr()).parse().unwrap();
    presign_get(&Presign {
        object: &object,
        region: "cn-shanghai",
        endpoint: &endpoint,
        keys: Keys {
            access_key_id: face_enroll::sandbox::DEFAULT_ACCESS_KEY_ID,
            secret: DEFAULT_ACCESS_KEY_SECRET,
            security_token: None,
        },
        signed_at: at,
        expires_s: ttl,
        sign_host: false,
    })
    .unwrap()
}

#[test]
fn a_row_refused_through_a_link_the_user_signed_goes_again_once_the_link_is_signed_anew() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    for key in ["a.jpg", "b.jpg"] {
        world
            .sandbox
            .admin_put_object("media-faces", key, &jpeg(key))
            .unwrap();
    }
    let now = time::OffsetDateTime::now_utc();
    let hour_ago = now - time::Duration::hours(1);
    let manifest_with = |a: &str| {
        let b = user_link(&world, "b.jpg", now, 3600);
        world.manifest(
            "m.csv",
            &format!("category_id,person_id,image_url\nlib,p,{a}\nlib,p,{b}\n"),
        )
    };
    // a.jpg's link expired before the run: the service refuses it; a link the user signed is
    // not the tool's to sign again.
    let manifest = manifest_with(&user_link(&world, "a.jpg", hour_ago, 60));
    let out = world.run(&manifest, &["--oss-endpoint", &base]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(refused_fetches(&world), ["AccessDenied"]);
    assert_eq!(world.faces().len(), 1);
    assert!(
        stderr(&out).contains("could not download 1 image through links you signed"),
        "{}",
        stderr(&out)
    );
    let ledger_text = std::fs::read_to_string(world.path("m.ledger.jsonl")).unwrap();
    assert_no_signed_link("the ledger", &ledger_text);
    assert!(
        ledger_text.contains("\"link_fingerprint\""),
        "{ledger_text}"
    );

    // The same link again: a known rejection, nothing sent (the probe read skipped).
    let before = world.sandbox.snapshot().stats.requests;
    let out = world.run(&manifest, &["--oss-endpoint", &base, "--no-probe"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.sandbox.snapshot().stats.requests, before);

    // Signed anew (same object, new signature): sent again without --retry-failed, and said so.
    let manifest = manifest_with(&user_link(&world, "a.jpg", now, 3600));
    let check = world
        .command(&["check", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains(
            "refused earlier through a link that has since been signed anew, sent again: 1"
        ),
        "{text}"
    );
    let out = world.run(&manifest, &["--oss-endpoint", &base]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused earlier through a link that has since been signed anew 1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(world.faces().len(), 2);
    let creates = world.sandbox.snapshot().stats.by_action["RegisterCustomFace"];
    assert_eq!(creates, 3, "b once, a refused once and sent again once");
}

#[test]
fn check_probe_lists_by_line_the_objects_oss_would_not_give_the_service_and_sends_no_create() {
    let world = World::new(SandboxConfig::for_tests());
    let base = world.sandbox.base_url();
    for key in ["a.jpg", "b.jpg"] {
        world
            .sandbox
            .admin_put_object("media-faces", key, &jpeg(key))
            .unwrap();
    }
    let manifest = world.manifest(
        "m.csv",
        "category_id,person_id,image_url\n\
         lib,p,oss://media-faces/a.jpg\n\
         lib,p,oss://media-faces/gone.jpg\n\
         lib,q,oss://media-faces/b.jpg\n\
         lib,q,https://img.example/q.jpg\n",
    );
    let probe = |extra: &[&str], secret: &str| {
        let mut args = vec![
            "check",
            manifest.to_str().unwrap(),
            "--probe",
            "--endpoint",
            &base,
            "--oss-endpoint",
            &base,
        ];
        args.extend_from_slice(extra);
        world
            .command(&args)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)
            .output()
            .unwrap()
    };
    let out = probe(&[], DEFAULT_ACCESS_KEY_SECRET);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains(
            "probe: 3 oss:// objects asked about: 2 readable, 1 not found, 0 access denied, 0 other"
        ),
        "{text}"
    );
    assert!(
        text.contains("line 3: oss://media-faces/gone.jpg: not found (NoSuchKey)"),
        "{text}"
    );
    let state = world.sandbox.snapshot();
    assert_eq!(state.oss.requests.head, 3, "one HEAD per oss:// row");
    assert_eq!(state.stats.requests, 0, "nothing sent to the face service");

    // Credentials OSS does not accept: every object is refused, by line, as JSON too.
    let out = probe(&["--json"], "not-the-secret");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["probe"]["asked"], 3, "{json}");
    assert_eq!(json["probe"]["access_denied"], 3, "{json}");
    let problems = json["probe"]["problems"].as_array().unwrap();
    assert_eq!(problems[0]["line"], 2, "{json}");
    assert!(
        problems[0]["problem"]
            .as_str()
            .unwrap()
            .starts_with("access denied (SignatureDoesNotMatch"),
        "{json}"
    );
    assert_eq!(world.sandbox.snapshot().oss.requests.head, 6);

    // Without --probe, check reads nothing from OSS.
    let out = world
        .command(&["check", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(world.sandbox.snapshot().oss.requests.head, 6);
}

/// `persons` × `per_person` photos in the sandbox's OSS, and a manifest naming them as
/// `oss://` rows.
fn many_objects(world: &World, persons: usize, per_person: usize) -> std::path::PathBuf {
    let mut body = String::from("category_id,person_id,person_name,image_url\n");
    for p in 0..persons {
        for i in 0..per_person {
            let key = format!("staff/p{p:04}/{i}.jpg");
            world
                .sandbox
                .admin_put_object("media-faces", &key, &jpeg(&key))
                .unwrap();
            body.push_str(&format!("lib,p{p:04},Person {p},oss://media-faces/{key}\n"));
        }
    }
    world.manifest("m.csv", &body)
}

/// A large import whose links live 2 s, against a service that holds every call 300 ms and
/// fails some (so retries and look-ups happen): links signed when the run planned would have
/// expired long before the last photos went out; signed per attempt, every one registers.
fn import_with_short_links(target: &str, persons: usize, per_person: usize, concurrency: &str) {
    let world = World::new(SandboxConfig {
        latency_ms: 300,
        mts_qps: 0,
        ice_qps: 0,
        faults: face_enroll::sandbox::FaultRates {
            error_before: 0.02,
            reset_after: 0.01,
            ..Default::default()
        },
        ..SandboxConfig::for_tests()
    });
    let manifest = many_objects(&world, persons, per_person);
    let base = world.sandbox.base_url();
    let images = persons * per_person;
    let (summary, rejects, metrics) = (
        world.path("summary.json"),
        world.path("rejects.csv"),
        world.path("metrics.prom"),
    );
    let out = world.run(
        &manifest,
        &[
            "--target",
            target,
            "--oss-endpoint",
            &base,
            "--link-ttl",
            "2s",
            "--qps",
            "0",
            "--concurrency",
            concurrency,
            "--summary",
            summary.to_str().unwrap(),
            "--rejects",
            rejects.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = world.sandbox.snapshot();
    // The premise, as the service saw it: its downloads spanned more than a link's life, so
    // links signed before the first one went out would have expired by the last.
    let at: Vec<i64> = state.oss.fetches.iter().map(|f| f.at_ms).collect();
    let span = at.iter().max().unwrap() - at.iter().min().unwrap();
    assert!(span > 2_000, "downloads spanned only {span} ms");
    assert!(
        state.stats.faults.values().sum::<u64>() > 0,
        "no fault happened: {:?}",
        state.stats.faults
    );
    // Exactly once, by object: every photo held once.
    let held: Vec<String> = match target {
        "ice" => state
            .ice
            .libs
            .iter()
            .flat_map(|l| &l.entities)
            .flat_map(|e| &e.samples)
            .filter_map(|s| s.image_url.clone())
            .collect(),
        _ => faces_of(&state)
            .into_iter()
            .map(|(_, _, url, _)| url)
            .collect(),
    };
    let objects: std::collections::HashSet<String> = held
        .iter()
        .map(|url| {
            let o = face_enroll::image::OssObject::from_url(url).unwrap();
            format!("{}/{}", o.bucket(), o.key())
        })
        .collect();
    assert_eq!(held.len(), images, "a photo held twice or missing");
    assert_eq!(objects.len(), images);
    // Every download went through; none met an expired link.
    let refused: Vec<_> = state
        .oss
        .fetches
        .iter()
        .filter_map(|f| f.refused.clone())
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    assert!(state.oss.fetches.len() >= images);
    let ledger = match target {
        "ice" => world.path("m.ice.ledger.jsonl"),
        _ => world.path("m.ledger.jsonl"),
    };
    let last = last_per_image(&ledger);
    assert_eq!(last.len(), images);
    assert!(last.values().all(|r| r["status"] == "registered"));

    // No file written and no view printed holds a signed link or its parts.
    let views = [
        vec!["export", "m.csv", "--target", target, "-o", "export.csv"],
        vec!["status", "m.csv", "--target", target, "--failed"],
        vec!["status", "m.csv", "--target", target],
    ];
    for view in &views {
        let out = world.command(view).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{view:?}: {}", stderr(&out));
        assert_no_signed_link(&format!("{view:?}"), &String::from_utf8_lossy(&out.stdout));
        assert_no_signed_link(&format!("{view:?}"), &stderr(&out));
    }
    assert_no_signed_link("run's stderr", &stderr(&out));
    let files = written_files(world.dir.path());
    assert!(files.iter().any(|(name, _)| name.ends_with("export.csv")));
    for (name, text) in &files {
        if !name.ends_with("m.csv") {
            assert_no_signed_link(name, text);
            assert!(!text.contains("x-oss-security-token"), "{name}");
        }
    }
}

#[test]
fn two_thousand_objects_register_once_with_two_second_links_signed_per_attempt() {
    import_with_short_links("mts", 200, 10, "64");
}

#[test]
fn ice_samples_from_objects_register_once_with_two_second_links_signed_per_attempt() {
    import_with_short_links("ice", 50, 6, "16");
}
