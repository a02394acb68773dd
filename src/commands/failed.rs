//! The rows not registered *now*, across runs: the last record of every image whose status is
//! `failed`, `invalid`, `skipped` or `pending`, in manifest line order. `status --failed` prints
//! them; `run --rejects` adds the earlier runs' refusals to its own. Given the manifest, each row
//! is shown as it is written now ([`Current`]): its URL, its line and its person's name.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::image::{Image, person_key};
use crate::ledger::{self, Entry, KeyMap, Status};

/// One image not registered, as its last ledger record says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotRegistered {
    pub line: Option<u64>,
    pub category_id: String,
    pub person_id: String,
    /// The manifest's name of the person, else the one recorded.
    pub person_name: Option<String>,
    /// The image as recorded (written as its source, `image_url`; its `image_key` is not
    /// printed).
    #[serde(rename = "image_url", serialize_with = "crate::image::as_shown")]
    pub image: Image,
    pub status: Status,
    /// The service's Code (`failed`), or `null`.
    pub error_code: Option<String>,
    /// The service's Message (`failed`) or the reason (`invalid`, `skipped`).
    pub message: Option<String>,
    pub attempts: Option<u32>,
    /// `true` when retries ran out: the next run sends it again.
    pub retryable: bool,
    /// The run that wrote this record.
    pub run: String,
}

impl NotRegistered {
    /// `Code: Message` for a failure, the reason otherwise.
    /// The image's key, as the ledger knows it.
    pub fn key(&self) -> u128 {
        self.image.key_in(&self.category_id, &self.person_id)
    }

    pub fn reason(&self) -> String {
        match (&self.error_code, &self.message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.clone(),
            (None, Some(message)) => message.clone(),
            (None, None) => String::new(),
        }
    }
}

/// Every image whose last record is not `registered` or `removed`, by manifest line.
///
/// Streams the ledger keeping, per image, the order of its first record (ties in line order
/// keep it) and its last record only while that one is open: a million registered images cost
/// a map of keys, not a million records.
pub fn collect(path: &Path) -> Result<Vec<NotRegistered>, ledger::LedgerError> {
    follow(path, |_| true)
}

/// The images whose last record is `failed` for a reason retrying will not fix (what `run
/// --rejects` adds from earlier runs), by manifest line, as [`collect`] lists them. A first
/// pass finds the images ever refused so; only those are followed, so a ledger of a million
/// registered images costs next to nothing.
pub fn collect_refused(path: &Path) -> Result<Vec<NotRegistered>, ledger::LedgerError> {
    let mut refused: KeyMap<()> = KeyMap::default();
    ledger::read::scan_as::<ledger::read::Narrow>(path, false, |entry| {
        if let Entry::Image(image) = entry
            && image.status == Status::Failed
            && image.view.retryable != Some(true)
        {
            refused.insert(image.key(), ());
        }
    })?;
    if refused.is_empty() {
        return Ok(Vec::new());
    }
    let rows = follow(path, |key| refused.contains_key(&key))?;
    Ok(rows
        .into_iter()
        .filter(|r| r.status == Status::Failed && !r.retryable)
        .collect())
}

/// [`collect`] of the images `wanted` accepts (by key). An image's first record's place in
/// the ledger orders ties: the same order among the images kept as among all of them.
fn follow(
    path: &Path,
    wanted: impl Fn(u128) -> bool,
) -> Result<Vec<NotRegistered>, ledger::LedgerError> {
    let mut last: KeyMap<(u64, Option<Box<NotRegistered>>)> = KeyMap::default();
    let mut records = 0u64;
    ledger::scan(path, false, |entry| {
        let Entry::Image(image) = entry else { return };
        records += 1;
        let key = image.key();
        if !wanted(key) {
            return;
        }
        let open = matches!(
            image.status,
            Status::Failed | Status::Invalid | Status::Skipped | Status::Pending
        );
        let row = open.then(|| {
            let view = image.view;
            Box::new(NotRegistered {
                line: view.line,
                category_id: image.category_id.to_string(),
                person_id: image.person_id.to_string(),
                person_name: view.person_name.as_deref().map(str::to_string),
                image: image.image(),
                status: image.status,
                error_code: view.error_code.as_deref().map(str::to_string),
                message: view
                    .message
                    .as_deref()
                    .or(view.reason.as_deref())
                    .map(str::to_string),
                attempts: view.attempts,
                retryable: view.retryable == Some(true),
                run: image.run().to_string(),
            })
        });
        last.entry(key).or_insert((records, None)).1 = row;
    })?;
    let mut rows: Vec<(u64, Box<NotRegistered>)> = last
        .into_values()
        .filter_map(|(first, row)| Some((first, row?)))
        .collect();
    rows.sort_unstable_by_key(|(first, r)| (r.line.unwrap_or(u64::MAX), *first));
    Ok(rows.into_iter().map(|(_, row)| *row).collect())
}

/// What the current manifest says of some images and persons: each image's line and URL as
/// written now (the ledger keeps the URL of the run that wrote the record: a link signed again
/// since, or a row moved to another URL under the same `image_key`, differs) and each person's
/// name. Only the keys asked for are kept.
#[derive(Debug, Default)]
pub struct Current {
    pub rows: KeyMap<(u64, String)>,
    pub names: KeyMap<String>,
}

impl Current {
    /// Streams `manifest` (read as `read` says) for the images `images` and the persons
    /// `persons` (keys).
    pub fn read(
        manifest: &Path,
        read: &crate::manifest::ReadOptions,
        images: &KeyMap<()>,
        persons: &KeyMap<()>,
    ) -> Result<Current, crate::manifest::ManifestError> {
        let mut current = Current::default();
        for entry in crate::manifest::Reader::open(manifest, read)? {
            let crate::manifest::Entry::Valid(row) = entry? else {
                continue;
            };
            let person = person_key(&row.category_id, &row.person_id);
            if let Some(name) = row
                .person_name
                .as_ref()
                .filter(|_| persons.contains_key(&person))
            {
                current.names.entry(person).or_insert_with(|| name.clone());
            }
            let key = row.image_id().key(&row.category_id, &row.person_id);
            if images.contains_key(&key) {
                current
                    .rows
                    .entry(key)
                    .or_insert((row.line, row.image.shown().into_owned()));
            }
        }
        Ok(current)
    }

    /// The rows as the manifest writes them now, in its line order.
    pub fn apply(&self, rows: &mut [NotRegistered]) {
        for r in rows.iter_mut() {
            if let Some((line, url)) = self.rows.get(&r.key()) {
                r.line = Some(*line);
                r.image.source.clone_from(url);
            }
            if let Some(name) = self.names.get(&person_key(&r.category_id, &r.person_id)) {
                r.person_name = Some(name.clone());
            }
        }
        rows.sort_by_key(|r| r.line.unwrap_or(u64::MAX));
    }
}

/// [`collect`], each row as the manifest writes it now.
pub fn collect_current(
    path: &Path,
    manifest: &Path,
    read: &crate::manifest::ReadOptions,
) -> Result<Vec<NotRegistered>, crate::commands::OpsError> {
    let mut rows = collect(path)?;
    let images: KeyMap<()> = rows.iter().map(|r| (r.key(), ())).collect();
    let persons: KeyMap<()> = rows
        .iter()
        .map(|r| (person_key(&r.category_id, &r.person_id), ()))
        .collect();
    Current::read(manifest, read, &images, &persons)?.apply(&mut rows);
    Ok(rows)
}

/// The list as `status --failed` prints it: a header line, then one tab-separated line each.
pub fn render(rows: &[NotRegistered]) -> String {
    let mut out = String::from(
        "LINE\tCATEGORY_ID\tPERSON_ID\tIMAGE_URL\tSTATUS\tCODE\tMESSAGE\tATTEMPTS\tRUN\tPERSON_NAME\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.line.map_or_else(|| "-".into(), |l| l.to_string()),
            r.category_id,
            r.person_id,
            r.image.source,
            r.status.as_str(),
            r.error_code.as_deref().unwrap_or("-"),
            r.message
                .as_deref()
                .unwrap_or("-")
                .replace(['\t', '\n'], " "),
            r.attempts.map_or_else(|| "-".into(), |a| a.to_string()),
            r.run.get(..8).unwrap_or(&r.run),
            r.person_name
                .as_deref()
                .unwrap_or("-")
                .replace(['\t', '\n'], " "),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{ImageRecord, Record, encode};

    fn line(status: Status, url: &str, line: u64, code: Option<&str>) -> Vec<u8> {
        let mut record = ImageRecord::new("run-1234-abcd", status, "lib", "alice", url);
        record.line = Some(line);
        record.error_code = code.map(str::to_string);
        record.message = code.map(|_| "bad image".to_string());
        let mut out = Vec::new();
        encode(&Record::Image(record), &mut out);
        out
    }

    #[test]
    fn only_images_whose_last_record_is_not_registered_are_listed_in_line_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut bytes = Vec::new();
        bytes.extend(line(Status::Failed, "u3", 4, Some("InvalidParameter")));
        bytes.extend(line(Status::Failed, "u1", 2, Some("InvalidParameter")));
        bytes.extend(line(Status::Registered, "u1", 2, None));
        bytes.extend(line(Status::Invalid, "u2", 3, None));
        bytes.extend(line(Status::Registered, "u4", 5, None));
        std::fs::write(&path, bytes).unwrap();
        let rows = collect(&path).unwrap();
        let urls: Vec<&str> = rows.iter().map(|r| r.image.source.as_str()).collect();
        assert_eq!(urls, ["u2", "u3"]);
        assert_eq!(rows[1].reason(), "InvalidParameter: bad image");
        assert!(render(&rows).contains("\tfailed\tInvalidParameter\tbad image\t"));
    }

    #[test]
    fn the_refused_images_are_those_collect_lists_as_refused_in_the_same_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut bytes = Vec::new();
        bytes.extend(line(Status::Pending, "u6", 4, None));
        bytes.extend(line(Status::Failed, "u3", 4, Some("InvalidParameter")));
        bytes.extend(line(Status::Failed, "u1", 2, Some("InvalidParameter")));
        bytes.extend(line(Status::Registered, "u1", 2, None));
        bytes.extend(line(Status::Invalid, "u2", 3, None));
        bytes.extend(line(Status::Failed, "u6", 4, Some("InvalidImage")));
        bytes.extend(line(Status::Failed, "u7", 1, Some("InvalidImage")));
        std::fs::write(&path, bytes).unwrap();
        let refused: Vec<NotRegistered> = collect(&path)
            .unwrap()
            .into_iter()
            .filter(|r| r.status == Status::Failed && !r.retryable)
            .collect();
        let urls: Vec<&str> = refused.iter().map(|r| r.image.source.as_str()).collect();
        assert_eq!(
            urls,
            ["u7", "u6", "u3"],
            "ties keep the first record's order"
        );
        assert_eq!(collect_refused(&path).unwrap(), refused);
    }

    #[test]
    fn an_image_is_known_by_its_key_column_so_a_changed_url_does_not_keep_an_old_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let keyed = |status, url: &str| {
            let record = ImageRecord::new("run-1234-abcd", status, "lib", "alice", url)
                .with_identity(&crate::image::ImageId::new(url, Some("badge-7")));
            let mut out = Vec::new();
            encode(&Record::Image(record), &mut out);
            out
        };
        let mut bytes = keyed(Status::Failed, "https://x.example.com/old.jpg");
        bytes.extend(keyed(Status::Registered, "https://x.example.com/new.jpg"));
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(collect(&path).unwrap(), []);
    }
}
