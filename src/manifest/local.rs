//! Photos on disk: an `image_url` cell that names a local file (`file://…`, or a path that is a
//! file, relative to the manifest's folder) is named by its content by `run --upload-to` before
//! planning and read as the `oss://` object it becomes; without an upload it is an invalid row
//! that says so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What the upload stage made of each local file, by its path: its `oss://` address, or why it
/// is no photo that can go.
#[derive(Debug, Default)]
pub struct LocalFiles {
    pub resolved: HashMap<PathBuf, Result<String, String>>,
}

static UPLOADED: OnceLock<LocalFiles> = OnceLock::new();
static NO_ESCAPE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--no-escape`: a local path that leaves the manifest's folder (`../…`, or an absolute path
/// elsewhere) is an invalid row, and nothing of it is read or uploaded.
pub fn set_no_escape(on: bool) {
    NO_ESCAPE.store(on, std::sync::atomic::Ordering::Relaxed);
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
fn escapes(path: &Path, base: &Path) -> Option<String> {
    if !NO_ESCAPE.load(std::sync::atomic::Ordering::Relaxed) {
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

/// Set once by the upload stage, before the manifest is planned.
pub fn set_uploaded(files: LocalFiles) {
    let _ = UPLOADED.set(files);
}

/// How to learn what earlier runs uploaded (`check`, `status`, …: the ledger's `upload`
/// records), asked the first time a row names a local file: a manifest that names none costs
/// no read of the ledger.
type Loader = Box<dyn Fn() -> LocalFiles + Send + Sync>;
static LOADER: OnceLock<Loader> = OnceLock::new();

/// Sets the [`LOADER`].
pub fn set_uploaded_from(load: impl Fn() -> LocalFiles + Send + Sync + 'static) {
    let _ = LOADER.set(Box::new(load));
}

fn uploaded() -> Option<&'static LocalFiles> {
    if let Some(files) = UPLOADED.get() {
        return Some(files);
    }
    let load = LOADER.get()?;
    Some(UPLOADED.get_or_init(load))
}

/// The file a cell names, when it names one: `file://PATH`, or a path (no scheme) that is a
/// regular file, relative to `base`; as an absolute path. A cell such as `images/a.jpg` that is no file stays what
/// it was: not a URL.
pub fn local_path(cell: &str, base: &Path) -> Option<PathBuf> {
    let path = if cell.len() > 7 && cell[..7].eq_ignore_ascii_case("file://") {
        base.join(&cell[7..])
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

/// [`local_path`], except a path `--no-escape` refuses: the files an upload may read.
pub fn readable_local_path(cell: &str, base: &Path) -> Option<PathBuf> {
    local_path(cell, base).filter(|path| escapes(path, base).is_none())
}

/// For a cell that names a local file: its `oss://` address once uploaded, or why the row is
/// invalid. `None` for every other cell.
pub(super) fn resolve(cell: &str, base: &Path) -> Option<Result<String, String>> {
    let path = local_path(cell, base)?;
    if let Some(reason) = escapes(&path, base) {
        return Some(Err(reason));
    }
    Some(match uploaded().and_then(|u| u.resolved.get(&path)) {
        Some(result) => result.clone(),
        None => Err(format!(
            "image_url `{cell}` is a local file: `run --upload-to oss://BUCKET/PREFIX/` uploads it \
             and sends it as that object"
        )),
    })
}
