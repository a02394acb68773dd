//! A folder of photos as a manifest: `run photos/` walks it by a layout (`--layout`, default
//! `{category_id}/{person_id}/*`) and reads it as the CSV it amounts to — one row per photo, the
//! path relative to the folder — so the rest of the tool sees an ordinary manifest of local
//! files. Only JPEG and PNG files by their first bytes; hidden files, symlinks and files the
//! layout does not place are skipped and counted; names are sorted, so the 10-photo rule keeps
//! the same photos every night.

use super::{ManifestError, ReadOptions};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The layout of a folder manifest, one pattern per path level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    levels: Vec<Vec<Piece>>,
    /// As written, for messages.
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(&'static str),
    Any,
}

const FIELDS: [&str; 3] = ["category_id", "person_id", "person_name"];

impl Default for Layout {
    fn default() -> Layout {
        "{category_id}/{person_id}/*".parse().unwrap_or(Layout {
            levels: Vec::new(),
            text: String::new(),
        })
    }
}

/// Why a `--layout` is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("`{level}`: a `{{` without its `}}`")]
    Unclosed { level: String },
    #[error("`{{{name}}}` is not a field (category_id, person_id, person_name)")]
    UnknownField { name: String },
    #[error("`{layout}` has an empty level")]
    EmptyLevel { layout: String },
    #[error("`{layout}` must name {{{field}}} once")]
    FieldNotOnce { layout: String, field: &'static str },
}

impl std::str::FromStr for Layout {
    type Err = LayoutError;

    /// `{category_id}/{person_id}_{person_name}/*`: levels split by `/`, each literal text,
    /// `{field}` and `*` (anything); the last level matches file names.
    fn from_str(text: &str) -> Result<Layout, LayoutError> {
        let mut levels = Vec::new();
        for level in text.trim_matches('/').split('/') {
            let mut pieces = Vec::new();
            let mut rest = level;
            while !rest.is_empty() {
                if let Some(after) = rest.strip_prefix('{') {
                    let (name, tail) =
                        after.split_once('}').ok_or_else(|| LayoutError::Unclosed {
                            level: level.to_string(),
                        })?;
                    let field = FIELDS.iter().find(|f| **f == name).ok_or_else(|| {
                        LayoutError::UnknownField {
                            name: name.to_string(),
                        }
                    })?;
                    pieces.push(Piece::Field(field));
                    rest = tail;
                } else if let Some(tail) = rest.strip_prefix('*') {
                    pieces.push(Piece::Any);
                    rest = tail;
                } else {
                    let end = rest.find(['{', '*']).unwrap_or(rest.len());
                    pieces.push(Piece::Text(rest[..end].to_string()));
                    rest = &rest[end..];
                }
            }
            if pieces.is_empty() {
                return Err(LayoutError::EmptyLevel {
                    layout: text.to_string(),
                });
            }
            levels.push(pieces);
        }
        let names = |field: &str| {
            levels
                .iter()
                .flatten()
                .filter(|p| **p == Piece::Field(FIELDS.iter().find(|f| **f == field).unwrap()))
                .count()
        };
        for required in ["category_id", "person_id"] {
            if names(required) != 1 {
                return Err(LayoutError::FieldNotOnce {
                    layout: text.to_string(),
                    field: required,
                });
            }
        }
        Ok(Layout {
            levels,
            text: text.to_string(),
        })
    }
}

/// Matches `name` against `pieces`, filling `found` (field, value); backtracks over `*` and
/// fields, which take at least one character.
fn matches(pieces: &[Piece], name: &str, found: &mut Vec<(&'static str, String)>) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return name.is_empty();
    };
    match first {
        Piece::Text(text) => name
            .strip_prefix(text.as_str())
            .is_some_and(|tail| matches(rest, tail, found)),
        Piece::Any | Piece::Field(_) => {
            // Shortest first: `{person_id}_{person_name}` splits at the first `_`.
            for (end, _) in name.char_indices().skip(1).chain([(name.len(), ' ')]) {
                let mark = found.len();
                if let Piece::Field(field) = first {
                    found.push((field, name[..end].to_string()));
                }
                if matches(rest, &name[end..], found) {
                    return true;
                }
                found.truncate(mark);
            }
            false
        }
    }
}

/// Files a folder scan left out, by why, for the log.
#[derive(Debug, Default)]
struct Skipped {
    hidden: u64,
    symlinks: u64,
    not_images: u64,
    not_placed: u64,
    examples: Vec<String>,
}

impl Skipped {
    fn note(&mut self, count: fn(&mut Skipped) -> &mut u64, what: String) {
        *count(self) += 1;
        if self.examples.len() < 20 {
            self.examples.push(what);
        }
    }
}

/// The folder as CSV text (a header and one row per photo, paths relative to `root`, each
/// after `prefix`), by the options' layout, walked once per [`ReadOptions`].
pub(super) fn to_csv(
    root: &Path,
    prefix: &Path,
    options: &ReadOptions,
) -> Result<std::sync::Arc<[u8]>, ManifestError> {
    options.walked(root, prefix, || walk_to_csv(root, prefix, &options.layout))
}

fn walk_to_csv(root: &Path, prefix: &Path, layout: &Layout) -> Result<Vec<u8>, ManifestError> {
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut skipped = Skipped::default();
    walk(
        root,
        root,
        layout,
        0,
        &mut Vec::new(),
        &mut rows,
        &mut skipped,
    )
    .map_err(|error| ManifestError::Read {
        path: root.to_path_buf(),
        line: 1,
        error,
    })?;
    let skipped_in_all =
        skipped.hidden + skipped.symlinks + skipped.not_images + skipped.not_placed;
    tracing::info!(
        photos = rows.len(),
        skipped = skipped_in_all,
        hidden = skipped.hidden,
        symlinks = skipped.symlinks,
        not_images = skipped.not_images,
        not_placed = skipped.not_placed,
        "read the folder {} as a manifest",
        root.display()
    );
    for example in &skipped.examples {
        tracing::info!("skipped {example}");
    }
    if rows.is_empty() {
        return Err(ManifestError::EmptyFolder {
            path: root.to_path_buf(),
            layout: layout.text.clone(),
            skipped: skipped_in_all,
        });
    }
    let mut out = Vec::new();
    {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(&mut out);
        let header = ["category_id", "person_id", "person_name", "image_url"];
        let fail = |e: csv::Error| ManifestError::Read {
            path: root.to_path_buf(),
            line: 1,
            error: std::io::Error::other(e),
        };
        writer.write_record(header).map_err(fail)?;
        for row in &mut rows {
            row[3] = prefix.join(&row[3]).to_string_lossy().into_owned();
            writer.write_record(&*row).map_err(fail)?;
        }
        writer.flush().map_err(|error| ManifestError::Read {
            path: root.to_path_buf(),
            line: 1,
            error,
        })?;
    }
    Ok(out)
}

/// Visits `dir` (level `depth` of the layout), in name order.
fn walk(
    root: &Path,
    dir: &Path,
    layout: &Layout,
    depth: usize,
    found: &mut Vec<(&'static str, String)>,
    rows: &mut Vec<[String; 4]>,
    skipped: &mut Skipped,
) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    let Some(level) = layout.levels.get(depth) else {
        return Ok(());
    };
    let last = depth + 1 == layout.levels.len();
    for path in entries {
        let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let shown = relative.display().to_string();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            skipped.note(|s| &mut s.hidden, format!("{shown}: hidden"));
            continue;
        }
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            skipped.note(|s| &mut s.symlinks, format!("{shown}: a symlink"));
            continue;
        }
        let mark = found.len();
        if !matches(level, &name, found) {
            skipped.note(
                |s| &mut s.not_placed,
                format!("{shown}: not where the layout puts photos"),
            );
            continue;
        }
        match (meta.is_dir(), last) {
            (true, false) => walk(root, &path, layout, depth + 1, found, rows, skipped)?,
            (false, true) if meta.is_file() => {
                if is_image(&path) {
                    let get = |field: &str| {
                        found
                            .iter()
                            .find(|(f, _)| *f == field)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    rows.push([
                        get("category_id"),
                        get("person_id"),
                        get("person_name"),
                        relative.to_string_lossy().into_owned(),
                    ]);
                } else {
                    skipped.note(|s| &mut s.not_images, format!("{shown}: not a JPEG or PNG"));
                }
            }
            _ => skipped.note(
                |s| &mut s.not_placed,
                format!("{shown}: not where the layout puts photos"),
            ),
        }
        found.truncate(mark);
    }
    Ok(())
}

/// A JPEG or a PNG by its first bytes.
fn is_image(path: &Path) -> bool {
    let mut head = [0u8; 8];
    let read = std::fs::File::open(path).and_then(|mut f| f.read(&mut head));
    match read {
        Ok(n) => head[..n].starts_with(&[0xFF, 0xD8, 0xFF]) || head[..n] == *b"\x89PNG\r\n\x1a\n",
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(layout: &str, level: usize, name: &str) -> Option<Vec<(&'static str, String)>> {
        let layout: Layout = layout.parse().unwrap();
        let mut found = Vec::new();
        matches(&layout.levels[level], name, &mut found).then_some(found)
    }

    #[test]
    fn a_layout_places_fields_by_path_level() {
        assert_eq!(
            fields("{category_id}/{person_id}_{person_name}/*", 1, "1001_李伟"),
            Some(vec![
                ("person_id", "1001".into()),
                ("person_name", "李伟".into())
            ])
        );
        assert_eq!(
            fields("{category_id}/{person_id}/*", 0, "newsroom"),
            Some(vec![("category_id", "newsroom".into())])
        );
        assert_eq!(fields("{category_id}/{person_id}.jpg", 1, "p1.png"), None);
        assert_eq!(
            fields("{category_id}/{person_id}.jpg", 1, "p1.jpg"),
            Some(vec![("person_id", "p1".into())])
        );
        assert!("{person_id}/*".parse::<Layout>().is_err());
        assert!("{category_id}/{nobody}/*".parse::<Layout>().is_err());
    }
}
