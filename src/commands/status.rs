//! `face-enroll status`: what the ledger says — images per status, per library; the last run's
//! start, end and outcome; and, given a manifest, how much is left to do for it.
//!
//! Streams the ledger and keeps, per image, only its library's index and its last status (keyed
//! by `image_key`): a ledger of millions of lines stays at tens of megabytes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::exit::Exit;
use crate::image::fold_id;
use crate::ledger::{self as scan, Entry, View};
use crate::ledger::{self, KeyMap, Status};
use crate::plan;

/// Validated flags of `status`.
#[derive(Clone, Debug)]
pub struct StatusConfig {
    pub ledger: PathBuf,
    pub manifest: Option<PathBuf>,
    pub json: bool,
    /// List the rows not registered now instead of the counts.
    pub failed: bool,
    /// The target's rules, for planning the manifest (the 10-image limit is MTS's).
    pub rules: plan::Rules,
    /// How the manifest is read: the default options, and the local photos earlier runs
    /// uploaded (from the ledger, when a row names one).
    pub read: crate::manifest::ReadOptions,
}

/// Every status, in the order reports show them.
const STATUSES: [Status; 7] = Status::ALL;

fn slot(status: Status) -> usize {
    STATUSES.iter().position(|s| *s == status).unwrap_or(0)
}

/// Images per status, in `STATUSES` order; serialised as a map by status name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts(pub [u64; STATUSES.len()]);

impl Counts {
    pub fn get(&self, status: Status) -> u64 {
        self.0[slot(status)]
    }
}

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(STATUSES.len()))?;
        for (status, n) in STATUSES.iter().zip(self.0) {
            map.serialize_entry(status.as_str(), &n)?;
        }
        map.end()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LibraryStatus {
    pub library: String,
    /// `mts` or `ice`.
    pub target: String,
    pub images: u64,
    pub statuses: Counts,
}

/// The last run the ledger records: the report's run line, its span only.
pub type LastRun = crate::report_html::RunSpan;

#[derive(Clone, Debug, Serialize)]
pub struct ManifestStatus {
    pub manifest: String,
    pub rows: u64,
    pub already_registered: u64,
    pub to_send: u64,
    pub persons_to_look_up: u64,
    pub failed_not_retried: u64,
    pub invalid: u64,
    pub over_limit: u64,
    pub duplicates: u64,
}

/// The whole report, as `--json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub ledger: String,
    pub lines: u64,
    pub images: u64,
    pub statuses: Counts,
    pub libraries: Vec<LibraryStatus>,
    pub last_run: Option<LastRun>,
    pub manifest: Option<ManifestStatus>,
}

pub async fn execute(config: StatusConfig) -> Exit {
    crate::upload::read_uploads_from_journal(&config.read, &config.ledger);
    if config.failed {
        return list_failed(config).await;
    }
    let json = config.json;
    let report = match super::blocking(move || gather(&config)).await {
        Ok(report) => report,
        Err(e) => {
            crate::say!("face-enroll: {e}");
            return e.exit();
        }
    };
    let text = if json {
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else {
        render(&report)
    };
    super::print_out(&text);
    Exit::Success
}

/// `status --failed`: every row not registered now, across runs (as the manifest writes it now,
/// when one is given).
async fn list_failed(config: StatusConfig) -> Exit {
    let (path, manifest) = (config.ledger.clone(), config.manifest.clone());
    let read = config.read.clone();
    let rows = match super::blocking(move || match &manifest {
        Some(manifest) => {
            crate::manifest::check_source(manifest)?;
            super::failed::collect_current(&path, manifest, &read)
        }
        None => Ok(super::failed::collect(&path)?),
    })
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            crate::say!("face-enroll: {e}");
            return e.exit();
        }
    };
    let text = if config.json {
        serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"
    } else {
        super::failed::render(&rows)
    };
    super::print_out(&text);
    Exit::Success
}

/// Reads the ledger (and plans the manifest against it, if one is given).
pub fn gather(config: &StatusConfig) -> Result<StatusReport, super::OpsError> {
    // A mistyped manifest is named as such, not as the ledger beside it that does not exist.
    if let Some(path) = &config.manifest {
        crate::manifest::check_source(path)?;
    }
    let mut tally = Tally::default();
    let scanned = scan::scan(&config.ledger, false, |entry| tally.add(entry))?;
    let mut libraries: Vec<LibraryStatus> = tally
        .libraries
        .iter()
        .map(|(name, target)| LibraryStatus {
            library: name.clone(),
            target: target.clone(),
            images: 0,
            statuses: Counts::default(),
        })
        .collect();
    let mut statuses = Counts::default();
    for (library, status) in tally.images.values() {
        let lib = &mut libraries[*library as usize];
        lib.images += 1;
        lib.statuses.0[slot(*status)] += 1;
        statuses.0[slot(*status)] += 1;
    }
    let manifest = match &config.manifest {
        Some(path) => Some(plan_manifest(path, config)?),
        None => None,
    };
    Ok(StatusReport {
        ledger: config.ledger.display().to_string(),
        lines: scanned.lines,
        images: tally.images.len() as u64,
        statuses,
        libraries,
        last_run: tally.last_run,
        manifest,
    })
}

fn plan_manifest(
    path: &std::path::Path,
    config: &StatusConfig,
) -> Result<ManifestStatus, super::OpsError> {
    let replay = ledger::replay(&config.ledger)?;
    let options = plan::Options {
        sync: false,
        retry_failed: false,
        keep_work: false,
        reconcile: plan::Reconcile::Auto,
    };
    let plan = crate::plan::run::plan_file(
        path,
        &config.read,
        &replay,
        options,
        config.rules,
        &Default::default(),
    )?;
    let c = plan.counts;
    Ok(ManifestStatus {
        manifest: path.display().to_string(),
        rows: c.rows,
        already_registered: c.already_registered,
        to_send: c.to_send,
        persons_to_look_up: c.to_look_up,
        failed_not_retried: c.previously_failed,
        invalid: c.invalid,
        over_limit: c.over_limit,
        duplicates: c.duplicates,
    })
}

/// Per image: its library's index and its last status. Libraries by (target, folded id).
#[derive(Default)]
struct Tally {
    images: KeyMap<(u32, Status)>,
    library_index: HashMap<(String, String), u32>,
    libraries: Vec<(String, String)>,
    last_run: Option<LastRun>,
}

impl Tally {
    fn add(&mut self, entry: Entry<'_, '_>) {
        let image = match entry {
            Entry::Run(view) => return self.run(view),
            Entry::Object(_) | Entry::Person(_) | Entry::Upload(_) | Entry::Checked(_) => return,
            Entry::Image(image) => image,
        };
        let target = if image.is_mts() { "mts" } else { "ice" }.to_string();
        let folded = (target, fold_id(image.category_id));
        let next = self.libraries.len() as u32;
        let index = *self
            .library_index
            .entry(folded)
            .or_insert_with_key(|(t, _)| {
                self.libraries
                    .push((image.category_id.trim().to_string(), t.clone()));
                next
            });
        let key = image.key();
        self.images.insert(key, (index, image.status));
    }

    fn run(&mut self, view: &View<'_>) {
        let run = view.run.as_deref().unwrap_or_default();
        let ts = view.ts.as_deref().map(str::to_string);
        if view.kind == Some(ledger::record::LineKind::RunStart) {
            self.last_run = Some(LastRun {
                run: run.to_string(),
                command: view.command.as_deref().map(str::to_string),
                started: ts,
                ..LastRun::default()
            });
            return;
        }
        let last = match &mut self.last_run {
            Some(last) if last.run == run => last,
            _ => self.last_run.insert(LastRun {
                run: run.to_string(),
                ..LastRun::default()
            }),
        };
        last.ended = ts;
        last.outcome = view.outcome.as_deref().map(str::to_string);
        last.exit_code = view.exit_code;
    }
}

/// The report as text.
pub fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ledger {}: {} lines, {} images",
        r.ledger, r.lines, r.images
    );
    let _ = writeln!(out, "  {}", render_counts(&r.statuses));
    for lib in &r.libraries {
        let target = if lib.target == "mts" {
            String::new()
        } else {
            format!(" ({})", lib.target)
        };
        let _ = writeln!(
            out,
            "  library {}{target}: {} images; {}",
            lib.library,
            lib.images,
            render_counts(&lib.statuses)
        );
    }
    match &r.last_run {
        None => {
            let _ = writeln!(out, "last run: none recorded");
        }
        Some(run) => render_last_run(&mut out, run),
    }
    if let Some(m) = &r.manifest {
        let _ = writeln!(
            out,
            "manifest {}: {} rows; already registered {}; left to send {} ({} persons to look up first)",
            m.manifest, m.rows, m.already_registered, m.to_send, m.persons_to_look_up
        );
        let _ = writeln!(
            out,
            "  not sent: failed earlier {} (use run --retry-failed), invalid {}, over the 10-face limit {}, duplicate rows {}",
            m.failed_not_retried, m.invalid, m.over_limit, m.duplicates
        );
    }
    out
}

fn render_last_run(out: &mut String, run: &LastRun) {
    let _ = writeln!(
        out,
        "last run {} ({}): started {}",
        run.run,
        run.command.as_deref().unwrap_or("run"),
        run.started.as_deref().unwrap_or("(no start record)")
    );
    match (&run.ended, &run.outcome) {
        (Some(ended), outcome) => {
            let _ = writeln!(
                out,
                "  ended {ended}: {} (exit {})",
                outcome.as_deref().unwrap_or("no outcome recorded"),
                run.exit_code
                    .map_or_else(|| "?".to_string(), |c| c.to_string())
            );
        }
        (None, _) => {
            let _ = writeln!(
                out,
                "  no end record: still running, or it was killed (the next run resumes)"
            );
        }
    }
}

fn render_counts(counts: &Counts) -> String {
    STATUSES
        .iter()
        .zip(counts.0)
        .map(|(s, n)| format!("{} {n}", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The command's flags, lowered once into its validated config.
impl crate::cli::ops::StatusArgs {
    pub fn config(&self) -> Result<StatusConfig, crate::exit::UsageError> {
        let ledger = crate::cli::ops::ledger_for(
            &self.ledger,
            &self.manifest,
            &self.target,
            self.sandbox,
            "status",
        )?;
        Ok(StatusConfig {
            ledger,
            manifest: self.manifest.clone(),
            json: self.json,
            failed: self.failed,
            rules: self.target.kind().rules(),
            read: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{ImageRecord, Record, RunRecord, encode};

    fn image(run: &str, status: Status, cat: &str, person: &str, url: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let record = ImageRecord::new(run, status, cat, person, url);
        encode(&Record::Image(record), &mut out);
        out
    }

    #[test]
    fn the_last_status_of_each_image_is_counted_per_library_whatever_the_case_of_its_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut bytes = Vec::new();
        let start = RunRecord {
            ts: "t1".into(),
            run: "r1".into(),
            command: Some("run".into()),
            ..RunRecord::default()
        };
        encode(&Record::RunStart(start), &mut bytes);
        bytes.extend(image("r1", Status::Pending, "Lib", "Alice", "u1"));
        bytes.extend(image("r1", Status::Registered, "lib", "alice", "u1"));
        bytes.extend(image("r1", Status::Failed, "LIB", "bob", "u2"));
        bytes.extend(image("r1", Status::Registered, "other", "carol", "u3"));
        bytes.extend(image("r1", Status::Removed, "other", "carol", "u3"));
        std::fs::write(&path, bytes).unwrap();
        let config = StatusConfig {
            ledger: path,
            manifest: None,
            json: false,
            failed: false,
            rules: plan::Rules::MTS,
            read: Default::default(),
        };
        let report = gather(&config).unwrap();
        assert_eq!(report.images, 3);
        assert_eq!(report.statuses.get(Status::Registered), 1);
        assert_eq!(report.statuses.get(Status::Removed), 1);
        assert_eq!(report.libraries.len(), 2);
        assert_eq!(report.libraries[0].library, "Lib");
        assert_eq!(report.libraries[0].statuses.get(Status::Failed), 1);
        let last = report.last_run.clone().unwrap();
        assert_eq!((last.run.as_str(), last.ended), ("r1", None));
        assert!(render(&report).contains("no end record"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["statuses"]["registered"], 1);
    }
}
