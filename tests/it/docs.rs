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
const DOCUMENTS: &[&str] = &["doc/GUIDE.md", "README.md"];

/// Flags of other programs that the documents quote (cargo's, node_exporter's, systemctl's,
/// useradd's).
const OTHER_TOOLS: [&str; 10] = [
    "--release",
    "--locked",
    "--path",
    "--test",
    "--collector",
    "--now",
    "--root",
    "--system",
    "--home-dir",
    "--create-home",
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

fn schema(name: &str) -> jsonschema::Validator {
    let path = repo(&format!("doc/schema/{name}"));
    let text = std::fs::read_to_string(&path).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_valid(validator: &jsonschema::Validator, value: &serde_json::Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema: {errors:?}\n{value}"
    );
}

/// Every line of real ledgers — an MTS run with refused, invalid and over-the-limit rows; an ICE
/// run whose create lands late (copies, then a settled person); a rollback that deletes what the
/// runs made — against doc/schema/ledger-record.json, which allows no field it does not list;
/// the `--summary` file and each run's `run_end` summary against doc/schema/summary.json; every
/// metric the run writes is named in doc/FORMATS.md. Every
/// kind of record and every status is seen, so none of the schema's parts goes untested.
#[test]
fn real_ledgers_and_summaries_match_the_published_schemas() {
    use face_enroll::sandbox::{Fault, SandboxConfig};

    use super::common::{World, ledger_lines, stderr};

    let records = schema("ledger-record.json");
    let summaries = schema("summary.json");
    let mut config = SandboxConfig::for_tests();
    // Held 3 s, then applied: after the client's 1 s timeout and the look-up after it.
    config.stall_ms = 3_000;
    let world = World::new(config);
    let url = world.sandbox.base_url();

    let mut body = String::from("category_id,person_id,image_url,person_name\n");
    for i in 0..11 {
        body.push_str(&format!(
            "lib,alice,https://img.example/alice/{i}.jpg,Alice\n"
        ));
    }
    body.push_str("lib,bob,https://img.example/bob/noface.jpg,Bob\n");
    body.push_str("lib,carol,img.example/carol.jpg,Carol\n");
    let mts = world.manifest("mts.csv", &body);
    let mts_ledger = world.path("mts.ledger.jsonl");
    let out = world.run(
        &mts,
        &[
            "--ledger",
            mts_ledger.to_str().unwrap(),
            "--summary",
            "mts.json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world.path("mts.json")).unwrap()).unwrap();
    assert_eq!(
        (&summary["failed"], &summary["invalid"], &summary["skipped"]),
        (&1.into(), &1.into(), &1.into()),
        "{summary}"
    );
    assert_valid(&summaries, &summary, "the --summary file");

    world
        .sandbox
        .script("CreateRecognitionSample", vec![Fault::Late]);
    let ice = world.manifest(
        "ice.csv",
        "category_id,person_id,image_url,person_name\nlib,dan,https://img.example/dan/1.jpg,Dan\n\
         lib,dan,https://img.example/dan/2.jpg,Dan\nlib,eve,https://img.example/eve/1.jpg,Eve\n",
    );
    let ice_ledger = world.path("ice.ledger.jsonl");
    let flags = [
        "--ledger",
        ice_ledger.to_str().unwrap(),
        "--target",
        "ice",
        "--timeout",
        "1",
    ];
    for _ in 0..2 {
        let out = world.run(&ice, &flags);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let ice_str = ice_ledger.to_str().unwrap();
    let out = world
        .command(&[
            "rollback",
            "--ledger",
            ice_str,
            "--all",
            "--yes",
            "--endpoint",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let (mut kinds, mut statuses) = (BTreeSet::new(), BTreeSet::new());
    for ledger in [&mts_ledger, &ice_ledger] {
        for (n, line) in ledger_lines(ledger).iter().enumerate() {
            assert_valid(
                &records,
                line,
                &format!("{} line {}", ledger.display(), n + 1),
            );
            kinds.insert(line["kind"].as_str().unwrap().to_string());
            if let Some(status) = line["status"].as_str() {
                statuses.insert(status.to_string());
            }
            if line["kind"] == "run_end" && line["summary"]["run_id"].is_string() {
                assert_valid(&summaries, &line["summary"], "a run_end record's summary");
            }
        }
    }
    let every_kind = [
        "copy",
        "created",
        "deleted",
        "image",
        "run_end",
        "run_start",
        "settled",
    ];
    assert_eq!(kinds, every_kind.map(String::from).into(), "kinds seen");
    let every_status = [
        "failed",
        "invalid",
        "pending",
        "registered",
        "removed",
        "removing",
        "skipped",
    ];
    assert_eq!(
        statuses,
        every_status.map(String::from).into(),
        "statuses seen"
    );
}

/// The schemas are strict: a field they do not list, or a kind, status or type they do not
/// allow, is refused — so a record format change without a schema change fails the test above.
#[test]
fn schemas_refuse_unknown_fields_and_wrong_types() {
    let records = schema("ledger-record.json");
    let good = serde_json::json!({"v":1,"kind":"image","ts":"2026-12-01T10:04:33.797Z","run":"r",
        "status":"registered","category_id":"c","person_id":"p","image_url":"u","face_id":"f"});
    assert!(records.is_valid(&good));
    let mut extra = good.clone();
    extra["colour"] = "red".into();
    assert!(!records.is_valid(&extra), "an unlisted field");
    let mut no_id = good.clone();
    no_id.as_object_mut().unwrap().remove("face_id");
    assert!(!records.is_valid(&no_id), "registered without an id");
    let mut status = good.clone();
    status["status"] = "done".into();
    assert!(!records.is_valid(&status), "an unknown status");
    let summaries = schema("summary.json");
    assert!(
        !summaries.is_valid(&serde_json::json!({"run_id": "r"})),
        "missing figures"
    );
}

/// The README is the front door: short, and its two commands are the ones CI and newcomers run,
/// word for word.
#[test]
fn readme_stays_short_and_keeps_its_two_commands() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines; move detail to doc/GUIDE.md"
    );
    for command in [
        "cargo run --release -- run samples/faces.csv --sandbox   # the sample manifest against the built-in sandbox",
        "cargo test                                               # the test suite (what CI runs, with fmt and clippy)",
    ] {
        assert!(readme.contains(command), "README.md lost `{command}`");
    }
    for link in [
        "doc/GUIDE.md",
        "doc/FORMATS.md",
        "doc/DESIGN.md",
        "BENCHMARKS.md",
        "doc/man/",
    ] {
        assert!(readme.contains(link), "README.md does not link {link}");
        assert!(repo(link).exists(), "{link} does not exist");
    }
}

/// The `face-enroll …` command lines of the guide's and the README's shell examples, as argument
/// lists (prompt, comment and anything after a pipe or redirection cut off; lines with
/// placeholders skipped), with their line numbers.
fn example_commands(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut in_shell = false;
    for (n, line) in text.lines().enumerate() {
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            in_shell = !in_shell && (fence == "sh" || fence == "console");
            continue;
        }
        let line = line.trim_start();
        let line = line.strip_prefix("$ ").unwrap_or(line);
        if !in_shell
            || !line.starts_with("face-enroll ")
            || line.contains('…')
            || line.contains("...")
        {
            continue;
        }
        let mut command = line;
        for cut in [" #", " |", " >", " &"] {
            if let Some(at) = command.find(cut) {
                command = &command[..at];
            }
        }
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quoted = false;
        for c in command.chars() {
            match c {
                '"' => quoted = !quoted,
                ' ' if !quoted => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        out.push((n + 1, words));
    }
    out
}

/// Every command line the guide and the README show parses with the real flag definitions (no
/// unknown flag, no missing argument, no conflict); the ones that only read the ledger (`status`,
/// `runs`, `export`, `check`) run as shown, beside the sample manifest imported once for real
/// and once into the sandbox, and succeed.
#[test]
fn the_documents_example_commands_parse_and_the_ledger_ones_run_as_shown() {
    use clap::Parser;
    use face_enroll::sandbox::SandboxConfig;

    use super::common::{World, stderr};

    let world = World::new(SandboxConfig::for_tests());
    let sample = std::fs::read_to_string(repo("samples/faces.csv")).unwrap();
    let manifest = world.manifest("faces.csv", &sample);
    let out = world.run(&manifest, &["--ledger", "faces.ledger.jsonl"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = world
        .command(&["run", "faces.csv", "--sandbox", "--progress", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    let mut ran = 0;
    for doc in DOCUMENTS {
        let text = std::fs::read_to_string(repo(doc)).unwrap();
        let examples = example_commands(&text);
        assert!(!examples.is_empty(), "{doc} shows no command");
        for (line, words) in examples {
            if let Err(e) = face_enroll::cli::Cli::try_parse_from(&words) {
                panic!(
                    "{doc} line {line}: `{}` does not parse:\n{e}",
                    words.join(" ")
                );
            }
            let offline = ["status", "runs", "export", "check"].contains(&words[1].as_str());
            if offline && !words.iter().any(|w| w == "ice") {
                let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
                let out = world.command(&args).output().unwrap();
                let expected = if words[1] == "check" { 1 } else { 0 };
                assert_eq!(
                    out.status.code(),
                    Some(expected),
                    "{doc} line {line}: `{}`: {}",
                    words.join(" "),
                    stderr(&out)
                );
                ran += 1;
            }
        }
    }
    assert!(ran >= 8, "only {ran} examples ran");
}

#[test]
fn example_commands_are_cut_at_comments_pipes_and_redirections() {
    let text = "```sh\nface-enroll export --ledger l.jsonl --format jsonl | jq .\n\
                $ face-enroll lib create --name \"On air\"   # a comment\n\
                face-enroll status --ledger …\n```\nface-enroll run outside.csv\n";
    let found = example_commands(text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0].1,
        [
            "face-enroll",
            "export",
            "--ledger",
            "l.jsonl",
            "--format",
            "jsonl"
        ]
    );
    assert_eq!(
        found[1].1,
        ["face-enroll", "lib", "create", "--name", "On air"]
    );
}

/// The guide's sandbox rehearsal, run as the guide writes it: a standalone sandbox in the
/// background, an import against it, its state read back. Only the port is changed (a free one
/// instead of 8686), `face-enroll` is this build, and `curl` falls back to Python's urllib
/// where it is not installed.
#[test]
fn the_guides_sandbox_rehearsal_runs_as_written() {
    let guide = std::fs::read_to_string(repo("doc/GUIDE.md")).unwrap();
    let start = guide
        .find("```sh\nface-enroll sandbox --listen 127.0.0.1:8686")
        .expect("the guide's sandbox block");
    let body = &guide[start + "```sh\n".len()..];
    let block = &body[..body.find("```").unwrap()];
    assert!(block.contains("face-enroll run faces.csv --endpoint http://127.0.0.1:8686/"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // `face-enroll` on the PATH is this build, so the backgrounded sandbox is the shell's own
    // child: `$!` is its pid, and the script stops it.
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(super::common::bin(), bin_dir.join("face-enroll")).unwrap();
    let script = format!(
        "command -v curl >/dev/null || curl() {{ python3 -c 'import sys, urllib.request; \
         print(urllib.request.urlopen(sys.argv[-1]).read().decode())' \"$@\"; }}\n\
         {block}\nkill $!\nwait\n",
        block = block.replace("127.0.0.1:8686", &format!("127.0.0.1:{port}")),
    );
    std::fs::copy(repo("samples/faces.csv"), dir.path().join("faces.csv")).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("timeout")
        .args(["120", "bash", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("FACE_ENROLL_SEED", "7")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let state_line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no state printed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let state: serde_json::Value = serde_json::from_str(state_line).unwrap();
    let faces: usize = state["mts"]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["persons"].as_array().unwrap())
        .map(|p| p["faces"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        faces, 37,
        "the sample's 37 faces, as the guide's rehearsal promises"
    );
    assert!(dir.path().join("rehearsal.ledger.jsonl").exists());
}

/// The `face-enroll …` commands of a cron or systemd line, each as its words (cut at `>>`, `;`
/// and `)`-less shell around it).
fn kit_commands(line: &str) -> Vec<Vec<String>> {
    line.split("/usr/local/bin/face-enroll ")
        .skip(1)
        .map(|rest| {
            let end = [" >>", ";", " &&", " ||"]
                .iter()
                .filter_map(|cut| rest.find(cut))
                .min()
                .unwrap_or(rest.len());
            std::iter::once("face-enroll".to_string())
                .chain(rest[..end].split_whitespace().map(str::to_string))
                .collect()
        })
        .collect()
}

/// Outages page on-call, data problems go to the roster's owner: the kit's systemd unit counts
/// exit 1 (data) and 5 (resumes) as success, writes the report after, and starts the paging
/// unit on every other ending; the crontab routes the same codes the same way; every
/// face-enroll command in both parses with the real flags.
#[test]
fn the_cron_kit_routes_outages_to_on_call_and_data_to_the_rosters_owner() {
    use clap::Parser;

    let unit = std::fs::read_to_string(repo("samples/cron/face-enroll.service")).unwrap();
    let unit = unit.replace("\\\n", " ");
    let setting = |name: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
            .collect()
    };
    let success: BTreeSet<String> = setting("SuccessExitStatus")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect();
    assert_eq!(success, ["1", "5"].map(String::from).into());
    assert_eq!(setting("OnFailure"), ["face-enroll-page.service"]);
    let page = std::fs::read_to_string(repo("samples/cron/face-enroll-page.service")).unwrap();
    assert!(page.lines().any(|l| l.starts_with("ExecStart=")), "{page}");
    let start = setting("ExecStart");
    let post = setting("ExecStartPost");
    assert_eq!((start.len(), post.len()), (1, 1), "{unit}");
    let run = &kit_commands(&start[0])[0];
    let report = &kit_commands(&post[0])[0];
    assert_eq!((run[1].as_str(), report[1].as_str()), ("run", "report"));
    let cron = std::fs::read_to_string(repo("samples/cron/crontab")).unwrap();
    let jobs: Vec<&str> = cron
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let hourly = jobs.iter().find(|l| l.contains(" run ")).unwrap();
    assert!(
        hourly.contains("case $rc in 0|5) ;; 1) /usr/local/bin/face-enroll report "),
        "{hourly}"
    );
    assert!(hourly.contains("*) logger -p daemon.crit"), "{hourly}");
    let mut parsed = 0;
    for words in std::iter::once(run.clone())
        .chain(std::iter::once(report.clone()))
        .chain(jobs.iter().flat_map(|l| kit_commands(l)))
    {
        if let Err(e) = face_enroll::cli::Cli::try_parse_from(&words) {
            panic!("`{}` does not parse:\n{e}", words.join(" "));
        }
        parsed += 1;
    }
    assert_eq!(
        parsed, 5,
        "run and report in the unit; run, report and verify in the crontab"
    );
}
