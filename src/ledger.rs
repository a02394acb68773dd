//! The ledger: an append-only JSON Lines file of what happened to every image, and its replay.
//!
//! One record per line, self-describing (`v`, `kind`). The last record for an image wins. A torn
//! last line (power loss mid-write) is dropped on replay and cut off before the next append; any
//! other unreadable line stops the run rather than guessing. Only the pipeline's recorder writes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::{image_key, person_key};

/// The record format version written by this build; replay accepts this and older.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Registered,
    Failed,
    Invalid,
    Skipped,
    Removed,
}

impl Status {
    fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "pending" => Status::Pending,
            "registered" => Status::Registered,
            "failed" => Status::Failed,
            "invalid" => Status::Invalid,
            "skipped" => Status::Skipped,
            "removed" => Status::Removed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Registered => "registered",
            Status::Failed => "failed",
            Status::Invalid => "invalid",
            Status::Skipped => "skipped",
            Status::Removed => "removed",
        }
    }
}

/// One line about one image. Field order is the order in the file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    pub v: u32,
    pub kind: Cow<'static, str>,
    pub ts: String,
    pub run: String,
    pub status: Option<Status>,
    pub category_id: String,
    pub person_id: String,
    pub image_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `ice` for ICE recognition-library records; absent means MTS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lib_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_id: Option<String>,
}

impl ImageRecord {
    /// A record of `status` for one image, stamped now, in run `run`.
    pub fn new(
        run: &str,
        status: Status,
        category_id: &str,
        person_id: &str,
        image_url: &str,
    ) -> ImageRecord {
        ImageRecord {
            v: SCHEMA_VERSION,
            kind: Cow::Borrowed("image"),
            ts: crate::clock::now_rfc3339(),
            run: run.to_string(),
            status: Some(status),
            category_id: category_id.to_string(),
            person_id: person_id.to_string(),
            image_url: image_url.to_string(),
            ..ImageRecord::default()
        }
    }
}

/// A run's start or end: no `image_url`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub v: u32,
    /// `run_start` or `run_end`.
    pub kind: String,
    pub ts: String,
    pub run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    /// `mts` or `ice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The ICE algorithm of an ICE run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
}

/// An ICE library or entity that a run created (`kind: "created"`) or a rollback deleted
/// (`kind: "deleted"`): what lets a rollback remove only what the tool itself made.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ObjectRecord {
    pub v: u32,
    /// `created` or `deleted`.
    pub kind: String,
    pub ts: String,
    pub run: String,
    pub target: String,
    pub algorithm: String,
    /// `lib` or `entity`.
    pub object: String,
    /// The library's or entity's name (the manifest's category_id or person_id).
    pub name: String,
    pub lib_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// Found by a look-up after an answer that never arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "cannot open the ledger {path}: {source}. Check the path and its permissions, or choose another with --ledger."
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the ledger {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot write the ledger {path}: {source}. Nothing after this point is recorded; free disk space or fix permissions, then run again (it resumes)."
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "ledger {path}, line {line}, column {column}: {problem}. Only the last line may be cut short; a damaged line in the middle needs a person: keep a copy, repair or remove that line, then run again."
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        column: u64,
        problem: String,
    },
    #[error(
        "ledger {path}, line {line}: written by a newer face-enroll (record version {version}, this build reads up to {SCHEMA_VERSION}). Upgrade face-enroll."
    )]
    TooNew {
        path: PathBuf,
        line: u64,
        version: u32,
    },
    #[error(
        "the ledger {path} is in use by another face-enroll ({holder}). Wait for it to finish, or stop it; two runs on one ledger would register images twice."
    )]
    Locked { path: PathBuf, holder: String },
}

/// What an image's last record says, kept small: a million images fit in tens of megabytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageState {
    pub person: u128,
    pub status: Status,
    /// For `failed`: the failure may go away on its own (attempts ran out), so the next run retries.
    pub retryable: bool,
}

/// The hash keys are already xxh3 hashes: hashing them again would only cost time.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(buf);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

pub type KeyMap<V> = HashMap<u128, V, BuildHasherDefault<KeyHasher>>;

/// The ledger replayed: the last state of every image, and the last run's bookends.
#[derive(Default)]
pub struct Replay {
    pub images: KeyMap<ImageState>,
    pub lines: u64,
    /// Bytes at the end that form no complete line (a torn write); cut off before appending.
    pub torn_tail: u64,
    pub last_run_start: Option<RunRecord>,
    pub last_run_end: Option<RunRecord>,
}

impl Replay {
    pub fn state(&self, key: u128) -> Option<ImageState> {
        self.images.get(&key).copied()
    }

    /// How many images each person has registered, by person key.
    pub fn registered_per_person(&self) -> KeyMap<u32> {
        let mut counts = KeyMap::default();
        for state in self.images.values() {
            if state.status == Status::Registered {
                *counts.entry(state.person).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// The fields replay needs; everything else in a line is skipped unparsed.
#[derive(Deserialize)]
struct LineView<'a> {
    v: Option<u32>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    category_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    person_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    image_url: Option<Cow<'a, str>>,
    retryable: Option<bool>,
}

/// Replays the ledger at `path`; a missing file is an empty ledger.
pub fn replay(path: &Path) -> Result<Replay, LedgerError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replay::default()),
        Err(source) => {
            return Err(LedgerError::Open {
                path: path.into(),
                source,
            });
        }
    };
    replay_from(path, BufReader::with_capacity(1 << 20, file))
}

pub fn replay_from(path: &Path, mut reader: impl BufRead) -> Result<Replay, LedgerError> {
    let mut replay = Replay::default();
    let mut buf = Vec::with_capacity(512);
    let read_err = |source| LedgerError::Read {
        path: path.into(),
        source,
    };
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        replay.lines += 1;
        if buf.last() != Some(&b'\n') {
            // The last line has no newline: a write that did not finish. Nothing complete is lost.
            replay.torn_tail = n as u64;
            replay.lines -= 1;
            break;
        }
        apply_line(&mut replay, path, &buf)?;
    }
    Ok(replay)
}

fn apply_line(replay: &mut Replay, path: &Path, raw: &[u8]) -> Result<(), LedgerError> {
    let line_no = replay.lines;
    let text = trim_ascii(raw);
    if text.is_empty() {
        return Ok(());
    }
    let view: LineView = serde_json::from_slice(text).map_err(|e| LedgerError::Corrupt {
        path: path.into(),
        line: line_no,
        column: e.column() as u64,
        problem: format!("not a ledger record ({e})"),
    })?;
    let corrupt = |problem: &str| LedgerError::Corrupt {
        path: path.into(),
        line: line_no,
        column: 1,
        problem: problem.to_string(),
    };
    let version = view
        .v
        .ok_or_else(|| corrupt("the record has no version field \"v\""))?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::TooNew {
            path: path.into(),
            line: line_no,
            version,
        });
    }
    match view.kind.as_deref() {
        Some("image") => {}
        Some("run_start") | Some("run_end") => {
            let record: RunRecord =
                serde_json::from_slice(text).map_err(|e| corrupt(&e.to_string()))?;
            if record.kind == "run_start" {
                replay.last_run_start = Some(record);
                replay.last_run_end = None;
            } else {
                replay.last_run_end = Some(record);
            }
            return Ok(());
        }
        // Kinds from later versions of the same schema are not ours to interpret.
        _ => return Ok(()),
    }
    let (Some(cat), Some(person), Some(url), Some(status)) = (
        &view.category_id,
        &view.person_id,
        &view.image_url,
        &view.status,
    ) else {
        return Err(corrupt(
            "an image record needs category_id, person_id, image_url and status",
        ));
    };
    let status = Status::parse(status).ok_or_else(|| corrupt("unknown status"))?;
    let state = ImageState {
        person: person_key(cat, person),
        status,
        retryable: view.retryable.unwrap_or(false),
    };
    replay.images.insert(image_key(cat, person, url), state);
    Ok(())
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// The ledger's lock: an advisory `flock` on `<ledger>.lock`, released by the kernel when the
/// process ends however it ends, so a kill -9 never leaves a stale lock behind.
pub struct Lock {
    _file: File,
}

impl Lock {
    pub fn acquire(ledger: &Path) -> Result<Lock, LedgerError> {
        let path = lock_path(ledger);
        let open_err = |source| LedgerError::Open {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(open_err)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "a process that has not said who it is"
                } else {
                    holder
                };
                return Err(LedgerError::Locked {
                    path: ledger.into(),
                    holder: holder.to_string(),
                });
            }
            return Err(LedgerError::Open { path, source: err });
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let who = format!(
            "pid {} on {} since {}\n",
            std::process::id(),
            host.trim(),
            crate::clock::now_rfc3339()
        );
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(who.as_bytes())
        };
        write(&mut file).map_err(|source| LedgerError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(Lock { _file: file })
    }
}

pub fn lock_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The one open handle that appends to the ledger. Lines are written whole, then synced.
pub struct Appender {
    path: PathBuf,
    file: File,
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
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(open_err)?;
        let write_err = |source| LedgerError::Write {
            path: path.into(),
            source,
        };
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(write_err)?;
        if torn_tail > 0 {
            let len = file.metadata().map_err(write_err)?.len();
            file.set_len(len.saturating_sub(torn_tail))
                .map_err(write_err)?;
            file.sync_data().map_err(write_err)?;
        }
        let mut appender = Appender {
            path: path.into(),
            file,
        };
        appender.file.seek(SeekFrom::End(0)).map_err(write_err)?;
        if !existed {
            sync_parent_dir(path);
        }
        Ok(appender)
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

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> Result<(), LedgerError> {
        self.file.sync_data().map_err(|source| LedgerError::Write {
            path: self.path.clone(),
            source,
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

/// Serialises a record as one line (with its newline) onto `out`.
pub fn encode<T: Serialize>(record: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, record).expect("ledger records always serialise");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: Status, url: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r = ImageRecord::new("run-1", status, "Lib", "Alice", url);
        if status == Status::Registered {
            r.face_id = Some("face-1".into());
        }
        encode(&r, &mut out);
        out
    }

    fn replay_bytes(bytes: &[u8]) -> Result<Replay, LedgerError> {
        replay_from(Path::new("test.ledger.jsonl"), bytes)
    }

    #[test]
    fn the_last_record_for_an_image_wins() {
        let mut bytes = record(Status::Pending, "http://x/a.jpg");
        bytes.extend(record(Status::Registered, "http://x/a.jpg"));
        bytes.extend(record(Status::Pending, "http://x/b.jpg"));
        let replay = replay_bytes(&bytes).unwrap();
        let a = replay
            .state(image_key("lib", "alice", "http://x/a.jpg"))
            .unwrap();
        assert_eq!(a.status, Status::Registered);
        let b = replay
            .state(image_key("LIB", "ALICE", "http://x/b.jpg"))
            .unwrap();
        assert_eq!(b.status, Status::Pending);
        assert_eq!(
            replay.registered_per_person()[&person_key("lib", "alice")],
            1
        );
        assert_eq!(replay.lines, 3);
    }

    #[test]
    fn a_torn_last_line_is_tolerated_at_every_cut_and_no_complete_line_is_lost() {
        let mut bytes = record(Status::Pending, "http://x/a.jpg");
        bytes.extend(record(Status::Registered, "http://x/a.jpg"));
        let first_len = record(Status::Pending, "http://x/a.jpg").len();
        for cut in 0..bytes.len() {
            let replay = replay_bytes(&bytes[..cut]).unwrap();
            let complete = if cut >= first_len { 1 } else { 0 };
            assert_eq!(replay.lines, complete, "cut at {cut}");
            let expect_torn = (cut - if complete == 1 { first_len } else { 0 }) as u64;
            assert_eq!(replay.torn_tail, expect_torn, "cut at {cut}");
        }
        assert_eq!(replay_bytes(&bytes).unwrap().torn_tail, 0);
    }

    #[test]
    fn a_damaged_line_in_the_middle_names_file_line_and_column() {
        let mut bytes = record(Status::Pending, "http://x/a.jpg");
        bytes.extend(b"{\"v\":1,\"kind\":\"image\",oops}\n");
        bytes.extend(record(Status::Registered, "http://x/a.jpg"));
        match replay_bytes(&bytes) {
            Err(LedgerError::Corrupt { line, column, .. }) => {
                assert_eq!(line, 2);
                assert!(column > 1);
            }
            other => panic!("expected Corrupt, got {:?}", other.err()),
        }
    }

    #[test]
    fn records_from_a_newer_schema_are_refused_with_advice() {
        let bytes = b"{\"v\":99,\"kind\":\"image\"}\n";
        let err = replay_bytes(bytes).err().unwrap();
        assert!(matches!(err, LedgerError::TooNew { version: 99, .. }));
        assert!(err.to_string().contains("Upgrade"));
    }

    #[test]
    fn run_records_carry_no_image_and_are_remembered() {
        let mut bytes = Vec::new();
        let start = RunRecord {
            v: 1,
            kind: "run_start".into(),
            ts: "t".into(),
            run: "r1".into(),
            ..RunRecord::default()
        };
        encode(&start, &mut bytes);
        let end = RunRecord {
            kind: "run_end".into(),
            exit_code: Some(0),
            ..start.clone()
        };
        encode(&end, &mut bytes);
        let replay = replay_bytes(&bytes).unwrap();
        assert_eq!(replay.last_run_start.unwrap().run, "r1");
        assert_eq!(replay.last_run_end.unwrap().exit_code, Some(0));
        assert!(replay.images.is_empty());
        assert!(!String::from_utf8(bytes).unwrap().contains("image_url"));
    }

    #[test]
    fn appending_after_a_torn_tail_cuts_it_off_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut bytes = record(Status::Pending, "http://x/a.jpg");
        bytes.extend(b"{\"v\":1,\"kind\":\"ima");
        std::fs::write(&path, &bytes).unwrap();
        let replay = replay(&path).unwrap();
        assert!(replay.torn_tail > 0);
        let mut appender = Appender::open(&path, replay.torn_tail).unwrap();
        appender
            .append(&record(Status::Registered, "http://x/a.jpg"))
            .unwrap();
        appender.sync().unwrap();
        let again = super::replay(&path).unwrap();
        assert_eq!(again.lines, 2);
        assert_eq!(again.torn_tail, 0);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
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
}
