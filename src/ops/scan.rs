//! Streaming the ledger for the operator commands: one borrowed view per line, handed to a
//! callback and dropped, so a ledger of millions of lines is read in constant memory.
//!
//! Same tolerance as `ledger::replay`: a torn last line is skipped (and measured, so a writer can
//! cut it off); any other unreadable line is an error naming file, line and column.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;

use crate::ledger::{LedgerError, SCHEMA_VERSION, Status};

/// The fields the operator commands read, borrowed from the line when it holds no escapes.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct View<'a> {
    pub v: Option<u32>,
    #[serde(borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub ts: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub run: Option<Cow<'a, str>>,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(borrow, default)]
    pub category_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub person_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub image_url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub person_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub face_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub target: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub lib_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub entity_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub sample_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub command: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub outcome: Option<Cow<'a, str>>,
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// One complete image record: the four fields every image record has, checked.
pub(crate) struct Image<'v, 'a> {
    pub view: &'v View<'a>,
    pub status: Status,
    pub category_id: &'v str,
    pub person_id: &'v str,
    pub image_url: &'v str,
}

impl Image<'_, '_> {
    /// The record is about the MTS service (absent `target` means MTS).
    pub fn is_mts(&self) -> bool {
        self.view
            .target
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("mts"))
    }

    pub fn run(&self) -> &str {
        self.view.run.as_deref().unwrap_or_default()
    }

    pub fn face_id(&self) -> Option<&str> {
        self.view.face_id.as_deref()
    }
}

/// What the callback is given for each line.
pub(crate) enum Entry<'v, 'a> {
    Image(Image<'v, 'a>),
    /// `run_start` or `run_end`.
    Run(&'v View<'a>),
}

/// What a scan measured.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scanned {
    pub lines: u64,
    /// Bytes at the end that form no complete line; an appender cuts them off first.
    pub torn_tail: u64,
}

/// Streams the ledger at `path` through `each`. A missing file is an empty ledger when
/// `missing_ok`, else an `Open` error.
pub(crate) fn scan(
    path: &Path,
    missing_ok: bool,
    each: impl FnMut(Entry<'_, '_>),
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
    scan_from(path, BufReader::with_capacity(1 << 20, file), each)
}

pub(crate) fn scan_from(
    path: &Path,
    mut reader: impl BufRead,
    mut each: impl FnMut(Entry<'_, '_>),
) -> Result<Scanned, LedgerError> {
    let mut scanned = Scanned::default();
    let mut buf = Vec::with_capacity(512);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| LedgerError::Read {
                path: path.into(),
                source,
            })?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            scanned.torn_tail = n as u64;
            break;
        }
        scanned.lines += 1;
        apply(path, scanned.lines, &buf, &mut each)?;
    }
    Ok(scanned)
}

fn apply(
    path: &Path,
    line: u64,
    raw: &[u8],
    each: &mut impl FnMut(Entry<'_, '_>),
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
    let view: View = serde_json::from_slice(text)
        .map_err(|e| corrupt(e.column() as u64, format!("not a ledger record ({e})")))?;
    let version = view
        .v
        .ok_or_else(|| corrupt(1, "the record has no version field \"v\"".into()))?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::TooNew {
            path: path.into(),
            line,
            version,
        });
    }
    match view.kind.as_deref() {
        Some("image") => {}
        Some("run_start" | "run_end") => {
            each(Entry::Run(&view));
            return Ok(());
        }
        // Kinds from later versions of the same schema are not ours to interpret.
        _ => return Ok(()),
    }
    let (Some(category_id), Some(person_id), Some(image_url), Some(status)) = (
        view.category_id.as_deref(),
        view.person_id.as_deref(),
        view.image_url.as_deref(),
        view.status,
    ) else {
        return Err(corrupt(
            1,
            "an image record needs category_id, person_id, image_url and status".into(),
        ));
    };
    each(Entry::Image(Image {
        view: &view,
        status,
        category_id,
        person_id,
        image_url,
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_bytes(bytes: &[u8]) -> Result<(Scanned, Vec<String>), LedgerError> {
        let mut seen = Vec::new();
        let scanned = scan_from(Path::new("t.jsonl"), bytes, |entry| match entry {
            Entry::Image(i) => seen.push(format!("{}:{}", i.status.as_str(), i.image_url)),
            Entry::Run(r) => seen.push(r.kind.as_deref().unwrap_or_default().to_string()),
        })?;
        Ok((scanned, seen))
    }

    #[test]
    fn every_complete_line_is_seen_in_order_and_a_torn_tail_is_measured() {
        let bytes = b"{\"v\":1,\"kind\":\"run_start\",\"ts\":\"t\",\"run\":\"r\"}\n\
{\"v\":1,\"kind\":\"image\",\"ts\":\"t\",\"run\":\"r\",\"status\":\"registered\",\"category_id\":\"c\",\"person_id\":\"p\",\"image_url\":\"u\\u0041\",\"face_id\":\"f\"}\n\
{\"v\":1,\"kind\":\"ima";
        let (scanned, seen) = scan_bytes(bytes).unwrap();
        assert_eq!(seen, ["run_start", "registered:uA"]);
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
}
