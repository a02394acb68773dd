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
    /// The SHA-256 of the photo's bytes: its identity, and what pre-flight holds it to.
    pub image_sha256: Option<usize>,
    /// Further image columns after `image_url`, in order (`image_url2`, … or a `--columns`
    /// mapping naming several): each non-empty cell is one more image of the row's person.
    pub more_images: Vec<usize>,
    /// The header's names as written (trimmed), for messages.
    pub names: Vec<String>,
    /// The folder local paths in image cells are relative to.
    pub base: std::path::PathBuf,
}

impl Columns {
    /// Every image column, `image_url` first.
    pub fn images(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.image_url).chain(self.more_images.iter().copied())
    }

    /// `field=header` for each field read, as `check` shows the mapping it used.
    pub fn describe(&self) -> String {
        let name = |i: usize| self.names.get(i).map_or("?", String::as_str);
        let mut parts = vec![
            format!("category_id={}", name(self.category_id)),
            format!("person_id={}", name(self.person_id)),
        ];
        if let Some(i) = self.person_name {
            parts.push(format!("person_name={}", name(i)));
        }
        let images: Vec<&str> = self.images().map(name).collect();
        parts.push(format!("image_url={}", images.join("+")));
        if let Some(i) = self.image_key {
            parts.push(format!("image_key={}", name(i)));
        }
        if let Some(i) = self.image_sha256 {
            parts.push(format!("image_sha256={}", name(i)));
        }
        parts.join(", ")
    }
}

/// `--columns`: which header holds which field, for a file whose headers are its own (an HR
/// export: `category_id=部门,person_id=工号,person_name=姓名,image_url=照片1,照片2,照片3`).
/// Fields it does not name are found by their usual names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnMap {
    /// (field's canonical name, the headers that hold it, in order).
    pub fields: Vec<(&'static str, Vec<String>)>,
}

/// Why a `--columns` mapping is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ColumnMapError {
    #[error(
        "`{field}` is not a column of the manifest (category_id, person_id, image_url, \
         person_name, image_key, image_sha256)"
    )]
    UnknownColumn { field: String },
    #[error("`{field}` is mapped twice")]
    MappedTwice { field: &'static str },
    #[error("`{field}=` names no header")]
    NoHeader { field: &'static str },
    #[error("`{part}`: only image_url takes several headers ({field} has one); write field=Header")]
    OneHeaderOnly { part: String, field: &'static str },
    #[error("`{part}`: write field=Header (e.g. person_id={part})")]
    NoField { part: String },
    #[error("name at least one field=Header")]
    Empty,
}

impl std::str::FromStr for ColumnMap {
    type Err = ColumnMapError;

    /// `field=Header[,Header…][,field=Header…]`: a part without `=` is one more header of the
    /// field before it (only `image_url` takes several).
    fn from_str(text: &str) -> Result<ColumnMap, ColumnMapError> {
        let mut map = ColumnMap::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((field, header)) => {
                    let normalised = normalise(field);
                    let Some(&(_, canonical)) = KNOWN.iter().find(|(n, _)| *n == normalised) else {
                        return Err(ColumnMapError::UnknownColumn {
                            field: field.to_string(),
                        });
                    };
                    if map.fields.iter().any(|(f, _)| *f == canonical) {
                        return Err(ColumnMapError::MappedTwice { field: canonical });
                    }
                    let header = header.trim();
                    if header.is_empty() {
                        return Err(ColumnMapError::NoHeader { field: canonical });
                    }
                    map.fields.push((canonical, vec![header.to_string()]));
                }
                None => match map.fields.last_mut() {
                    Some((field, headers)) if *field == "image_url" => {
                        headers.push(part.to_string())
                    }
                    Some((field, _)) => {
                        return Err(ColumnMapError::OneHeaderOnly {
                            part: part.to_string(),
                            field,
                        });
                    }
                    None => {
                        return Err(ColumnMapError::NoField {
                            part: part.to_string(),
                        });
                    }
                },
            }
        }
        if map.fields.is_empty() {
            return Err(ColumnMapError::Empty);
        }
        Ok(map)
    }
}

/// The known fields: the normalised spelling and the canonical name.
const KNOWN: [(&str, &str); 6] = [
    ("categoryid", "category_id"),
    ("personid", "person_id"),
    ("imageurl", "image_url"),
    ("personname", "person_name"),
    ("imagekey", "image_key"),
    ("imagesha256", "image_sha256"),
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
    map: Option<&ColumnMap>,
) -> Result<Columns, ManifestError> {
    let names = names_of(path, line, record, binary)?;
    let mut found: Found = [None; KNOWN.len()];
    let mut more_images = Vec::new();
    find_mapped(path, line, &names, map, &mut found, &mut more_images)?;
    let numbered_images = find_named(path, line, &names, map, &mut found, &mut more_images)?;
    // Numbered image columns alone: the first of them is image_url.
    if found[2].is_none() && numbered_images && !more_images.is_empty() {
        found[2] = Some(more_images.remove(0));
    }
    let [
        Some(category_id),
        Some(person_id),
        Some(image_url),
        person_name,
        image_key,
        image_sha256,
    ] = found
    else {
        let missing = (0..REQUIRED)
            .filter(|&k| found[k].is_none())
            .map(|k| KNOWN[k].1)
            .collect();
        return Err(ManifestError::MissingColumn {
            path: path.to_path_buf(),
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
        image_sha256,
        more_images,
        names,
        base: std::path::PathBuf::new(),
    })
}

/// The column of each of `KNOWN`, when found.
type Found = [Option<usize>; KNOWN.len()];

/// The header's names, trimmed (and a BOM taken off); a NUL or a name that is not UTF-8 says
/// the file is no text CSV (or a header not in UTF-8).
fn names_of(
    path: &Path,
    line: u64,
    record: &ByteRecord,
    binary: bool,
) -> Result<Vec<String>, ManifestError> {
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
    Ok(names)
}

/// Mapped fields (`--columns`): their headers, as named (case, spaces, `_` and `-` ignored);
/// an image field's further headers are more image columns.
fn find_mapped(
    path: &Path,
    line: u64,
    names: &[String],
    map: Option<&ColumnMap>,
    found: &mut Found,
    more_images: &mut Vec<usize>,
) -> Result<(), ManifestError> {
    for (field, headers) in map.map_or(&[][..], |m| &m.fields[..]) {
        let known = KNOWN.iter().position(|(_, c)| c == field).unwrap_or(0);
        for (n, header) in headers.iter().enumerate() {
            let Some(index) = names
                .iter()
                .position(|name| normalise(name) == normalise(header))
            else {
                return Err(ManifestError::MappedHeaderMissing {
                    path: path.to_path_buf(),
                    line,
                    field,
                    header: header.clone(),
                    found: names.to_vec(),
                });
            };
            if n == 0 {
                found[known] = Some(index);
            } else {
                more_images.push(index);
            }
        }
    }
    Ok(())
}

/// The fields not mapped, by their usual names, and `image_url2`, `image_url_3`, … as more
/// image columns when image_url is not mapped (returned: whether it is not). A field named
/// twice is refused.
fn find_named(
    path: &Path,
    line: u64,
    names: &[String],
    map: Option<&ColumnMap>,
    found: &mut Found,
    more_images: &mut Vec<usize>,
) -> Result<bool, ManifestError> {
    let mapped =
        |known: usize| map.is_some_and(|m| m.fields.iter().any(|(f, _)| *f == KNOWN[known].1));
    let numbered_images = !mapped(2);
    for (index, name) in names.iter().enumerate() {
        let normalised = normalise(name);
        if numbered_images
            && let Some(rest) = normalised.strip_prefix("imageurl")
            && !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_digit())
        {
            more_images.push(index);
            continue;
        }
        let Some(known) = KNOWN
            .iter()
            .position(|(spelling, _)| *spelling == normalised)
        else {
            continue;
        };
        if mapped(known) {
            continue;
        }
        if let Some(first) = found[known] {
            return Err(ManifestError::DuplicateColumn {
                path: path.to_path_buf(),
                line,
                column: KNOWN[known].1,
                first: first + 1,
                second: index + 1,
            });
        }
        found[known] = Some(index);
    }
    Ok(numbered_images)
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
