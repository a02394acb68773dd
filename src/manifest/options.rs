//! How one command reads its manifest: the flags that shape the reading (`--encoding`,
//! `--columns`, `--sheet`, `--layout`, `--no-escape`) and what the command learns on the way
//! (the local photos it uploaded, a folder it walked). The command owns one [`ReadOptions`] and
//! hands it to every [`Reader::open`](super::Reader::open), so two readings in one process with
//! different options never see each other's state.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use super::{ColumnMap, Encoding, Layout, LocalFiles};

/// How to learn what earlier runs uploaded (`check`, `status`, …: the ledger's `upload`
/// records), asked the first time a row names a local file: a manifest that names none costs
/// no read of the ledger.
pub type Loader = Box<dyn Fn() -> LocalFiles + Send + Sync>;

/// The reading options of one command. Clones share what was learned (uploads, folders
/// walked): a command clones its options into the threads that read for it.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// `--encoding`.
    pub encoding: Encoding,
    /// `--columns`.
    pub columns: Option<ColumnMap>,
    /// `--sheet`.
    pub sheet: Option<String>,
    /// `--layout`, for a folder of photos.
    pub layout: Layout,
    /// `--no-escape`: a local path that leaves the manifest's folder (`../…`, or an absolute
    /// path elsewhere) is an invalid row, and nothing of it is read or uploaded.
    pub no_escape: bool,
    learned: Arc<Learned>,
}

/// What readings with these options learn, shared by their clones.
#[derive(Default)]
struct Learned {
    uploaded: OnceLock<LocalFiles>,
    loader: OnceLock<Loader>,
    /// Folders read, by (root, prefix): a run reads its manifest more than once (to name the
    /// local photos, to plan, to re-plan a sync, for the rejects), and a folder is walked once,
    /// so every reading sees the same photos.
    walked: Mutex<Vec<(FolderKey, Arc<[u8]>)>>,
}

/// A folder walked, by its root and the prefix its paths are written after.
type FolderKey = (PathBuf, PathBuf);

impl std::fmt::Debug for Learned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learned")
            .field("uploaded", &self.uploaded.get())
            .field("loader", &self.loader.get().is_some())
            .finish_non_exhaustive()
    }
}

impl ReadOptions {
    /// What the upload stage made of the local files (`run --upload-to`), set before the
    /// manifest is planned; a second call is ignored.
    pub fn set_uploaded(&self, files: LocalFiles) {
        let _ = self.learned.uploaded.set(files);
    }

    /// How to learn what earlier runs uploaded, when a row first names a local file; a second
    /// call is ignored.
    pub fn set_uploaded_from(&self, load: impl Fn() -> LocalFiles + Send + Sync + 'static) {
        let _ = self.learned.loader.set(Box::new(load));
    }

    /// What is known of the local files' uploads, loading it on first use.
    pub(super) fn uploaded(&self) -> Option<&LocalFiles> {
        if let Some(files) = self.learned.uploaded.get() {
            return Some(files);
        }
        let load = self.learned.loader.get()?;
        Some(self.learned.uploaded.get_or_init(load))
    }

    /// The folder `root` as CSV text, walked the first time these options (or a clone) ask.
    pub(super) fn walked(
        &self,
        root: &std::path::Path,
        prefix: &std::path::Path,
        walk: impl FnOnce() -> Result<Vec<u8>, super::ManifestError>,
    ) -> Result<Arc<[u8]>, super::ManifestError> {
        let key = (root.to_path_buf(), prefix.to_path_buf());
        let mut walked = self
            .learned
            .walked
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((_, text)) = walked.iter().find(|(k, _)| *k == key) {
            return Ok(text.clone());
        }
        let text: Arc<[u8]> = walk()?.into();
        walked.push((key, text.clone()));
        Ok(text)
    }
}
