//! `oss://BUCKET/KEY` images: sent as a V4 link signed for each attempt, never stored or shown
//! signed, and one identity for every form of an object (a lost ledger adopts, a manifest moved
//! between `oss://` and signed links sends nothing).

use std::path::Path;

use crate::common::*;
use face_enroll::sandbox::{DEFAULT_ACCESS_KEY_SECRET, SandboxConfig};
use face_enroll::sign::oss::{Received, verify_presigned};

const PERSONS: usize = 6;
const PER_PERSON: usize = 2;

fn oss_manifest(world: &World) -> std::path::PathBuf {
    let mut body = String::from("category_id,person_id,person_name,image_url\n");
    for p in 0..PERSONS {
        for i in 0..PER_PERSON {
            body.push_str(&format!(
                "lib,p{p},Person {p},oss://media-faces/faces/p{p}/照片 {i:02}.jpg\n"
            ));
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
