//! The documentation against the code: the committed manual pages are what the flag definitions
//! render, every flag is in the guide and every flag the guide names exists, and real output
//! validates against the published JSON Schemas.

use std::collections::{BTreeMap, BTreeSet};
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

/// Long flags of the command line: (every flag, hidden ones included; the flags an operator is
/// meant to see, without clap's own --help and --version).
fn long_flags() -> (BTreeSet<String>, BTreeSet<String>) {
    fn walk(
        command: &clap::Command,
        hidden_above: bool,
        all: &mut BTreeSet<String>,
        shown: &mut BTreeSet<String>,
    ) {
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            all.insert(format!("--{long}"));
            if !hidden_above && !arg.is_hide_set() && long != "help" && long != "version" {
                shown.insert(format!("--{long}"));
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, hidden_above || sub.is_hide_set(), all, shown);
        }
    }
    let mut command = <face_enroll::cli::Cli as clap::CommandFactory>::command();
    command.build();
    let (mut all, mut shown) = (BTreeSet::new(), BTreeSet::new());
    walk(&command, false, &mut all, &mut shown);
    (all, shown)
}

/// The documents whose `--flag` words must name real flags.
const DOCUMENTS: &[&str] = &["doc/GUIDE.md"];

/// Flags of other programs that the documents quote (cargo's, node_exporter's, systemctl's).
const OTHER_TOOLS: [&str; 6] = [
    "--release",
    "--locked",
    "--path",
    "--test",
    "--collector",
    "--now",
];

/// Every `--flag` word of a document, with the first line it is on.
fn flags_in(text: &str) -> BTreeMap<String, usize> {
    let mut found = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut i = 0;
        while let Some(at) = line[i..].find("--") {
            let start = i + at;
            let before_ok = start == 0
                || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-');
            let mut end = start + 2;
            while end < bytes.len()
                && (bytes[end].is_ascii_lowercase()
                    || bytes[end].is_ascii_digit()
                    || bytes[end] == b'-')
            {
                end += 1;
            }
            let word = line[start..end].trim_end_matches('-');
            if before_ok && word.len() > 2 && bytes[start + 2].is_ascii_lowercase() {
                found.entry(word.to_string()).or_insert(n + 1);
            }
            i = end.max(start + 2);
        }
    }
    found
}

/// The guide is the operator's reference by task: a flag added to the command line without a word
/// in the guide fails here, and so does a flag the guide (or the README) names that no command has.
#[test]
fn every_flag_is_in_the_guide_and_every_flag_the_docs_name_exists() {
    let (all, shown) = long_flags();
    assert!(
        shown.contains("--max-delete") && shown.contains("--stall-ms"),
        "{shown:?}"
    );
    let guide = std::fs::read_to_string(repo("doc/GUIDE.md")).unwrap();
    let guide_flags = flags_in(&guide);
    let undocumented: Vec<&String> = shown
        .iter()
        .filter(|f| !guide_flags.contains_key(*f))
        .collect();
    assert!(
        undocumented.is_empty(),
        "flags with no word in doc/GUIDE.md: {undocumented:?}"
    );

    for doc in DOCUMENTS {
        let text = std::fs::read_to_string(repo(doc)).unwrap();
        let unknown: Vec<String> = flags_in(&text)
            .into_iter()
            .filter(|(flag, _)| !all.contains(flag) && !OTHER_TOOLS.contains(&flag.as_str()))
            .map(|(flag, line)| format!("{flag} (line {line})"))
            .collect();
        assert!(
            unknown.is_empty(),
            "{doc} names flags no command has: {unknown:?}"
        );
    }
}

#[test]
fn flag_words_are_found_in_prose_and_code_but_not_in_other_words() {
    let found = flags_in("use `--max-delete N`, `--qps=5`; not a--b, --Big or ---; --sync.");
    let words: Vec<&str> = found.keys().map(String::as_str).collect();
    assert_eq!(words, ["--max-delete", "--qps", "--sync"]);
}
