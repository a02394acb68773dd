//! `face-enroll report`: one self-contained HTML page of an import — every row of the current
//! manifest with the state its image is in now, grouped by library and person, problems first.
//!
//! The manifest decides what is shown (a row the ledger never saw is `pending`); the ledger is
//! streamed twice at most, keeping per image only its last state, so memory follows the rows
//! shown and not the ledger's history. Thumbnails are fetched after that, then the page is
//! written as a private file (0600).
//!
//! `oss://` photos are read (or linked) through links signed with the credentials and OSS
//! settings a run uses; credentials are looked for only when the page shows such a photo. A
//! local photo no run has uploaded yet is `pending` when it is one an upload would take, its
//! thumbnail read from disk.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::exit::Exit;
use crate::image::{ImageId, fold_id, person_key};
use crate::ledger::{self, Entry, KeyMap, Status, View};
use crate::manifest;
use crate::report_html::{
    Badge, Figures, Library, Page, Person, Photo, Rate, RunLine, RunSpan, Source, ThumbMode,
    Thumbs, fetch_thumbnails, sign_links,
};

/// Validated flags of `report`.
#[derive(Clone, Debug)]
pub struct ReportConfig {
    pub manifest: PathBuf,
    pub ledger: PathBuf,
    pub output: PathBuf,
    pub thumbnails: ThumbMode,
    pub max_thumbnails: usize,
    /// Cards of persons without a problem drawn at most (0: all).
    pub max_cards: usize,
    pub target: crate::backend::TargetKind,
    /// The ledger is the built-in sandbox's (`--sandbox`).
    pub sandbox: bool,
    /// How `oss://` photos are reached: the run's connection flags, checked.
    pub connect: crate::connect::Settings,
    pub oss: crate::cli::OssArgs,
    /// How the manifest is read: the default options, and the local photos earlier runs
    /// uploaded (from the ledger, when a row names one).
    pub read: crate::manifest::ReadOptions,
}

const MTS: &str = "MTS custom faces";

/// At most this many runs are listed in the header (the latest); older ones are counted.
const RUNS_SHOWN: usize = 50;

pub async fn execute(config: ReportConfig) -> Exit {
    crate::upload::read_uploads_from_journal(&config.read, &config.ledger);
    let gather_config = config.clone();
    let page = match super::blocking(move || gather(&gather_config)).await {
        Ok(page) => page,
        Err(e) => {
            crate::say!("face-enroll: {e}");
            return e.exit();
        }
    };
    let thumbs = thumbnails(&config, &page).await;
    let output = config.output.clone();
    let written = super::blocking(move || {
        let write = |out: &mut dyn std::io::Write| {
            crate::report_html::render(&page, &thumbs, config.thumbnails, out)
        };
        crate::report::write_private_with(&output, 0o600, write).map_err(|source| {
            super::OpsError::Write {
                what: output.display().to_string(),
                source,
            }
        })?;
        Ok(page.figures.rows)
    })
    .await;
    match written {
        Ok(rows) => {
            crate::say!(
                "face-enroll: report of {rows} rows written to {}",
                config.output.display()
            );
            Exit::Success
        }
        Err(e) => {
            crate::say!("face-enroll: {e}");
            e.exit()
        }
    }
}

/// The page's pictures as `--thumbnails` asks: read and shrunk (embed), links (link), none.
/// Credentials are looked for only when the page shows an `oss://` photo; without them those
/// photos say why in their place and the rest of the page is written as ever.
async fn thumbnails(config: &ReportConfig, page: &Page) -> Thumbs {
    let wanted = page.thumbnail_sources(config.thumbnails, config.max_thumbnails);
    let linked = page.linked_objects(config.thumbnails);
    if !wanted.is_empty() {
        crate::say!(
            "face-enroll: report: {} rows, reading {} thumbnails",
            page.figures.rows,
            wanted.len()
        );
    }
    let objects = wanted.iter().any(|(_, s)| *s == Source::Object) || !linked.is_empty();
    let client = match objects {
        true => oss_client(config).await,
        false => Err(ReachError::NotNeeded),
    };
    if let Err(e) = &client
        && objects
    {
        crate::say!("face-enroll: report: oss:// photos not shown: {e}");
    }
    let why = client.as_ref().map_err(ToString::to_string);
    let oss = why.as_ref().map(|c| *c).map_err(String::as_str);
    match config.thumbnails {
        ThumbMode::Embed => fetch_thumbnails(wanted, oss).await,
        ThumbMode::Link => sign_links(linked, oss).await,
        ThumbMode::None => Thumbs::default(),
    }
}

/// Why `oss://` photos cannot be read or linked for the page.
#[derive(Debug, thiserror::Error)]
enum ReachError {
    #[error("the page shows no oss:// photo")]
    NotNeeded,
    #[error(
        "the built-in sandbox's OSS lasted only as long as its run; point --endpoint and \
         --oss-endpoint at a standalone sandbox that holds the objects"
    )]
    BuiltInSandbox,
    #[error("{0}")]
    Connect(#[from] crate::connect::ConnectError),
    #[error("{0}")]
    Usage(#[from] crate::exit::UsageError),
}

/// The client that signs the page's `oss://` reads and links: the credentials, region and OSS
/// settings a run would use.
async fn oss_client(config: &ReportConfig) -> Result<crate::api::Client, ReachError> {
    if config.sandbox && config.connect.endpoint.is_none() {
        return Err(ReachError::BuiltInSandbox);
    }
    let connected = crate::connect::connect(&config.connect, config.target).await?;
    let links = config.oss.links(&connected.region, None)?;
    connected.client.set_oss_links(links);
    Ok(connected.client)
}

/// An image's last state, as its last ledger record says; texts interned.
#[derive(Clone, Debug)]
struct Last {
    status: Status,
    adopted: bool,
    retryable: bool,
    attempts: Option<u32>,
    /// Indexes into `Texts` (0: none).
    code: u32,
    reason: u32,
    server_id: Option<Box<str>>,
    /// Named by a row of the manifest (set while the manifest is read).
    named: bool,
}

/// Strings that repeat (codes, service messages), kept once.
struct Texts {
    all: Vec<String>,
    index: HashMap<String, u32>,
}

impl Default for Texts {
    fn default() -> Self {
        Texts {
            all: vec![String::new()],
            index: HashMap::new(),
        }
    }
}

impl Texts {
    fn intern(&mut self, text: Option<&str>) -> u32 {
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            return 0;
        };
        if let Some(&i) = self.index.get(text) {
            return i;
        }
        let i = self.all.len() as u32;
        self.all.push(text.to_string());
        self.index.insert(text.to_string(), i);
        i
    }

    fn get(&self, i: u32) -> Option<String> {
        (i != 0).then(|| self.all[i as usize].clone())
    }
}

/// What the first pass over the ledger learns.
#[derive(Default)]
struct Ledger {
    images: KeyMap<Last>,
    /// For images recorded under an `image_key`: the key their URL alone would give → the key
    /// they were recorded by (a manifest that added, dropped or changed the column since).
    by_url: KeyMap<u128>,
    texts: Texts,
    runs: Vec<RunLine>,
    /// Run id → index in `runs`.
    run_index: HashMap<String, usize>,
    /// Per run (as `runs`): the Unix second of each registration, and of those that took
    /// more than one attempt.
    registered_at: Vec<(Vec<u32>, Vec<u32>)>,
    copies_removed: u64,
    endpoint: Option<String>,
    /// The target of the last run that says, as the page names it.
    target: Option<String>,
}

impl Ledger {
    fn add(&mut self, entry: Entry<'_, '_>) {
        match entry {
            Entry::Image(image) => {
                let v = image.view;
                let last = Last {
                    status: image.status,
                    adopted: v.adopted == Some(true),
                    retryable: v.retryable == Some(true),
                    attempts: v.attempts,
                    code: self.texts.intern(v.error_code.as_deref()),
                    reason: self
                        .texts
                        .intern(v.message.as_deref().or(v.reason.as_deref())),
                    server_id: image.server_id().map(Box::from),
                    named: false,
                };
                let key = image.key();
                if v.image_key.is_some() {
                    let url_only = ImageId::new(image.image_url, None);
                    let alias = url_only.key(image.category_id, image.person_id);
                    self.by_url.insert(alias, key);
                }
                if image.status == Status::Registered && v.adopted != Some(true) {
                    let at = crate::clock::unix_seconds(v.ts.as_deref().unwrap_or_default());
                    let slot = self.run_slot(image.run());
                    let (all, retried) = &mut self.registered_at[slot];
                    all.push(at);
                    if v.attempts.is_some_and(|n| n > 1) {
                        retried.push(at);
                    }
                }
                self.images.insert(key, last);
            }
            Entry::Run(view) => self.run(view),
            Entry::Person(view) => {
                if view.kind == Some(ledger::record::LineKind::Copy) {
                    self.copies_removed += 1;
                }
            }
            Entry::Object(_) | Entry::Upload(_) | Entry::Checked(_) => {}
        }
    }

    /// The key the ledger knows a row's image by: its own, else the one recorded for its URL
    /// (under an `image_key` the row no longer has, or without the one it has now).
    fn recorded_key(&self, key: u128, row: &manifest::Row) -> u128 {
        if self.images.contains_key(&key) {
            return key;
        }
        let url_only = ImageId::new(&row.image.source, None).key(&row.category_id, &row.person_id);
        if self.images.contains_key(&url_only) {
            return url_only;
        }
        self.by_url.get(&url_only).copied().unwrap_or(key)
    }

    /// The index of run `run` in `runs`, added when first seen.
    fn run_slot(&mut self, run: &str) -> usize {
        if let Some(&slot) = self.run_index.get(run) {
            return slot;
        }
        self.runs.push(RunLine {
            span: RunSpan {
                run: run.to_string(),
                ..RunSpan::default()
            },
            ..RunLine::default()
        });
        self.registered_at.push(Default::default());
        self.run_index.insert(run.to_string(), self.runs.len() - 1);
        self.runs.len() - 1
    }

    fn run(&mut self, view: &View<'_>) {
        let text = |t: &Option<std::borrow::Cow<'_, str>>| t.as_deref().map(str::to_string);
        let slot = self.run_slot(view.run());
        let line = &mut self.runs[slot];
        if view.kind == Some(ledger::record::LineKind::RunStart) {
            if let Some(endpoint) = view.endpoint.as_deref() {
                self.endpoint = Some(host_of(endpoint));
            }
            match view.target {
                Some(ledger::TargetName::Ice) => {
                    let algorithm = view.algorithm.as_deref().unwrap_or("face");
                    self.target = Some(format!("ICE recognition libraries ({algorithm})"));
                }
                Some(ledger::TargetName::Mts) => self.target = Some(MTS.to_string()),
                None => {}
            }
            line.span.command = text(&view.command);
            line.span.started = text(&view.ts);
            return;
        }
        line.span.ended = text(&view.ts);
        line.span.outcome = text(&view.outcome);
        line.span.exit_code = view.exit_code;
        let figure = |name: &str| view.summary.as_ref().and_then(|s| s[name].as_u64());
        line.throttled = figure("throttled");
        line.retries = figure("retries");
    }

    /// The runs, each with its registrations per second.
    fn finish_runs(&mut self) -> Vec<RunLine> {
        let mut runs = std::mem::take(&mut self.runs);
        for (run, (all, retried)) in runs.iter_mut().zip(self.registered_at.drain(..)) {
            let start = run.span.started.as_deref().map(crate::clock::unix_seconds);
            run.rate = Rate::of(start, &all, &retried);
        }
        runs
    }
}

/// The host (and port) of an endpoint URL: where the import went, without path or query.
fn host_of(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_string()
}

/// Reads the ledger and the manifest into the page (blocking).
pub fn gather(config: &ReportConfig) -> Result<Page, super::OpsError> {
    let mut known = Ledger::default();
    ledger::scan(&config.ledger, true, |entry| known.add(entry))?;
    let mut book = Book::default();
    let reader = manifest::Reader::open(&config.manifest, &config.read)?;
    // Local paths in image cells are relative to the manifest's folder.
    let base = reader.columns().base.clone();
    let reader = reader.read_ahead();
    let mut seen: KeyMap<u64> = KeyMap::default();
    for entry in reader {
        match entry? {
            manifest::Entry::Valid(row) => {
                let key = row.image_id().key(&row.category_id, &row.person_id);
                let photo = match seen.get(&key) {
                    Some(&first) => Photo {
                        line: Some(row.line),
                        url: row.image.source.clone(),
                        badge: Badge::Duplicate,
                        reason: Some(format!("the same image as line {first}; sent once")),
                        ..Photo::default()
                    },
                    None => {
                        seen.insert(key, row.line);
                        let key = known.recorded_key(key, &row);
                        let last = known.images.get_mut(&key);
                        photo_of(row.line, &row.image.source, last, &known.texts)
                    }
                };
                book.add(&row.category_id, &row.person_id, row.person_name, photo);
            }
            manifest::Entry::Invalid(row) => {
                // The ledger's record of this row (if any) is this row's, not a leftover.
                let id = ImageId::new(&row.image_url, None);
                if let Some(last) = known
                    .images
                    .get_mut(&id.key(&row.category_id, &row.person_id))
                {
                    last.named = true;
                }
                let photo = local_photo(&row, &base).unwrap_or_else(|| Photo {
                    line: Some(row.line),
                    url: row.image_url.clone(),
                    badge: Badge::Invalid,
                    code: row.column.map(|c| format!("column {c}")),
                    reason: Some(row.reason.clone()),
                    ..Photo::default()
                });
                book.add(&row.category_id, &row.person_id, None, photo);
            }
        }
    }
    drop(seen);
    let rows = book.rows;
    if known.images.values().any(|l| !l.named) {
        add_unnamed(config, &mut known, &mut book)?;
    }
    let libraries = book.finish();
    let figures = Figures::count(rows, &libraries, known.copies_removed);
    let mut runs = known.finish_runs();
    let shown_from = runs.len().saturating_sub(RUNS_SHOWN);
    let mut page = Page {
        manifest: config.manifest.display().to_string(),
        ledger: config.ledger.display().to_string(),
        // The ledger's word first: it says where the import went whatever --target says.
        target: known.target.take().unwrap_or_else(|| match config.target {
            crate::backend::TargetKind::Mts => MTS.to_string(),
            crate::backend::TargetKind::Ice(a) => format!("ICE recognition libraries ({a})"),
        }),
        endpoint: known.endpoint,
        generated: crate::clock::now_rfc3339(),
        runs_hidden: shown_from,
        runs: runs.split_off(shown_from),
        libraries,
        figures,
    };
    page.cap_cards(config.max_cards);
    Ok(page)
}

/// A row the manifest reader refused only because it names a local file no run has uploaded
/// (or that changed since): `pending` when an upload would take the file, `invalid` with the
/// upload's reason when it would not (unreadable, too large, not a whole JPEG or PNG). `None`
/// for every other invalid row.
fn local_photo(row: &manifest::InvalidRow, base: &std::path::Path) -> Option<Photo> {
    if row.column != Some("image_url") {
        return None;
    }
    let path = manifest::local_path(row.image_url.trim(), base)?;
    let mut photo = Photo {
        line: Some(row.line),
        url: row.image_url.clone(),
        ..Photo::default()
    };
    match crate::upload::read_local_photo(&path) {
        Ok(_) => {
            photo.badge = Badge::Pending;
            photo.reason = Some("local photo, not uploaded yet".to_string());
            photo.note = Some(
                "run --upload-to oss://BUCKET/PREFIX/ uploads it, then registers it".to_string(),
            );
            photo.file = Some(path);
        }
        Err(why) => {
            photo.badge = Badge::Invalid;
            photo.code = Some("column image_url".to_string());
            photo.reason = Some(format!("local photo that would not be uploaded: {why}"));
        }
    }
    Some(photo)
}

/// A row's photo from its image's last record (`None`: the ledger has never seen it).
fn photo_of(line: u64, url: &str, last: Option<&mut Last>, texts: &Texts) -> Photo {
    let mut photo = Photo {
        line: Some(line),
        url: url.to_string(),
        ..Photo::default()
    };
    let Some(last) = last else {
        photo.badge = Badge::Pending;
        photo.reason = Some("not sent yet".into());
        return photo;
    };
    last.named = true;
    fill(&mut photo, last, texts);
    if last.status == Status::Removed {
        // Removed (a rollback, a repair) while the manifest still names it.
        photo.note = Some("the next run registers it again".to_string());
    }
    photo
}

fn fill(photo: &mut Photo, last: &Last, texts: &Texts) {
    photo.badge = match last.status {
        Status::Registered if last.adopted => Badge::Adopted,
        Status::Registered => Badge::Registered,
        Status::Failed => Badge::Failed,
        Status::Invalid => Badge::Invalid,
        Status::Skipped => Badge::Skipped,
        Status::Pending => Badge::Pending,
        Status::Removing | Status::Removed => Badge::Removed,
    };
    photo.code = texts.get(last.code);
    photo.reason = texts.get(last.reason);
    photo.server_id = last.server_id.as_deref().map(str::to_string);
    photo.attempts = last.attempts;
    photo.note = match last.status {
        Status::Failed if last.retryable => Some("retries ran out; the next run sends it again"),
        Status::Failed => Some("refused; sent again only with run --retry-failed"),
        Status::Pending => Some("sent, answer unknown; the next run looks it up"),
        Status::Removing => Some("a removal was sent; its outcome is not known"),
        _ => None,
    }
    .map(str::to_string);
}

/// Second pass: images the ledger knows that no row of the manifest names (removed by a sync,
/// or dropped from the manifest), shown in their person's card without a line.
fn add_unnamed(
    config: &ReportConfig,
    known: &mut Ledger,
    book: &mut Book,
) -> Result<(), super::OpsError> {
    let mut found: Vec<(u128, String, String, Option<String>, String)> = Vec::new();
    let mut taken: KeyMap<()> = KeyMap::default();
    ledger::scan(&config.ledger, true, |entry| {
        let Entry::Image(image) = entry else { return };
        let key = image.key();
        if known.images.get(&key).is_some_and(|l| !l.named) && taken.insert(key, ()).is_none() {
            found.push((
                key,
                image.category_id.to_string(),
                image.person_id.to_string(),
                image.view.person_name.as_deref().map(str::to_string),
                image.image_url.to_string(),
            ));
        }
    })?;
    for (key, category, person, name, url) in found {
        let Some(last) = known.images.get(&key) else {
            continue;
        };
        let mut photo = Photo {
            url,
            ..Photo::default()
        };
        fill(&mut photo, last, &known.texts);
        let not_named = "not in this manifest";
        photo.note = Some(match photo.note.take() {
            Some(note) => format!("{not_named}; {note}"),
            None => not_named.to_string(),
        });
        book.add(&category, &person, name, photo);
    }
    Ok(())
}

/// Libraries and persons in the order the manifest first names them.
#[derive(Default)]
struct Book {
    libraries: Vec<Library>,
    library_index: HashMap<String, usize>,
    /// Person key → (library index, person index).
    person_index: KeyMap<(usize, usize)>,
    rows: u64,
}

impl Book {
    fn add(&mut self, category: &str, person: &str, name: Option<String>, photo: Photo) {
        if photo.line.is_some() {
            self.rows += 1;
        }
        let key = person_key(category, person);
        let (lib, at) = match self.person_index.get(&key) {
            Some(&slot) => slot,
            None => {
                let next = self.libraries.len();
                let lib = *self.library_index.entry(fold_id(category)).or_insert(next);
                if lib == next {
                    self.libraries.push(Library {
                        name: category.trim().to_string(),
                        persons: Vec::new(),
                    });
                }
                let persons = &mut self.libraries[lib].persons;
                persons.push(Person {
                    id: person.trim().to_string(),
                    ..Person::default()
                });
                self.person_index.insert(key, (lib, persons.len() - 1));
                (lib, persons.len() - 1)
            }
        };
        let person = &mut self.libraries[lib].persons[at];
        if person.name.is_none() {
            person.name = name.filter(|n| !n.trim().is_empty());
        }
        person.photos.push(photo);
    }

    /// The libraries, each with its persons that have a problem first (else in manifest order).
    fn finish(self) -> Vec<Library> {
        let mut libraries = self.libraries;
        for library in &mut libraries {
            library.persons.sort_by_key(|p| !p.has_problem());
        }
        libraries
    }
}

/// The command's flags, lowered once into its validated config.
impl crate::cli::ops::ReportArgs {
    pub fn config(&self) -> Result<ReportConfig, crate::exit::UsageError> {
        let manifest = Some(self.manifest.clone());
        let ledger = crate::cli::ops::ledger_for(
            &self.ledger,
            &manifest,
            &self.target,
            self.sandbox,
            "report",
        )?;
        let output = self
            .output
            .clone()
            .unwrap_or_else(|| self.manifest.with_extension("report.html"));
        let lock = crate::ledger::lock_path(&ledger);
        crate::report::refuse_clobbering(
            "-o",
            &output,
            &[ledger.as_path(), lock.as_path(), self.manifest.as_path()],
        )?;
        // The page holds faces and names: it is never written where a link points.
        if std::fs::symlink_metadata(&output).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(crate::exit::UsageError::new(format!(
                "-o {}: that is a symbolic link; the report holds faces and names and is never \
                 written through a link. Name the file itself",
                output.display()
            )));
        }
        Ok(ReportConfig {
            manifest: self.manifest.clone(),
            ledger,
            output,
            thumbnails: match self.thumbnails {
                crate::cli::ops::ThumbnailsArg::Embed => ThumbMode::Embed,
                crate::cli::ops::ThumbnailsArg::Link => ThumbMode::Link,
                crate::cli::ops::ThumbnailsArg::None => ThumbMode::None,
            },
            max_thumbnails: self.max_thumbnails,
            max_cards: self.max_cards,
            target: self.target.kind(),
            sandbox: self.sandbox,
            connect: self.connect.settings()?,
            oss: {
                self.oss.check()?;
                self.oss.clone()
            },
            read: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{ImageRecord, Record, encode};

    fn record(status: Status, person: &str, url: &str, code: Option<&str>) -> Vec<u8> {
        let mut r = ImageRecord::new("run-1", status, "lib", person, url);
        r.error_code = code.map(str::to_string);
        r.message = code.map(|_| "exactly one frontal face required.".to_string());
        r.face_id = (status == Status::Registered).then(|| format!("face-{url}"));
        let mut out = Vec::new();
        encode(&Record::Image(r), &mut out);
        out
    }

    #[test]
    fn every_row_gets_its_images_last_state_and_a_person_with_a_refusal_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("m.csv");
        std::fs::write(
            &manifest,
            "category_id,person_id,person_name,image_url\n\
             lib,alice,Alice,https://x.example.com/a1.jpg\n\
             lib,bob,Bob,https://x.example.com/b1.jpg\n\
             lib,bob,Bob,https://x.example.com/b2.jpg\n\
             lib,carol,Carol,ftp://nowhere/c.jpg\n\
             lib,alice,Alice,https://x.example.com/a1.jpg\n",
        )
        .unwrap();
        let ledger = dir.path().join("m.ledger.jsonl");
        let mut bytes = record(
            Status::Pending,
            "alice",
            "https://x.example.com/a1.jpg",
            None,
        );
        bytes.extend(record(
            Status::Registered,
            "alice",
            "https://x.example.com/a1.jpg",
            None,
        ));
        bytes.extend(record(
            Status::Failed,
            "bob",
            "https://x.example.com/b1.jpg",
            Some("InvalidParameter.ImageUrl"),
        ));
        bytes.extend(record(
            Status::Removed,
            "dave",
            "https://x.example.com/d.jpg",
            None,
        ));
        std::fs::write(&ledger, bytes).unwrap();
        let config = ReportConfig {
            manifest,
            ledger,
            output: dir.path().join("r.html"),
            thumbnails: ThumbMode::None,
            max_thumbnails: 10,
            max_cards: 0,
            target: crate::backend::TargetKind::Mts,
            sandbox: false,
            connect: crate::connect::Settings::default(),
            oss: crate::cli::OssArgs {
                oss_region: None,
                oss_endpoint: None,
                link_ttl: std::time::Duration::from_secs(3600),
            },
            read: Default::default(),
        };
        let page = gather(&config).unwrap();
        let persons: Vec<&str> = page.libraries[0]
            .persons
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(persons, ["bob", "carol", "alice", "dave"]);
        let badges = |id: &str| -> Vec<Badge> {
            let person = page.libraries[0].persons.iter().find(|p| p.id == id);
            person.unwrap().photos.iter().map(|p| p.badge).collect()
        };
        assert_eq!(badges("alice"), [Badge::Registered, Badge::Duplicate]);
        assert_eq!(badges("bob"), [Badge::Failed, Badge::Pending]);
        assert_eq!(badges("carol"), [Badge::Invalid]);
        assert_eq!(badges("dave"), [Badge::Removed]);
        let bob = &page.libraries[0].persons[0];
        assert_eq!(bob.name.as_deref(), Some("Bob"));
        assert_eq!(
            bob.photos[0].code.as_deref(),
            Some("InvalidParameter.ImageUrl")
        );
        assert_eq!(page.figures.rows, 5);
    }

    #[test]
    fn the_endpoint_is_shown_as_its_host_only() {
        assert_eq!(
            host_of("https://mts.cn-shanghai.aliyuncs.com/?a=b"),
            "mts.cn-shanghai.aliyuncs.com"
        );
        assert_eq!(host_of("http://127.0.0.1:8686/"), "127.0.0.1:8686");
        assert_eq!(host_of("https://u:p@h.example.com/x"), "h.example.com");
    }
}
