//! The one reader of the ledger: every command (replay before a run, status, export, verify,
//! rollback) streams it through here. One borrowed view per line, handed to a callback and
//! dropped, so a ledger of millions of lines is read in constant memory. The view is the wide
//! [`View`] (every field) for the commands, or a narrower one ([`ScanAs`]) for a reader that
//! needs few fields and many lines — replay before a run — through the same scan and checks.
//!
//! Only a torn *last* line is tolerated (skipped, and measured so a writer can cut it off); any
//! other unreadable line is an error naming file, line and column. A line longer than
//! [`MAX_LINE_BYTES`] is corruption too, and only regular files are read (never `/dev/zero`).

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;

use super::LedgerError;
use super::record::{ObjectKind, SCHEMA_VERSION, Status, TargetName};

/// The longest line a ledger may hold; the longest real record is a few kilobytes.
pub const MAX_LINE_BYTES: u64 = 1 << 20;

/// An optional string borrowed from the line when it holds no escapes. (serde borrows a
/// `Cow` only when it is the field itself: under an `Option` it would always allocate.)
fn borrowed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed>::deserialize(d)?.map(|b| b.0))
}

/// What kind of line this is; kinds from later versions of the schema are `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Image,
    RunStart,
    RunEnd,
    Created,
    Deleted,
    Copy,
    Settled,
    #[serde(other)]
    Other,
}

/// The fields any reader needs, borrowed from the line when it holds no escapes.
#[derive(Debug, Default, Deserialize)]
pub struct View<'a> {
    pub v: Option<u32>,
    #[serde(default)]
    pub kind: Option<LineKind>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub ts: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub run: Option<Cow<'a, str>>,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub category_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub person_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub image_url: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub image_key: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub person_name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub face_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub recovered: Option<bool>,
    #[serde(default)]
    pub adopted: Option<bool>,
    #[serde(default)]
    pub recheck: Option<bool>,
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub error_code: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub message: Option<Cow<'a, str>>,
    #[serde(default)]
    pub retryable: Option<bool>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub target: Option<TargetName>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub algorithm: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub lib_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub entity_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub sample_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub command: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub manifest: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub endpoint: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub outcome: Option<Cow<'a, str>>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub object: Option<ObjectKind>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub name: Option<Cow<'a, str>>,
}

/// The few fields replay before a run needs (every other field of a line is skipped unread):
/// the image's identity and state, and the run records' bookends.
#[derive(Debug, Default, Deserialize)]
pub struct ReplayView<'a> {
    pub v: Option<u32>,
    #[serde(default)]
    pub kind: Option<LineKind>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub ts: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub run: Option<Cow<'a, str>>,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub category_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub person_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub image_url: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub image_key: Option<Cow<'a, str>>,
    #[serde(default)]
    pub retryable: Option<bool>,
    #[serde(default)]
    pub recheck: Option<bool>,
    #[serde(default)]
    pub target: Option<TargetName>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub algorithm: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub command: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub manifest: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub endpoint: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub outcome: Option<Cow<'a, str>>,
    #[serde(default)]
    pub exit_code: Option<i32>,
}

impl ReplayView<'_> {
    pub fn run(&self) -> &str {
        self.run.as_deref().unwrap_or_default()
    }
}

/// Scans into the narrow [`ReplayView`].
pub struct Narrow;

impl ScanAs for Narrow {
    type View<'a> = ReplayView<'a>;
}

/// The scan's accessors for a view type: both views name these fields alike.
macro_rules! line_view {
    ($view:ident) => {
        impl<'a> LineView<'a> for $view<'a> {
            fn version(&self) -> Option<u32> {
                self.v
            }
            fn kind(&self) -> Option<LineKind> {
                self.kind
            }
            fn status(&self) -> Option<Status> {
                self.status
            }
            fn image_ids(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
                (
                    self.category_id.as_deref(),
                    self.person_id.as_deref(),
                    self.image_url.as_deref(),
                )
            }
            fn image_key(&self) -> Option<&str> {
                self.image_key.as_deref()
            }
        }
    };
}

line_view!(ReplayView);

/// What the scan itself needs of a line's view, whichever view it is.
pub trait LineView<'a>: Deserialize<'a> {
    fn version(&self) -> Option<u32>;
    fn kind(&self) -> Option<LineKind>;
    fn status(&self) -> Option<Status>;
    /// `category_id`, `person_id`, `image_url`.
    fn image_ids(&self) -> (Option<&str>, Option<&str>, Option<&str>);
    fn image_key(&self) -> Option<&str>;
}

/// A view type a scan decodes every line into (a type with a lifetime per line).
pub trait ScanAs {
    type View<'a>: LineView<'a>;
}

/// Scans into the wide [`View`].
pub struct Wide;

impl ScanAs for Wide {
    type View<'a> = View<'a>;
}

line_view!(View);

impl View<'_> {
    pub fn run(&self) -> &str {
        self.run.as_deref().unwrap_or_default()
    }

    /// The record is about the MTS service (absent `target` means MTS).
    pub fn is_mts(&self) -> bool {
        self.target.is_none_or(|t| t == TargetName::Mts)
    }
}

/// One complete image record: the four fields every image record has, checked.
pub struct Image<'v, 'a, V = View<'a>> {
    pub view: &'v V,
    pub status: Status,
    pub category_id: &'v str,
    pub person_id: &'v str,
    pub image_url: &'v str,
    _line: std::marker::PhantomData<&'a ()>,
}

impl<'a, V: LineView<'a>> Image<'_, 'a, V> {
    /// What makes the image this image: its recorded `image_key`, else its URL.
    pub fn identity(&self) -> &str {
        self.view.image_key().unwrap_or(self.image_url)
    }

    /// The image's key (library, person, identity).
    pub fn key(&self) -> u128 {
        crate::manifest::image_key(self.category_id, self.person_id, self.identity())
    }
}

impl Image<'_, '_> {
    pub fn is_mts(&self) -> bool {
        self.view.is_mts()
    }

    pub fn run(&self) -> &str {
        self.view.run()
    }

    pub fn face_id(&self) -> Option<&str> {
        self.view.face_id.as_deref()
    }

    /// The server's id of the image: FaceId (MTS) or SampleId (ICE).
    pub fn server_id(&self) -> Option<&str> {
        self.view
            .face_id
            .as_deref()
            .or(self.view.sample_id.as_deref())
    }
}

/// What the callback is given for each line.
pub enum Entry<'v, 'a, V = View<'a>> {
    Image(Image<'v, 'a, V>),
    /// `run_start` or `run_end`.
    Run(&'v V),
    /// ICE `created` or `deleted`.
    Object(&'v V),
    /// About a person, not one image's state: a late `copy` removed, a person `settled`.
    Person(&'v V),
}

/// What a scan measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scanned {
    pub lines: u64,
    /// Bytes at the end that form no complete line; an appender cuts them off first.
    pub torn_tail: u64,
}

/// Streams the ledger at `path` through `each`. A missing file is an empty ledger when
/// `missing_ok`, else an `Open` error.
pub fn scan(
    path: &Path,
    missing_ok: bool,
    each: impl FnMut(Entry<'_, '_>),
) -> Result<Scanned, LedgerError> {
    scan_as::<Wide>(path, missing_ok, each)
}

/// [`scan`] into the view `S` names.
pub fn scan_as<S: ScanAs>(
    path: &Path,
    missing_ok: bool,
    each: impl for<'v, 'a> FnMut(Entry<'v, 'a, S::View<'a>>),
) -> Result<Scanned, LedgerError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Scanned::default());
        }
        Err(source) => {
            return Err(LedgerError::Open {
                path: path.into(),
                source,
            });
        }
    };
    let is_file = file
        .metadata()
        .map_err(|source| LedgerError::Open {
            path: path.into(),
            source,
        })?
        .is_file();
    if !is_file {
        return Err(LedgerError::NotAFile { path: path.into() });
    }
    scan_from_as::<S>(path, BufReader::with_capacity(1 << 20, file), each)
}

pub fn scan_from(
    path: &Path,
    reader: impl BufRead,
    each: impl FnMut(Entry<'_, '_>),
) -> Result<Scanned, LedgerError> {
    scan_from_as::<Wide>(path, reader, each)
}

/// The one scanning loop: [`scan_from`] into the view `S` names.
pub fn scan_from_as<S: ScanAs>(
    path: &Path,
    mut reader: impl BufRead,
    mut each: impl for<'v, 'a> FnMut(Entry<'v, 'a, S::View<'a>>),
) -> Result<Scanned, LedgerError> {
    let mut scanned = Scanned::default();
    let mut buf = Vec::with_capacity(512);
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| LedgerError::Read {
                path: path.into(),
                source,
            })?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            if n as u64 > MAX_LINE_BYTES {
                return Err(LedgerError::Corrupt {
                    path: path.into(),
                    line: scanned.lines + 1,
                    column: 1,
                    problem: format!(
                        "a line longer than {MAX_LINE_BYTES} bytes: this is not a ledger"
                    ),
                });
            }
            scanned.torn_tail = n as u64;
            break;
        }
        scanned.lines += 1;
        apply::<S>(path, scanned.lines, &buf, &mut each)?;
    }
    Ok(scanned)
}

fn apply<S: ScanAs>(
    path: &Path,
    line: u64,
    raw: &[u8],
    each: &mut impl for<'v, 'a> FnMut(Entry<'v, 'a, S::View<'a>>),
) -> Result<(), LedgerError> {
    let text = raw.trim_ascii();
    if text.is_empty() {
        return Ok(());
    }
    let corrupt = |column: u64, problem: String| LedgerError::Corrupt {
        path: path.into(),
        line,
        column,
        problem,
    };
    // The line checked as UTF-8 at once (the fast whole-slice check), so the JSON parser need
    // not check each string again.
    let text = std::str::from_utf8(text).map_err(|e| {
        let column = text[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count();
        corrupt(
            column as u64 + 1,
            format!("not a ledger record (not UTF-8: {e})"),
        )
    })?;
    let view: S::View<'_> = serde_json::from_str(text)
        .map_err(|e| corrupt(e.column() as u64, format!("not a ledger record ({e})")))?;
    let version = view
        .version()
        .ok_or_else(|| corrupt(1, "the record has no version field \"v\"".into()))?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::TooNew {
            path: path.into(),
            line,
            version,
        });
    }
    match view.kind() {
        Some(LineKind::Image) => {}
        Some(LineKind::RunStart | LineKind::RunEnd) => {
            each(Entry::Run(&view));
            return Ok(());
        }
        Some(LineKind::Created | LineKind::Deleted) => {
            each(Entry::Object(&view));
            return Ok(());
        }
        Some(LineKind::Copy | LineKind::Settled) => {
            let (category_id, person_id, _) = view.image_ids();
            if category_id.is_none() || person_id.is_none() {
                return Err(corrupt(
                    1,
                    "a copy or settled record needs category_id and person_id".into(),
                ));
            }
            each(Entry::Person(&view));
            return Ok(());
        }
        // Kinds from later versions of the same schema are not ours to interpret.
        _ => return Ok(()),
    }
    let (Some(category_id), Some(person_id), Some(image_url)) = view.image_ids() else {
        return Err(missing_image_fields(path, line));
    };
    let Some(status) = view.status() else {
        return Err(missing_image_fields(path, line));
    };
    each(Entry::Image(Image {
        view: &view,
        status,
        category_id,
        person_id,
        image_url,
        _line: std::marker::PhantomData,
    }));
    Ok(())
}

fn missing_image_fields(path: &Path, line: u64) -> LedgerError {
    LedgerError::Corrupt {
        path: path.into(),
        line,
        column: 1,
        problem: "an image record needs category_id, person_id, image_url and status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_bytes(bytes: &[u8]) -> Result<(Scanned, Vec<String>), LedgerError> {
        let mut seen = Vec::new();
        let scanned = scan_from(Path::new("t.jsonl"), bytes, |entry| match entry {
            Entry::Image(i) => seen.push(format!("{}:{}", i.status.as_str(), i.image_url)),
            Entry::Run(r) => seen.push(format!("{:?}", r.kind)),
            Entry::Object(o) | Entry::Person(o) => seen.push(format!("{:?}", o.kind)),
        })?;
        Ok((scanned, seen))
    }

    #[test]
    fn every_complete_line_is_seen_in_order_and_a_torn_tail_is_measured() {
        let bytes = b"{\"v\":1,\"kind\":\"run_start\",\"ts\":\"t\",\"run\":\"r\"}\n\
{\"v\":1,\"kind\":\"image\",\"ts\":\"t\",\"run\":\"r\",\"status\":\"registered\",\"category_id\":\"c\",\"person_id\":\"p\",\"image_url\":\"u\\u0041\",\"face_id\":\"f\"}\n\
{\"v\":1,\"kind\":\"ima";
        let (scanned, seen) = scan_bytes(bytes).unwrap();
        assert_eq!(seen, ["Some(RunStart)", "registered:uA"]);
        assert_eq!(scanned.lines, 2);
        assert_eq!(scanned.torn_tail, 18);
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_an_error_and_a_newer_version_is_refused() {
        let bad = b"{\"v\":1,\"kind\":\"image\",oops}\n{\"v\":1}\n";
        assert!(matches!(
            scan_bytes(bad),
            Err(LedgerError::Corrupt { line: 1, .. })
        ));
        let newer = b"{\"v\":7,\"kind\":\"image\"}\n";
        assert!(matches!(
            scan_bytes(newer),
            Err(LedgerError::TooNew { version: 7, .. })
        ));
        let unknown_status = b"{\"v\":1,\"kind\":\"image\",\"status\":\"gone\",\"category_id\":\"c\",\"person_id\":\"p\",\"image_url\":\"u\"}\n";
        assert!(scan_bytes(unknown_status).is_err());
    }

    #[test]
    fn a_line_that_is_not_utf8_is_corruption_at_its_column() {
        let bad = b"{\"v\":1,\"kind\":\"image\",\"x\":\"\xff\"}\n{\"v\":1}\n";
        match scan_bytes(bad) {
            Err(LedgerError::Corrupt {
                line: 1,
                column: 28,
                problem,
                ..
            }) => assert!(problem.contains("UTF-8"), "{problem}"),
            other => panic!("expected Corrupt, got {:?}", other.map(|s| s.0)),
        }
    }

    #[test]
    fn a_line_over_the_cap_is_corruption_not_a_torn_tail() {
        let mut bytes = b"{\"v\":1,\"kind\":\"image\",\"x\":\"".to_vec();
        bytes.resize(MAX_LINE_BYTES as usize + 10, b'a');
        match scan_bytes(&bytes) {
            Err(LedgerError::Corrupt {
                line: 1, problem, ..
            }) => {
                assert!(problem.contains("longer than"), "{problem}")
            }
            other => panic!("expected Corrupt, got {:?}", other.map(|s| s.0)),
        }
    }

    #[test]
    fn strings_are_borrowed_from_the_line_unless_they_hold_escapes() {
        let line = br#"{"v":1,"kind":"image","image_url":"https://x/a.jpg","person_id":"a\u0041"}"#;
        let view: View = serde_json::from_slice(line).unwrap();
        assert!(matches!(
            view.image_url,
            Some(Cow::Borrowed("https://x/a.jpg"))
        ));
        assert!(matches!(view.person_id, Some(Cow::Owned(ref s)) if s == "aA"));
        let narrow: ReplayView = serde_json::from_slice(line).unwrap();
        assert!(matches!(narrow.image_url, Some(Cow::Borrowed(_))));
        assert_eq!(narrow.person_id.as_deref(), Some("aA"));
        let null: View = serde_json::from_slice(br#"{"v":1,"face_id":null}"#).unwrap();
        assert!(null.face_id.is_none());
    }

    #[test]
    fn a_ledger_that_is_not_a_regular_file_is_refused() {
        assert!(matches!(
            scan(Path::new("/dev/zero"), false, |_| {}),
            Err(LedgerError::NotAFile { .. })
        ));
    }

    #[test]
    fn created_and_deleted_records_reach_the_reader_as_objects() {
        let bytes = b"{\"v\":1,\"kind\":\"created\",\"ts\":\"t\",\"run\":\"r\",\"target\":\"ice\",\"algorithm\":\"face\",\"object\":\"lib\",\"name\":\"n\",\"lib_id\":\"L\"}\n";
        let (_, seen) = scan_bytes(bytes).unwrap();
        assert_eq!(seen, ["Some(Created)"]);
    }
}
