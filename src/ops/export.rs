//! `face-enroll export`: one row per image whose last ledger record is `registered`, with its
//! FaceId, for other systems — CSV (safe to open in a spreadsheet) or JSON Lines (exact).
//!
//! CSV cells that start with `=`, `+`, `-`, `@`, a tab or a carriage return get a leading `'`,
//! so a spreadsheet shows them as text instead of evaluating them as a formula (CSV injection).
//! JSON Lines values are never changed.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::exit::Exit;
use crate::ledger::{self as scan, Entry};
use crate::ledger::{KeyMap, Status};
use crate::manifest::fold_id;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

/// Validated flags of `export`.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    pub ledger: PathBuf,
    pub format: Format,
    /// `None`: standard output.
    pub output: Option<PathBuf>,
}

/// One registered image, as exported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    pub category_id: String,
    pub person_id: String,
    pub person_name: Option<String>,
    pub image_url: String,
    pub face_id: Option<String>,
    pub registered_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lib_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_id: Option<String>,
}

pub async fn execute(config: ExportConfig) -> Exit {
    let result = super::blocking(move || {
        let rows = collect(&config)?;
        let bytes = match config.format {
            Format::Csv => to_csv(&rows),
            Format::Jsonl => to_jsonl(&rows),
        };
        match &config.output {
            Some(path) => crate::report::write_atomically(path, &bytes).map_err(|source| {
                super::OpsError::Write {
                    what: path.display().to_string(),
                    source,
                }
            })?,
            None => std::io::stdout()
                .lock()
                .write_all(&bytes)
                .map_err(|source| super::OpsError::Write {
                    what: "standard output".into(),
                    source,
                })?,
        }
        Ok(rows.len())
    })
    .await;
    match result {
        Ok(n) => {
            tracing::debug!(rows = n, "exported");
            Exit::Success
        }
        Err(e) => {
            crate::say!("face-enroll: {e}");
            e.exit()
        }
    }
}

/// The registered images, sorted by library, person (both case-insensitively) and URL, so two
/// exports of the same ledger state are identical whatever order the run registered them in.
pub fn collect(config: &ExportConfig) -> Result<Vec<Row>, super::OpsError> {
    // An image that stops being registered empties its slot.
    let mut slots: Vec<Option<Row>> = Vec::new();
    let mut index: KeyMap<usize> = KeyMap::default();
    scan::scan(&config.ledger, false, |entry| {
        let Entry::Image(image) = entry else { return };
        let key = image.key();
        let slot = index.get(&key).copied();
        if image.status != Status::Registered {
            if let Some(at) = slot {
                slots[at] = None;
            }
            return;
        }
        let v = image.view;
        let text = |s: &Option<std::borrow::Cow<'_, str>>| s.as_deref().map(str::to_string);
        let row = Row {
            category_id: image.category_id.to_string(),
            person_id: image.person_id.to_string(),
            person_name: text(&v.person_name),
            image_url: image.image_url.to_string(),
            face_id: text(&v.face_id),
            registered_at: v.ts.as_deref().unwrap_or_default().to_string(),
            lib_id: text(&v.lib_id),
            entity_id: text(&v.entity_id),
            sample_id: text(&v.sample_id),
        };
        match slot {
            Some(at) => slots[at] = Some(row),
            None => {
                index.insert(key, slots.len());
                slots.push(Some(row));
            }
        }
    })?;
    let mut rows: Vec<Row> = slots.into_iter().flatten().collect();
    rows.sort_by_cached_key(|r| {
        (
            fold_id(&r.category_id),
            fold_id(&r.person_id),
            r.image_url.clone(),
        )
    });
    Ok(rows)
}

/// A cell a spreadsheet would not take for a formula.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

pub fn to_csv(rows: &[Row]) -> Vec<u8> {
    let ice = rows
        .iter()
        .any(|r| r.lib_id.is_some() || r.entity_id.is_some() || r.sample_id.is_some());
    let mut header = vec![
        "category_id",
        "person_id",
        "person_name",
        "image_url",
        "face_id",
        "registered_at",
    ];
    if ice {
        header.extend(["lib_id", "entity_id", "sample_id"]);
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(&header);
    for r in rows {
        let mut cells = vec![
            r.category_id.as_str(),
            r.person_id.as_str(),
            r.person_name.as_deref().unwrap_or_default(),
            r.image_url.as_str(),
            r.face_id.as_deref().unwrap_or_default(),
            r.registered_at.as_str(),
        ];
        if ice {
            cells.extend([
                r.lib_id.as_deref().unwrap_or_default(),
                r.entity_id.as_deref().unwrap_or_default(),
                r.sample_id.as_deref().unwrap_or_default(),
            ]);
        }
        let _ = writer.write_record(cells.iter().map(|c| neutralise(c).into_owned()));
    }
    writer.into_inner().unwrap_or_default()
}

pub fn to_jsonl(rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        let _ = serde_json::to_writer(&mut out, r);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starters_are_neutralised_and_other_cells_are_untouched() {
        for bad in ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise(bad), format!("'{bad}"));
        }
        for good in ["alice", "", "1-2", "https://x/=y"] {
            assert_eq!(neutralise(good), good);
        }
    }

    #[test]
    fn ice_columns_appear_only_when_some_row_has_them() {
        let mts = Row {
            category_id: "c".into(),
            face_id: Some("f".into()),
            ..Row::default()
        };
        let csv = String::from_utf8(to_csv(std::slice::from_ref(&mts))).unwrap();
        assert!(!csv.contains("sample_id"));
        let ice = Row {
            sample_id: Some("s".into()),
            ..mts.clone()
        };
        let csv = String::from_utf8(to_csv(&[mts, ice])).unwrap();
        assert!(
            csv.lines()
                .next()
                .unwrap()
                .ends_with("lib_id,entity_id,sample_id")
        );
    }
}
