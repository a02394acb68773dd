//! Shared test plumbing: a sandbox on 127.0.0.1:0, manifests in a temporary folder, the real
//! binary pointed at the sandbox, and readers for the ledger and the sandbox's state.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use face_enroll::sandbox::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, SandboxConfig, SandboxThread, StateSnapshot,
};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_face-enroll"))
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub sandbox: SandboxThread,
}

impl World {
    pub fn new(config: SandboxConfig) -> World {
        World {
            dir: tempfile::tempdir().unwrap(),
            sandbox: SandboxThread::spawn(config).unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn manifest(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    /// `face-enroll <args>` against this world's sandbox, with its credentials in the
    /// environment and a HOME of its own (so no real profile is ever read).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", DEFAULT_ACCESS_KEY_SECRET)
            .env("FACE_ENROLL_SEED", "7")
            .current_dir(self.dir.path());
        cmd
    }

    /// `run MANIFEST --endpoint <sandbox> --progress off` plus `extra`.
    pub fn run(&self, manifest: &Path, extra: &[&str]) -> Output {
        let url = self.sandbox.base_url();
        let mut args = vec![
            "run",
            manifest.to_str().unwrap(),
            "--endpoint",
            &url,
            "--progress",
            "off",
        ];
        args.extend_from_slice(extra);
        self.command(&args).output().unwrap()
    }

    pub fn faces(&self) -> Vec<(String, String, String, String)> {
        faces_of(&self.sandbox.snapshot())
    }
}

/// Every face on the server as (category, person, image_url, face_id).
pub fn faces_of(state: &StateSnapshot) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for c in &state.mts.categories {
        for p in &c.persons {
            for f in &p.faces {
                out.push((
                    c.category_id.clone(),
                    p.person_id.clone(),
                    f.image_url.clone(),
                    f.face_id.clone(),
                ));
            }
        }
    }
    out
}

/// How many faces each image URL has on the server.
pub fn copies_per_url(state: &StateSnapshot) -> HashMap<String, usize> {
    let mut copies = HashMap::new();
    for (_, _, url, _) in faces_of(state) {
        *copies.entry(url).or_insert(0) += 1;
    }
    copies
}

/// The ledger's lines as JSON values (a torn last line, if any, is left out).
pub fn ledger_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The last image record per image URL (a late `copy` record is not the image's).
pub fn last_per_image(path: &Path) -> HashMap<String, serde_json::Value> {
    let mut last = HashMap::new();
    for line in ledger_lines(path)
        .into_iter()
        .filter(|l| l["kind"] == "image")
    {
        if let Some(url) = line.get("image_url").and_then(|u| u.as_str()) {
            last.insert(url.to_string(), line.clone());
        }
    }
    last
}

/// A manifest of `persons` × `per_person` images, with a header.
pub fn manifest_body(category: &str, persons: usize, per_person: usize) -> String {
    let mut body = String::from("category_id,person_id,person_name,image_url\n");
    for p in 0..persons {
        for i in 0..per_person {
            body.push_str(&format!("{category},person-{p:04},Person {p},https://img.example.com/{category}/{p:04}/{i:02}.jpg\n"));
        }
    }
    body
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Starts `cmd`, waits `wait`, and SIGKILLs it if it is still running. True when the kill landed
/// mid-run (a run that had already finished does not count).
pub fn kill_after(cmd: &mut Command, wait: std::time::Duration) -> bool {
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(wait);
    let running = child.try_wait().unwrap().is_none();
    if running {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    running
}

/// `verify MANIFEST --ledger LEDGER --target TARGET` against the sandbox.
pub fn verify(world: &World, manifest: &Path, ledger: &Path, target: &str) -> std::process::Output {
    let url = world.sandbox.base_url();
    world
        .command(&[
            "verify",
            manifest.to_str().unwrap(),
            "--endpoint",
            &url,
            "--ledger",
            ledger.to_str().unwrap(),
            "--target",
            target,
        ])
        .output()
        .unwrap()
}

/// The server's id each image's last record holds, by image URL.
pub fn ledger_ids(ledger: &Path) -> HashMap<String, String> {
    last_per_image(ledger)
        .into_iter()
        .filter(|(_, r)| r["status"] == "registered")
        .filter_map(|(url, r)| {
            let id = r["face_id"].as_str().or(r["sample_id"].as_str())?;
            Some((url, id.to_string()))
        })
        .collect()
}

/// Asserts the server holds each of `urls` once, nothing else, and the ledger holds the
/// server's id for each (`assert_exactly_once` of `reliability.rs`, for either target and a sync's ledger).
pub fn assert_held_once(world: &World, ledger: &Path, urls: &[&str], target: &str) {
    let snapshot = world.sandbox.snapshot();
    let mut ids: Vec<(String, String)> = faces_of(&snapshot)
        .into_iter()
        .map(|(_, _, url, id)| (url, id))
        .collect();
    for sample in snapshot
        .ice
        .libs
        .iter()
        .flat_map(|l| &l.entities)
        .flat_map(|e| &e.samples)
    {
        ids.push((
            sample.image_url.clone().unwrap_or_default(),
            sample.sample_id.clone(),
        ));
    }
    let mut held: Vec<&str> = ids.iter().map(|(url, _)| url.as_str()).collect();
    held.sort_unstable();
    let mut wanted = urls.to_vec();
    wanted.sort_unstable();
    assert_eq!(
        held, wanted,
        "{target}: the server does not hold the roster once"
    );
    let recorded = ledger_ids(ledger);
    for (url, id) in &ids {
        assert_eq!(
            recorded.get(url),
            Some(id),
            "{target}: the ledger does not hold the server's id for {url}"
        );
    }
}

/// A loopback port nothing listens on: bound, then closed.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

/// What is wrong with `value` by the published JSON Schema `doc/schema/NAME` (empty: valid).
pub fn schema_errors(name: &str, value: &serde_json::Value) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("doc/schema")
        .join(name);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect()
}
