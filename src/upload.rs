//! `run --upload-to oss://BUCKET/PREFIX/`: the local photos a manifest names go to OSS before
//! the import plans, each under a key named by its content — `PREFIX/<sha256>.jpg|png` — so a
//! renamed or moved file is the same object (and the same image), and the same bytes twice are
//! one. A PUT never replaces an object (`x-oss-forbid-overwrite`: 409 means the bytes are there
//! already) and carries `Content-MD5`, so OSS refuses a damaged body. Each file is read once,
//! whole (at most [`MAX_BYTES`]): the bytes hashed are the bytes sent.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures::StreamExt as _;
use sha2::Digest as _;

use crate::api::{Client, Uploaded};
use crate::ledger::record::UploadRecord;
use crate::manifest::LocalFiles;

/// The largest photo uploaded: the services' documented guide (api-notes §11) is 5 MB.
pub const MAX_BYTES: u64 = 5 * 1024 * 1024;

const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF];
const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// `--upload-to`: the bucket and the key prefix (ends with `/` or is empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub bucket: String,
    pub prefix: String,
}

impl std::str::FromStr for Destination {
    type Err = String;

    fn from_str(text: &str) -> Result<Destination, String> {
        let rest = text
            .strip_prefix("oss://")
            .ok_or_else(|| format!("`{text}`: write oss://BUCKET/PREFIX/"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        crate::sign::oss::object::check_bucket(bucket).map_err(|e| e.to_string())?;
        let mut prefix = prefix.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Destination {
            bucket: bucket.to_string(),
            prefix,
        })
    }
}

/// A file as it was when it was uploaded: its size and modification time (nanoseconds).
pub type Stamp = (u64, u64);

/// The files earlier runs uploaded, from the ledger's `upload` records: (stamp, object). The
/// last record of a path wins.
pub fn journaled(ledger: &Path) -> std::collections::HashMap<PathBuf, (Stamp, String)> {
    let mut known = std::collections::HashMap::new();
    let _ = crate::ledger::scan(ledger, true, |entry| {
        if let crate::ledger::read::Entry::Upload(view) = entry
            && let (Some(path), Some(size), Some(modified), Some(object)) = (
                view.path.as_deref(),
                view.size,
                view.modified_ns,
                view.oss_object.as_deref(),
            )
        {
            known.insert(PathBuf::from(path), ((size, modified), object.to_string()));
        }
    });
    known
}

/// For commands that read a manifest without uploading (`check`, `status`, `report`,
/// `verify`): the local files earlier runs uploaded, unchanged since, read as their objects —
/// so those rows show as the images they became, not as files still to upload.
pub fn resolve_from_journal(ledger: &Path) {
    let known = journaled(ledger);
    if known.is_empty() {
        return;
    }
    let mut local = LocalFiles::default();
    for (path, (then, object)) in known {
        if stamp(&path) == Some(then) {
            local.resolved.insert(path, Ok(object));
        }
    }
    crate::manifest::set_uploaded(local);
}

/// A file's stamp now, when it can be read.
fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((meta.len(), u64::try_from(modified).ok()?))
}

/// What the upload stage did, for the log and the summary.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Uploads {
    pub files: u64,
    /// Files unchanged since an earlier run uploaded them: neither read nor uploaded again.
    pub unchanged: u64,
    pub stored: u64,
    pub already_there: u64,
    /// Files that could not be uploaded (their rows are invalid, with the reason).
    pub refused: u64,
}

/// A local file read and named by its content.
#[derive(Debug)]
struct Photo {
    bytes: bytes::Bytes,
    sha256: String,
    md5: String,
    content_type: &'static str,
    extension: &'static str,
}

/// A local photo's bytes, read whole (at most [`MAX_BYTES`]) and judged as an upload judges
/// them, or why it would not be uploaded (unreadable, too large, not a whole JPEG or PNG): what
/// `report` shows for a file no run has uploaded yet.
pub fn read_local_photo(path: &Path) -> Result<Vec<u8>, String> {
    read_checked(path).map(|(bytes, _)| bytes)
}

/// Reads `path` whole and names it, or says why it is not a photo that can go.
fn read_photo(path: &Path) -> Result<Photo, String> {
    let (bytes, (content_type, extension)) = read_checked(path)?;
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    let md5: [u8; 16] = <md5::Md5 as md5::Digest>::digest(&bytes).into();
    Ok(Photo {
        md5: base64::engine::general_purpose::STANDARD.encode(md5),
        bytes: bytes.into(),
        sha256,
        content_type,
        extension,
    })
}

/// `path`'s bytes and their content type and suffix, or why they are no photo to upload.
fn read_checked(path: &Path) -> Result<(Vec<u8>, (&'static str, &'static str)), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_BYTES {
        return Err(format!(
            "{} is {} bytes; photos of at most {MAX_BYTES} bytes (5 MB) are uploaded",
            path.display(),
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (content_type, extension) = if bytes.starts_with(JPEG) {
        if !whole_jpeg(&bytes) {
            return Err(format!(
                "{} is not a whole JPEG (it does not end with the end-of-image marker): a copy \
                 cut short?",
                path.display()
            ));
        }
        ("image/jpeg", "jpg")
    } else if bytes.starts_with(PNG) {
        if !whole_png(&bytes) {
            return Err(format!(
                "{} is not a whole PNG (no IEND chunk at its end): a copy cut short?",
                path.display()
            ));
        }
        ("image/png", "png")
    } else if bytes.is_empty() {
        return Err(format!("{} is empty", path.display()));
    } else {
        return Err(format!(
            "{} is not a JPEG or PNG image (by its first bytes)",
            path.display()
        ));
    };
    Ok((bytes, (content_type, extension)))
}

/// A JPEG ends with the end-of-image marker (some writers pad after it with zeros).
fn whole_jpeg(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes[..end].ends_with(&[0xFF, 0xD9])
}

/// A PNG's last chunk is IEND: its type, then its CRC.
fn whole_png(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[bytes.len() - 8..bytes.len() - 4] == b"IEND"
}

/// Uploads every file of `files` (at most `concurrency` at once) and says what each became.
/// Files are named by their content first, so the same bytes under several names go up once.
pub async fn upload_all(
    client: &Client,
    files: Vec<PathBuf>,
    to: &Destination,
    concurrency: usize,
    known: &std::collections::HashMap<PathBuf, (Stamp, String)>,
) -> (LocalFiles, Uploads, Vec<UploadRecord>) {
    let concurrency = concurrency.max(1);
    let mut uploads = Uploads {
        files: files.len() as u64,
        ..Uploads::default()
    };
    let mut local = LocalFiles::default();
    let mut records = Vec::new();
    // 0. Files an earlier run uploaded, unchanged since (same size and time) and under this
    //    destination: their object is known without reading them.
    let mut stamps = std::collections::HashMap::new();
    let mut files_to_read = Vec::new();
    let prefix = format!("oss://{}/{}", to.bucket, to.prefix);
    for path in files {
        let now = stamp(&path);
        match (now, known.get(&path)) {
            (Some(now), Some((then, object))) if now == *then && object.starts_with(&prefix) => {
                uploads.unchanged += 1;
                local.resolved.insert(path, Ok(object.clone()));
            }
            _ => {
                if let Some(now) = now {
                    stamps.insert(path.clone(), now);
                }
                files_to_read.push(path);
            }
        }
    }
    let files = files_to_read;
    // 1. Name each file by its content (read, hashed, dropped: nothing is held).
    let named: Vec<(PathBuf, Result<Photo, String>)> = futures::stream::iter(files)
        .map(|path| async move {
            let owned = path.clone();
            let named = tokio::task::spawn_blocking(move || read_photo(&owned))
                .await
                .unwrap_or_else(|e| Err(format!("internal error: {e}")))
                .map(Photo::forget_bytes);
            (path, named)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut by_content: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    for (path, named) in named {
        match named {
            Ok(photo) => by_content
                .entry(address_of(to, &photo))
                .or_default()
                .push(path),
            Err(reason) => {
                uploads.refused += 1;
                tracing::warn!(file = %path.display(), %reason, "not uploaded");
                local.resolved.insert(path, Err(reason));
            }
        }
    }
    // 2. One upload per content, from its first file, read again and checked unchanged.
    let done: Vec<(String, Vec<PathBuf>, Result<Uploaded, String>)> =
        futures::stream::iter(by_content)
            .map(|(address, paths)| async move {
                let result = upload_one(client, &paths[0], &address, to).await;
                (address, paths, result)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    for (address, paths, result) in done {
        match result {
            Ok(Uploaded::Stored) => uploads.stored += 1,
            Ok(Uploaded::AlreadyThere) => uploads.already_there += 1,
            Err(_) => uploads.refused += paths.len() as u64,
        }
        for path in paths {
            if result.is_ok()
                && let Some(&(size, modified_ns)) = stamps.get(&path)
            {
                records.push(UploadRecord {
                    ts: crate::clock::now_rfc3339(),
                    run: String::new(),
                    path: path.to_string_lossy().into_owned(),
                    size,
                    modified_ns,
                    oss_object: address.clone(),
                });
            }
            let resolved = match &result {
                Ok(_) => Ok(address.clone()),
                Err(reason) => {
                    tracing::warn!(file = %path.display(), %reason, "not uploaded");
                    Err(reason.clone())
                }
            };
            local.resolved.insert(path, resolved);
        }
    }
    (local, uploads, records)
}

/// `oss://BUCKET/PREFIX<sha256>.<ext>`: the object a photo's content goes to.
fn address_of(to: &Destination, photo: &Photo) -> String {
    format!(
        "oss://{}/{}{}.{}",
        to.bucket, to.prefix, photo.sha256, photo.extension
    )
}

async fn upload_one(
    client: &Client,
    path: &Path,
    address: &str,
    to: &Destination,
) -> Result<Uploaded, String> {
    let owned = path.to_path_buf();
    let photo = tokio::task::spawn_blocking(move || read_photo(&owned))
        .await
        .map_err(|e| format!("internal error reading {}: {e}", path.display()))??;
    if address_of(to, &photo) != address {
        return Err(format!(
            "{} changed while it was being uploaded; the next run uploads what it then holds",
            path.display()
        ));
    }
    let mut last = String::new();
    // A reset or a 5xx may have stored it or not: trying again is safe, since an object already
    // there answers 409, which is success for a key named by its content.
    for _ in 0..3 {
        match client
            .put_object(address, photo.bytes.clone(), photo.content_type, &photo.md5)
            .await
        {
            Ok(done) => return Ok(done),
            Err(error) if error.status().is_none_or(|s| s >= 500) => last = error.to_string(),
            Err(error) => {
                return Err(format!(
                    "{}: OSS refused the upload: {error}",
                    path.display()
                ));
            }
        }
    }
    Err(format!("{}: the upload failed: {last}", path.display()))
}

impl Photo {
    /// The photo's names without its bytes (step 1 holds no file's bytes).
    fn forget_bytes(self) -> Photo {
        Photo {
            bytes: bytes::Bytes::new(),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_is_a_bucket_and_a_prefix_ending_in_a_slash() {
        let d: Destination = "oss://media-faces/staff/photos".parse().unwrap();
        assert_eq!(
            (d.bucket.as_str(), d.prefix.as_str()),
            ("media-faces", "staff/photos/")
        );
        let d: Destination = "oss://media-faces".parse().unwrap();
        assert_eq!(d.prefix, "");
        assert!("https://x/y".parse::<Destination>().is_err());
        assert!("oss://Bad_Bucket/x/".parse::<Destination>().is_err());
    }

    #[test]
    fn a_photo_is_named_by_its_content_and_other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let jpeg = dir.path().join("a.png");
        std::fs::write(&jpeg, b"\xFF\xD8\xFF\xE0 a jpeg\xFF\xD9\0").unwrap();
        let photo = read_photo(&jpeg).unwrap();
        assert_eq!(photo.extension, "jpg", "named by its bytes, not its suffix");
        assert_eq!(
            photo.sha256,
            hex::encode(sha2::Sha256::digest(b"\xFF\xD8\xFF\xE0 a jpeg\xFF\xD9\0"))
        );
        let cut = dir.path().join("cut.jpg");
        std::fs::write(&cut, b"\xFF\xD8\xFF\xE0 a jpeg\xFF").unwrap();
        assert!(read_photo(&cut).unwrap_err().contains("not a whole JPEG"));
        let png = dir.path().join("cut.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\n no end").unwrap();
        assert!(read_photo(&png).unwrap_err().contains("not a whole PNG"));
        let text = dir.path().join("notes.jpg");
        std::fs::write(&text, b"hello").unwrap();
        assert!(read_photo(&text).unwrap_err().contains("not a JPEG or PNG"));
        let empty = dir.path().join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        assert!(read_photo(&empty).unwrap_err().contains("is empty"));
    }
}
