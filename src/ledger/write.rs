//! The writing side of the ledger: the lock a command holds while it writes, and the appender
//! that makes each batch of lines durable.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::LedgerError;

/// The ledger's lock: an exclusive lock on the ledger file itself (so every path to it — a
/// symlink, a hard link, a deleted `.lock` file — shares one lock), released by the kernel when
/// the process ends however it ends, so a kill -9 never leaves a stale lock behind. Who holds it
/// is written to `<ledger>.lock`, for the message a second run prints.
pub struct Lock {
    file: File,
    /// This lock created the (empty) ledger: there was none.
    created: bool,
}

impl Lock {
    /// Locks the ledger, creating it (empty) when there is none: a run starts one.
    pub fn acquire(ledger: &Path) -> Result<Lock, LedgerError> {
        Lock::acquire_with(ledger, true)
    }

    /// Locks a ledger that must exist already (a rollback of what it records): a missing one
    /// is an `Open` error, and nothing is created.
    pub fn acquire_existing(ledger: &Path) -> Result<Lock, LedgerError> {
        Lock::acquire_with(ledger, false)
    }

    fn acquire_with(ledger: &Path, create: bool) -> Result<Lock, LedgerError> {
        let path = lock_path(ledger);
        // The file locked must still be the one the path names: another run may have removed
        // (an empty ledger it had created, see `remove_if_empty`) or replaced it between our
        // open and our lock, and a lock on a file no path names excludes nobody.
        let mut attempts = 0;
        let (file, created) = loop {
            attempts += 1;
            let (file, created) = Lock::open_to_lock(ledger, create)?;
            Lock::lock_or_name_holder(&file, ledger, &path)?;
            if still_names(ledger, &file) {
                break (file, created);
            }
            if attempts == 5 {
                return Err(LedgerError::Open {
                    path: ledger.into(),
                    source: std::io::Error::other(
                        "the ledger file kept being removed or replaced while it was being locked",
                    ),
                });
            }
        };
        Lock::write_holder(&path)?;
        Ok(Lock { file, created })
    }

    /// Opens the ledger to lock, creating it when `create` and there is none, and says whether
    /// it was created here; anything but a regular file is refused.
    fn open_to_lock(ledger: &Path, create: bool) -> Result<(File, bool), LedgerError> {
        let open_err = |source| LedgerError::Open {
            path: ledger.into(),
            source,
        };
        // Created here (`create_new`), or there already (through a symlink, maybe to a
        // file still to be made: not ours to remove later).
        let open = |new: bool| {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(create)
                .create_new(new)
                .mode(0o600)
                .open(ledger)
        };
        let (file, created) = match open(create) {
            Ok(file) => (file, create),
            Err(e) if create && e.kind() == std::io::ErrorKind::AlreadyExists => {
                (open(false).map_err(open_err)?, false)
            }
            Err(e) => return Err(open_err(e)),
        };
        if !file.metadata().map_err(open_err)?.is_file() {
            return Err(LedgerError::NotAFile {
                path: ledger.into(),
            });
        }
        Ok((file, created))
    }

    /// Takes the lock without waiting; when another process holds it, the error says who, as
    /// the lock's `note` file tells.
    fn lock_or_name_holder(file: &File, ledger: &Path, note: &Path) -> Result<(), LedgerError> {
        match file.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::Locked {
                path: ledger.into(),
                holder: Lock::holder_named(&std::fs::read_to_string(note).unwrap_or_default()),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(LedgerError::Open {
                path: ledger.into(),
                source,
            }),
        }
    }

    /// The holder a lock's note names, or words for one that has not said who it is.
    fn holder_named(note: &str) -> String {
        match note.trim() {
            "" => "a process that has not said who it is".to_string(),
            who => who.to_string(),
        }
    }

    /// Writes who now holds the lock (pid, host, since when) to its `note` file, for the
    /// message a second run prints.
    fn write_holder(note: &Path) -> Result<(), LedgerError> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let who = format!(
            "pid {} on {} since {}\n",
            std::process::id(),
            host.trim(),
            crate::clock::now_rfc3339()
        );
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(note)?;
            file.write_all(who.as_bytes())
        };
        write().map_err(|source| LedgerError::Write {
            path: note.into(),
            source,
        })
    }

    /// Whether this lock created the ledger (empty): there was none.
    pub fn created(&self) -> bool {
        self.created
    }

    /// When the ledger was last written, read from the locked file (not through its path).
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        self.file.metadata().and_then(|m| m.modified()).ok()
    }

    /// The appender on the very file locked, after cutting off a torn tail found by replay: no
    /// second open by path, so the lines go to the file this lock excludes others from.
    pub fn appender(&self, path: &Path, torn_tail: u64) -> Result<Appender, LedgerError> {
        let file = self.file.try_clone().map_err(|source| LedgerError::Open {
            path: path.into(),
            source,
        })?;
        Appender::on(path, file, torn_tail, self.created)
    }
}

/// Removes a ledger that holds nothing, and its lock note: what a run that created it and
/// then refused its manifest leaves. Call it while holding the [`Lock`]; a ledger with any byte
/// in it is never touched.
pub fn remove_if_empty(ledger: &Path) {
    if std::fs::symlink_metadata(ledger).is_ok_and(|m| m.is_file() && m.len() == 0) {
        let _ = std::fs::remove_file(ledger);
        let _ = std::fs::remove_file(lock_path(ledger));
    }
}

/// Whether `path` (through any symlink) names the file `file` has open.
fn still_names(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(named), Ok(open)) => (named.dev(), named.ino()) == (open.dev(), open.ino()),
        _ => false,
    }
}

pub fn lock_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The one open handle that appends to the ledger (opened append-only). Lines are written
/// whole, then synced; at every sync it checks that the path still names the file it has open,
/// so a ledger deleted or replaced during a run is noticed, not silently written into the void.
pub struct Appender {
    path: PathBuf,
    file: File,
    /// (device, inode) of the file opened.
    identity: (u64, u64),
}

impl Appender {
    /// Opens (creating, mode 0600) for appending, after cutting off a torn tail found by replay.
    pub fn open(path: &Path, torn_tail: u64) -> Result<Appender, LedgerError> {
        let open_err = |source| LedgerError::Open {
            path: path.into(),
            source,
        };
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(open_err)?;
        Appender::on(path, file, torn_tail, !existed)
    }

    /// [`Appender::open`] on a file already open for appending; `created`: the file is new,
    /// so its directory entry is synced too.
    fn on(path: &Path, file: File, torn_tail: u64, created: bool) -> Result<Appender, LedgerError> {
        use std::os::unix::fs::MetadataExt;
        let open_err = |source| LedgerError::Open {
            path: path.into(),
            source,
        };
        let write_err = |source| LedgerError::Write {
            path: path.into(),
            source,
        };
        let metadata = file.metadata().map_err(open_err)?;
        if !metadata.is_file() {
            return Err(LedgerError::NotAFile { path: path.into() });
        }
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(write_err)?;
        if torn_tail > 0 {
            file.set_len(metadata.len().saturating_sub(torn_tail))
                .map_err(write_err)?;
            file.sync_data().map_err(write_err)?;
        }
        if created {
            sync_parent_dir(path);
        }
        Ok(Appender {
            path: path.into(),
            file,
            identity: (metadata.dev(), metadata.ino()),
        })
    }

    /// Appends complete lines (each ending in `\n`) in one write.
    pub fn append(&mut self, lines: &[u8]) -> Result<(), LedgerError> {
        debug_assert!(lines.is_empty() || lines.ends_with(b"\n"));
        self.file
            .write_all(lines)
            .map_err(|source| LedgerError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Makes everything appended so far durable; refuses when the path no longer names the
    /// file being written (deleted or replaced), after saving that file's whole content to a
    /// recovery file beside it.
    pub fn sync(&mut self) -> Result<(), LedgerError> {
        use std::os::unix::fs::MetadataExt;
        self.file.sync_data().map_err(|source| LedgerError::Write {
            path: self.path.clone(),
            source,
        })?;
        let same = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if same {
            return Ok(());
        }
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".recovered-{}", std::process::id()));
        let recovery = PathBuf::from(name);
        let saved = (|| -> std::io::Result<()> {
            let mut content = Vec::new();
            self.file.seek(SeekFrom::Start(0))?;
            self.file.read_to_end(&mut content)?;
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&recovery)?;
            out.write_all(&content)?;
            out.sync_all()
        })();
        Err(LedgerError::Replaced {
            path: self.path.clone(),
            recovery: saved.map(|()| recovery).map_err(|e| e.to_string()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn sync_parent_dir(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_counts_only_while_the_path_names_the_locked_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let link = dir.path().join("link.jsonl");
        let file = File::create(&path).unwrap();
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(still_names(&path, &file));
        assert!(still_names(&link, &file));
        std::fs::remove_file(&path).unwrap();
        assert!(!still_names(&path, &file), "removed");
        std::fs::write(&path, b"").unwrap();
        assert!(!still_names(&path, &file), "replaced by another file");
        // A run that removed its empty ledger and released it: the next lock is on the new file.
        let lock = Lock::acquire(&path).unwrap();
        assert!(still_names(&path, &lock.file));
    }

    #[test]
    fn a_lock_knows_whether_it_created_the_ledger_and_appends_to_the_file_it_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let lock = Lock::acquire(&path).unwrap();
        assert!(lock.created());
        let mut appender = lock.appender(&path, 0).unwrap();
        appender.append(b"{}\n").unwrap();
        appender.sync().unwrap();
        drop((appender, lock));
        assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
        let lock = Lock::acquire(&path).unwrap();
        assert!(!lock.created());
        assert!(lock.modified().is_some());
        drop(lock);
        // A symlink to a file still to be made: the file is made, but it is not this lock's.
        let target = dir.path().join("t.jsonl");
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let lock = Lock::acquire(&link).unwrap();
        assert!(!lock.created() && target.exists());
        drop(lock);
        let missing = dir.path().join("m.jsonl");
        assert!(Lock::acquire_existing(&missing).is_err());
        assert!(!missing.exists());
    }

    #[test]
    fn a_second_lock_on_the_same_ledger_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let _first = Lock::acquire(&path).unwrap();
        match Lock::acquire(&path) {
            Err(LedgerError::Locked { holder, .. }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                )
            }
            other => panic!("expected Locked, got {:?}", other.err()),
        }
    }

    #[test]
    fn the_holder_is_the_notes_line_or_words_for_one_that_did_not_say() {
        assert_eq!(
            Lock::holder_named("  pid 7 on box since 2026-01-01T00:00:00Z\n"),
            "pid 7 on box since 2026-01-01T00:00:00Z"
        );
        assert_eq!(
            Lock::holder_named(" \n"),
            "a process that has not said who it is"
        );
        let dir = tempfile::tempdir().unwrap();
        let note = dir.path().join("l.jsonl.lock");
        std::fs::write(&note, "an older, longer note that must not survive\n").unwrap();
        Lock::write_holder(&note).unwrap();
        let written = std::fs::read_to_string(&note).unwrap();
        assert!(
            written.starts_with(&format!("pid {} on ", std::process::id())),
            "{written}"
        );
        assert!(!written.contains("older"), "{written}");
        assert_eq!(written.lines().count(), 1);
    }
}
