//! The documentation against the code: the committed manual pages are what the flag definitions
//! render, every flag is in the guide and every flag the guide names exists, and real output
//! validates against the published JSON Schemas.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::common::bin;

const REGENERATE: &str = "cargo run -- man doc/man";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn pages_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; regenerate with `{REGENERATE}`",
                dir.display()
            )
        })
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "1"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

/// The pages as the binary's `man DIR` writes them, against doc/man/, byte for byte: a flag or a
/// help text changed without regenerating fails here (and so in CI), naming the pages and the
/// command that mends them.
#[test]
fn committed_man_pages_are_what_the_flag_definitions_render() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .args(["man", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = pages_in(dir.path());
    let committed = pages_in(&repo("doc/man"));
    assert!(fresh.contains_key("face-enroll.1") && fresh.contains_key("face-enroll-run.1"));
    assert!(
        fresh.contains_key("face-enroll-lib-create.1"),
        "nested subcommands have pages"
    );
    assert!(
        !fresh.contains_key("face-enroll-man.1"),
        "the hidden man command has no page"
    );

    let mut stale: Vec<String> = Vec::new();
    for (name, text) in &fresh {
        match committed.get(name) {
            None => stale.push(format!("{name} (missing)")),
            Some(old) if old != text => stale.push(format!("{name} (differs)")),
            Some(_) => {}
        }
    }
    stale.extend(
        committed
            .keys()
            .filter(|name| !fresh.contains_key(*name))
            .map(|name| format!("{name} (no such command)")),
    );
    assert!(
        stale.is_empty(),
        "doc/man is stale: {}; regenerate with `{REGENERATE}` and commit doc/man",
        stale.join(", ")
    );
}

/// `man DIR` makes the folder exactly the current pages: a page of a command that no longer
/// exists is removed, other files stay.
#[test]
fn man_command_removes_pages_of_commands_that_no_longer_exist() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("face-enroll-gone.1"), "old").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let out = std::process::Command::new(bin())
        .args(["man", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("face-enroll-gone.1").exists());
    assert!(dir.path().join("notes.txt").exists());
    assert!(dir.path().join("face-enroll-verify.1").exists());
}
