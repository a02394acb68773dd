//! Photos on disk: an `image_url` cell that names a local file (`file://…`, or a path that is a
//! file, relative to the manifest's folder) is named by its content by `run --upload-to` before
//! planning and read as the `oss://` object it becomes; without an upload it is an invalid row
//! that says so.

use super::ReadOptions;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What the upload stage made of each local file, by its path: its `oss://` address, or why it
/// is no photo that can go.
#[derive(Debug, Default)]
pub struct LocalFiles {
    pub resolved: HashMap<PathBuf, Result<String, String>>,
}

/// `path` with `.` and `..` taken out, by its text (the file need not exist).
fn normalised(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Under `--no-escape`, why `path` may not be read: it is not inside `base`.
fn escapes(path: &Path, base: &Path, no_escape: bool) -> Option<String> {
    if !no_escape {
        return None;
    }
    let base = normalised(&std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf()));
    (!normalised(path).starts_with(&base)).then(|| {
        format!(
            "image_url `{}` leaves the manifest's folder {} (--no-escape)",
            path.display(),
            base.display()
        )
    })
}

/// The file a cell names, when it names one: `file://PATH`, or a path (no scheme) that is a
/// regular file, relative to `base`; as an absolute path. A cell such as `images/a.jpg` that is no file stays what
/// it was: not a URL.
pub fn local_path(cell: &str, base: &Path) -> Option<PathBuf> {
    // By bytes: a path's seventh byte may fall inside a character (`新闻部/李伟.jpg`).
    let path = if let Some(rest) = strip_file_scheme(cell) {
        base.join(rest)
    } else if cell.contains("://") || cell.is_empty() {
        return None;
    } else {
        let path = base.join(cell);
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return None;
        }
        path
    };
    // Absolute, so that one file has one name whatever folder the command ran in.
    Some(std::path::absolute(&path).unwrap_or(path))
}

/// What follows `file://` (in any case) in `cell`, when it starts with it.
fn strip_file_scheme(cell: &str) -> Option<&str> {
    let scheme = cell.as_bytes().get(..7)?;
    // The scheme is ASCII, so the rest starts on a character boundary.
    (scheme.eq_ignore_ascii_case(b"file://") && cell.len() > 7).then(|| &cell[7..])
}

/// [`local_path`], except a path `--no-escape` refuses: the files an upload may read.
pub fn readable_local_path(cell: &str, base: &Path, no_escape: bool) -> Option<PathBuf> {
    local_path(cell, base).filter(|path| escapes(path, base, no_escape).is_none())
}

/// For a cell that names a local file: its `oss://` address once uploaded, or why the row is
/// invalid. `None` for every other cell.
pub(super) fn resolve(
    cell: &str,
    base: &Path,
    options: &ReadOptions,
) -> Option<Result<String, String>> {
    let path = local_path(cell, base)?;
    if let Some(reason) = escapes(&path, base, options.no_escape) {
        return Some(Err(reason));
    }
    Some(
        match options.uploaded().and_then(|u| u.resolved.get(&path)) {
            Some(result) => result.clone(),
            None => Err(format!(
                "image_url `{cell}` is a local file: `run --upload-to oss://BUCKET/PREFIX/` uploads it \
             and sends it as that object (`check --upload-to` plans it so)"
            )),
        },
    )
}
