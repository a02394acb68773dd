//! The header row: which column holds which field, and the fatal errors a bad header causes.

use std::path::Path;

use csv::ByteRecord;

use super::ManifestError;

/// Where each field comes from: 0-based indexes into a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    pub category_id: usize,
    pub person_id: usize,
    pub image_url: usize,
    pub person_name: Option<usize>,
    /// An explicit identity for images whose URL does not say what they are.
    pub image_key: Option<usize>,
    /// The header's names as written (trimmed), for messages.
    pub names: Vec<String>,
}

/// The known fields: the normalised spelling and the canonical name.
const KNOWN: [(&str, &str); 5] = [
    ("categoryid", "category_id"),
    ("personid", "person_id"),
    ("imageurl", "image_url"),
    ("personname", "person_name"),
    ("imagekey", "image_key"),
];

/// The first three of `KNOWN` are required.
const REQUIRED: usize = 3;

/// Checks a header record (already read, non-blank, starting on `line`) and maps its columns.
/// `binary` says the start of the file holds a NUL byte, which no text CSV does.
pub(super) fn parse(
    path: &Path,
    line: u64,
    record: &ByteRecord,
    binary: bool,
) -> Result<Columns, ManifestError> {
    let path = || path.to_path_buf();
    if let Some(index) = record.iter().position(|field| field.contains(&0)) {
        return Err(ManifestError::NotCsv {
            path: path(),
            line,
            column: index + 1,
        });
    }
    let mut names = Vec::with_capacity(record.len());
    for (index, field) in record.iter().enumerate() {
        let Ok(name) = std::str::from_utf8(field) else {
            let column = index + 1;
            return Err(if binary {
                // An image's first line is rarely UTF-8; the NUL a little later gives it away.
                ManifestError::NotCsv {
                    path: path(),
                    line,
                    column,
                }
            } else {
                ManifestError::HeaderNotUtf8 {
                    path: path(),
                    line,
                    column,
                }
            });
        };
        names.push(name.trim().trim_start_matches('\u{feff}').trim().to_owned());
    }
    let mut found: [Option<usize>; KNOWN.len()] = [None; KNOWN.len()];
    for (index, name) in names.iter().enumerate() {
        let normalised = normalise(name);
        let Some(known) = KNOWN
            .iter()
            .position(|(spelling, _)| *spelling == normalised)
        else {
            continue;
        };
        if let Some(first) = found[known] {
            return Err(ManifestError::DuplicateColumn {
                path: path(),
                line,
                column: KNOWN[known].1,
                first: first + 1,
                second: index + 1,
            });
        }
        found[known] = Some(index);
    }
    let [
        Some(category_id),
        Some(person_id),
        Some(image_url),
        person_name,
        image_key,
    ] = found
    else {
        let missing = (0..REQUIRED)
            .filter(|&k| found[k].is_none())
            .map(|k| KNOWN[k].1)
            .collect();
        return Err(ManifestError::MissingColumn {
            path: path(),
            line,
            missing,
            found: names,
        });
    };
    Ok(Columns {
        category_id,
        person_id,
        image_url,
        person_name,
        image_key,
        names,
    })
}

/// Lowercases and drops whitespace, `_` and `-`, so `Category-ID` and `category_id` match.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_every_accepted_spelling_to_the_same_name() {
        for name in [
            "category_id",
            "CategoryId",
            "category-id",
            "CATEGORYID",
            " Category ID ",
        ] {
            assert_eq!(normalise(name), "categoryid", "{name}");
        }
    }
}
