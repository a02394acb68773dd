//! Where the sandbox's OSS keeps objects: in memory, or as files `ROOT/BUCKET/KEY`. A folder
//! is read at every request (files put there by hand are served) and a key that could not be a
//! file strictly inside the folder (`..`, `.`, empty segments, a backslash, a link out) is
//! refused.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use md5::{Digest, Md5};
use time::OffsetDateTime;

use crate::sandbox::snapshot::ObjectSnapshot;
use crate::sign::oss::object::check_bucket;

/// A write in progress is a file with this prefix next to its object; listings skip it.
const TEMP_PREFIX: &str = ".oss-sandbox-tmp-";
/// A listing of a folder stops after this many files, or this deep.
const LIST_LIMIT: usize = 100_000;
const LIST_DEPTH: usize = 64;

/// One stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Object {
    pub body: Bytes,
    pub content_type: String,
    pub last_modified: OffsetDateTime,
    pub md5: [u8; 16],
}

impl Object {
    pub fn new(body: Bytes, content_type: String, last_modified: OffsetDateTime) -> Object {
        let md5 = Md5::digest(&body).into();
        Object {
            body,
            content_type,
            last_modified,
            md5,
        }
    }

    /// OSS's ETag of a simple upload: the MD5 in upper-case hex, quoted.
    pub fn etag(&self) -> String {
        format!("\"{}\"", hex::encode_upper(self.md5))
    }
}

/// The type OSS gives an object uploaded without one, by its key's suffix.
pub(crate) fn content_type_of(key: &str) -> &'static str {
    let suffix = key.rsplit_once('.').map(|(_, s)| s.to_ascii_lowercase());
    match suffix.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("bmp") => "image/bmp",
        Some("txt") => "text/plain",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the key cannot be a file inside the sandbox's OSS folder: {0}")]
    Unsafe(&'static str),
    #[error("the object exists")]
    Exists,
    #[error("{0}")]
    Io(#[from] io::Error),
}

pub(crate) enum Store {
    Memory(Mutex<BTreeMap<(String, String), Object>>),
    /// The folder as given, and canonical (to tell a link out of it).
    Folder {
        root: PathBuf,
        canonical: PathBuf,
    },
}

impl Store {
    /// In memory, or in `root` (created when missing).
    pub fn open(root: Option<&Path>) -> io::Result<Store> {
        match root {
            None => Ok(Store::Memory(Mutex::default())),
            Some(root) => {
                fs::create_dir_all(root)?;
                Ok(Store::Folder {
                    root: root.to_path_buf(),
                    canonical: fs::canonicalize(root)?,
                })
            }
        }
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Object>, StoreError> {
        match self {
            Store::Memory(objects) => Ok(lock(objects)
                .get(&(bucket.to_string(), key.to_string()))
                .cloned()),
            Store::Folder { root, canonical } => {
                let path = file_of(root, bucket, key)?;
                let metadata = match fs::metadata(&path) {
                    Ok(metadata) if metadata.is_file() => metadata,
                    Ok(_) => return Ok(None),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(error) => return Err(error.into()),
                };
                if !fs::canonicalize(&path)?.starts_with(canonical) {
                    return Err(StoreError::Unsafe("it is a link out of the folder"));
                }
                let body = Bytes::from(fs::read(&path)?);
                let modified = metadata
                    .modified()
                    .map_or_else(|_| OffsetDateTime::now_utc(), OffsetDateTime::from);
                Ok(Some(Object::new(
                    body,
                    content_type_of(key).to_string(),
                    modified,
                )))
            }
        }
    }

    /// Stores `body` under `key`; with `forbid_overwrite`, an existing key is [`StoreError::Exists`]
    /// and stays as it was.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: Option<&str>,
        forbid_overwrite: bool,
    ) -> Result<Object, StoreError> {
        let now = OffsetDateTime::now_utc();
        match self {
            Store::Memory(objects) => {
                let content_type = content_type.unwrap_or_else(|| content_type_of(key));
                let object = Object::new(body, content_type.to_string(), now);
                let mut objects = lock(objects);
                let name = (bucket.to_string(), key.to_string());
                if forbid_overwrite && objects.contains_key(&name) {
                    return Err(StoreError::Exists);
                }
                objects.insert(name, object.clone());
                Ok(object)
            }
            Store::Folder { root, canonical } => {
                let path = file_of(root, bucket, key)?;
                let parent = path
                    .parent()
                    .ok_or(StoreError::Unsafe("it has no folder"))?;
                fs::create_dir_all(parent)?;
                if !fs::canonicalize(parent)?.starts_with(canonical) {
                    return Err(StoreError::Unsafe("its folder is a link out of the folder"));
                }
                let temp = parent.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
                let written = write_file(&temp, &body).and_then(|()| {
                    if forbid_overwrite {
                        // A hard link fails on an existing name: check and write are one step.
                        fs::hard_link(&temp, &path)
                    } else {
                        fs::rename(&temp, &path)
                    }
                });
                let _ = fs::remove_file(&temp);
                match written {
                    Ok(()) => Ok(Object::new(body, content_type_of(key).to_string(), now)),
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                        Err(StoreError::Exists)
                    }
                    Err(error) => Err(error.into()),
                }
            }
        }
    }

    /// Every object, by bucket then key (a folder's: at most [`LIST_LIMIT`] files).
    pub fn list(&self) -> Vec<ObjectSnapshot> {
        match self {
            Store::Memory(objects) => lock(objects)
                .iter()
                .map(|((bucket, key), object)| snapshot(bucket, key, object))
                .collect(),
            Store::Folder { root, .. } => {
                let mut out = Vec::new();
                let Ok(buckets) = fs::read_dir(root) else {
                    return out;
                };
                let mut buckets: Vec<(String, PathBuf)> = buckets
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                    .filter(|(name, _)| check_bucket(name).is_ok())
                    .collect();
                buckets.sort();
                for (bucket, dir) in buckets {
                    let mut keys = Vec::new();
                    walk(&dir, "", 0, &mut keys);
                    keys.sort();
                    for key in keys {
                        if out.len() >= LIST_LIMIT {
                            return out;
                        }
                        if let Ok(Some(object)) = self.get(&bucket, &key) {
                            out.push(snapshot(&bucket, &key, &object));
                        }
                    }
                }
                out
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn snapshot(bucket: &str, key: &str, object: &Object) -> ObjectSnapshot {
    ObjectSnapshot {
        bucket: bucket.to_string(),
        key: key.to_string(),
        size: object.body.len() as u64,
        md5: hex::encode(object.md5),
        etag: object.etag(),
        content_type: object.content_type.clone(),
    }
}

fn write_file(path: &Path, body: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create_new(path)?;
    file.write_all(body)?;
    file.sync_all()
}

/// `root/bucket/key`, when every part of the key can be a plain name inside the folder.
pub(crate) fn file_of(root: &Path, bucket: &str, key: &str) -> Result<PathBuf, StoreError> {
    if check_bucket(bucket).is_err() {
        return Err(StoreError::Unsafe("the bucket name is not valid"));
    }
    if key.contains(['\\', '\0']) {
        return Err(StoreError::Unsafe("it has a backslash or a NUL"));
    }
    let mut path = root.join(bucket);
    for segment in key.split('/') {
        match segment {
            "" => {
                return Err(StoreError::Unsafe(
                    "it has an empty segment (// or a / at an end)",
                ));
            }
            "." | ".." => return Err(StoreError::Unsafe("it has a . or .. segment")),
            s if s.starts_with(TEMP_PREFIX) => {
                return Err(StoreError::Unsafe(
                    "it names one of the sandbox's own files",
                ));
            }
            s => path.push(s),
        }
    }
    Ok(path)
}

/// Collects the keys of the files under `dir`, `prefix` being the key of `dir` itself.
fn walk(dir: &Path, prefix: &str, depth: usize, keys: &mut Vec<String>) {
    if depth > LIST_DEPTH || keys.len() >= LIST_LIMIT {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let key = format!("{prefix}{name}");
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&entry.path(), &format!("{key}/"), depth + 1, keys),
            Ok(t) if t.is_file() => keys.push(key),
            _ => {}
        }
        if keys.len() >= LIST_LIMIT {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_would_leave_the_folder_are_refused() {
        let root = Path::new("/srv/oss");
        for bad in [
            "../etc/passwd",
            "a/../../b",
            "./a",
            "a//b",
            "a/",
            "a\\..\\b",
            "nul\0",
        ] {
            assert!(
                matches!(file_of(root, "photos", bad), Err(StoreError::Unsafe(_))),
                "{bad}"
            );
        }
        assert_eq!(
            file_of(root, "photos", "a/b c.jpg").unwrap(),
            Path::new("/srv/oss/photos/a/b c.jpg")
        );
        assert!(file_of(root, "..", "a").is_err());
    }

    #[test]
    fn a_folder_store_keeps_files_and_refuses_an_overwrite_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Some(dir.path())).unwrap();
        let body = Bytes::from_static(b"\xff\xd8\xffjpeg");
        let put = store
            .put("photos", "a/b.jpg", body.clone(), None, true)
            .unwrap();
        assert_eq!(
            fs::read(dir.path().join("photos/a/b.jpg")).unwrap(),
            &body[..]
        );
        let again = store.put("photos", "a/b.jpg", Bytes::from_static(b"x"), None, true);
        assert!(matches!(again, Err(StoreError::Exists)));
        let got = store.get("photos", "a/b.jpg").unwrap().unwrap();
        assert_eq!((got.body, got.md5), (body, put.md5));
        assert_eq!(got.content_type, "image/jpeg");
        assert!(
            store.get("photos", "a").unwrap().is_none(),
            "a folder is no object"
        );
        store
            .put("photos", "a/b.jpg", Bytes::from_static(b"x"), None, false)
            .unwrap();
        let listed = store.list();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!((listed[0].key.as_str(), listed[0].size), ("a/b.jpg", 1));
    }

    #[test]
    fn the_etag_is_the_quoted_upper_case_md5() {
        let object = Object::new(
            Bytes::from_static(b"hello"),
            "text/plain".into(),
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(object.etag(), "\"5D41402ABC4B2A76B9719D911017C592\"");
    }
}
