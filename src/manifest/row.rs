//! One data record → a valid [`Row`] or an [`InvalidRow`] that says which column is wrong and why.

use csv::ByteRecord;

use super::validate::{is_system_library, validate_id, validate_url};
use super::{Columns, Entry, InvalidRow, ReadOptions, Row};

/// Which column failed and why.
type Problem = (Option<&'static str>, String);

/// The checked, trimmed fields of a good row, borrowed from the record.
struct Fields<'a> {
    category_id: &'a str,
    person_id: &'a str,
    /// Borrowed; owned when a local file became the `oss://` object it was uploaded to.
    image_url: std::borrow::Cow<'a, str>,
    person_name: Option<&'a str>,
    /// Owned when it is `sha256:` and the `image_sha256` cell.
    image_key: Option<std::borrow::Cow<'a, str>>,
}

/// Turns a record that starts on `line` into an entry.
pub(super) fn to_entry(
    record: &ByteRecord,
    columns: &Columns,
    options: &ReadOptions,
    line: u64,
) -> Entry {
    entry_for(record, columns, options, columns.image_url, line)
}

/// A record of a file with several image columns: one entry per non-empty image cell, in
/// column order; a row with none is one invalid entry.
pub(super) fn to_entries(
    record: &ByteRecord,
    columns: &Columns,
    options: &ReadOptions,
    line: u64,
) -> Vec<Entry> {
    let filled: Vec<usize> = columns
        .images()
        .filter(|&i| record.get(i).is_some_and(|f| !f.trim_ascii().is_empty()))
        .collect();
    if filled.is_empty() {
        let names: Vec<&str> = columns
            .images()
            .map(|i| columns.names.get(i).map_or("?", String::as_str))
            .collect();
        return vec![Entry::Invalid(InvalidRow {
            line,
            column: Some("image_url"),
            reason: format!(
                "image_url: no photo in any image column ({})",
                names.join(", ")
            ),
            category_id: lossy(record, columns.category_id),
            person_id: lossy(record, columns.person_id),
            image_url: String::new(),
        })];
    }
    filled
        .into_iter()
        .map(|image| entry_for(record, columns, options, image, line))
        .collect()
}

/// The entry for the image in column `image` of a record.
fn entry_for(
    record: &ByteRecord,
    columns: &Columns,
    options: &ReadOptions,
    image: usize,
    line: u64,
) -> Entry {
    match check(record, columns, options, image) {
        Ok(fields) => Entry::Valid(Row {
            line,
            category_id: fields.category_id.to_owned(),
            person_id: fields.person_id.to_owned(),
            person_name: fields.person_name.map(str::to_owned),
            image: crate::image::Image::new(
                fields.image_url.into_owned(),
                fields.image_key.map(std::borrow::Cow::into_owned),
            ),
        }),
        Err((column, reason)) => Entry::Invalid(InvalidRow {
            line,
            column,
            reason,
            category_id: lossy(record, columns.category_id),
            person_id: lossy(record, columns.person_id),
            image_url: lossy(record, image),
        }),
    }
}

/// True when every field is empty or spaces: such lines are skipped, not reported.
pub(super) fn is_blank(record: &ByteRecord) -> bool {
    record.iter().all(|field| field.trim_ascii().is_empty())
}

fn check<'a>(
    record: &'a ByteRecord,
    columns: &Columns,
    options: &ReadOptions,
    image: usize,
) -> Result<Fields<'a>, Problem> {
    let category_id = text(record, columns, columns.category_id, "category_id")?;
    validate_id(category_id, "category_id").map_err(|reason| (Some("category_id"), reason.0))?;
    if is_system_library(category_id) {
        return Err((
            Some("category_id"),
            format!(
                "category_id `{category_id}` is a system library of the service and cannot be \
                 enrolled into; use a category id of your own"
            ),
        ));
    }
    let person_id = text(record, columns, columns.person_id, "person_id")?;
    validate_id(person_id, "person_id").map_err(|reason| (Some("person_id"), reason.0))?;
    let cell = text(record, columns, image, "image_url")?;
    let image_url = match super::local::resolve(cell, &columns.base, options) {
        Some(Ok(address)) => std::borrow::Cow::Owned(address),
        Some(Err(reason)) => return Err((Some("image_url"), reason)),
        None => {
            validate_url(cell).map_err(|reason| (Some("image_url"), reason.0))?;
            std::borrow::Cow::Borrowed(cell)
        }
    };
    let person_name = match columns.person_name {
        Some(index) if index < record.len() => {
            Some(text(record, columns, index, "person_name")?).filter(|name| !name.is_empty())
        }
        _ => None,
    };
    if let Some(name) = person_name {
        super::validate::validate_name(name).map_err(|reason| (Some("person_name"), reason.0))?;
    }
    let image_key = match columns.image_key {
        Some(index) if index < record.len() => {
            Some(text(record, columns, index, "image_key")?).filter(|key| !key.is_empty())
        }
        _ => None,
    };
    if let Some(key) = image_key {
        validate_id(key, "image_key").map_err(|reason| (Some("image_key"), reason.0))?;
    }
    let image_key = match sha256(record, columns, image)? {
        Some(_) if image_key.is_some() => {
            return Err((
                Some("image_sha256"),
                "image_sha256 and image_key both given: the photo's SHA-256 is its identity, \
                 so give one of them"
                    .to_string(),
            ));
        }
        Some(hex) => Some(std::borrow::Cow::Owned(format!(
            "{}{hex}",
            super::SHA256_KEY
        ))),
        None => image_key.map(std::borrow::Cow::Borrowed),
    };
    Ok(Fields {
        category_id,
        person_id,
        image_url,
        person_name,
        image_key,
    })
}

/// The `image_sha256` cell, lower-cased, when the row has one: 64 hexadecimal digits, about
/// the photo in `image_url` (a row with several image columns gives each photo a row of its
/// own to name its bytes).
fn sha256(record: &ByteRecord, columns: &Columns, image: usize) -> Result<Option<String>, Problem> {
    let Some(index) = columns.image_sha256.filter(|&i| i < record.len()) else {
        return Ok(None);
    };
    let cell = text(record, columns, index, "image_sha256")?;
    if cell.is_empty() {
        return Ok(None);
    }
    if image != columns.image_url {
        return Err((
            Some("image_sha256"),
            "image_sha256 names the photo in image_url only; give this photo a row of its own \
             to name its bytes"
                .to_string(),
        ));
    }
    if cell.len() != 64 || !cell.bytes().all(|b| b.is_ascii_hexdigit()) {
        let shown: String = cell.chars().take(80).collect();
        return Err((
            Some("image_sha256"),
            format!(
                "image_sha256 `{shown}` is not a SHA-256: write the 64 hexadecimal digits of the \
                 photo's hash (`sha256sum photo.jpg`)"
            ),
        ));
    }
    Ok(Some(cell.to_ascii_lowercase()))
}

/// The trimmed text of a field, or why there is none.
fn text<'a>(
    record: &'a ByteRecord,
    columns: &Columns,
    index: usize,
    column: &'static str,
) -> Result<&'a str, Problem> {
    let Some(bytes) = record.get(index) else {
        let reason = format!(
            "{column} is missing: the row has {} field{} but the header has {}",
            record.len(),
            if record.len() == 1 { "" } else { "s" },
            columns.names.len()
        );
        return Err((Some(column), reason));
    };
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.trim()),
        Err(error) => {
            let at = error.valid_up_to();
            let reason = format!(
                "{column} is not valid UTF-8 (byte 0x{:02X} at offset {at}); save the manifest \
                 as CSV in UTF-8",
                bytes[at]
            );
            Err((Some(column), reason))
        }
    }
}

fn lossy(record: &ByteRecord, index: usize) -> String {
    let bytes = record.get(index).unwrap_or_default();
    String::from_utf8_lossy(bytes).trim().to_owned()
}
