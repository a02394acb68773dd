//! `run --upload-to oss://BUCKET/PREFIX/`: the local photos a manifest names go to OSS, each
//! under a key named by its content — `PREFIX/<sha256>.jpg|png` — so a renamed or moved file is
//! the same object (and the same image), and the same bytes twice are one. A PUT never replaces
//! an object (`x-oss-forbid-overwrite`: 409 means the bytes are there already) and carries
//! `Content-MD5`, so OSS refuses a damaged body.
//!
//! Two steps. Before the import plans, every file is *named* ([`prepare`]): read, checked to be
//! a whole JPEG or PNG, hashed; its row then reads as the object it will be. While the import
//! runs, a bounded stage ([`Stage`], `--upload-concurrency` at once) uploads them in the order
//! the workers will need them; a worker waits at the [`Gate`] only for its own person's photos,
//! so registration starts after the first uploads, not the last. The upload reads the file
//! again and sends it only if it still has the hash its row was planned with.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures::StreamExt as _;
use sha2::Digest as _;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::api::{ApiError, Client, ErrorClass, Uploaded};
use crate::ledger::record::UploadRecord;
use crate::manifest::LocalFiles;
use crate::stop::Stop;

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

/// Why an `--upload-to` is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("`{text}`: write oss://BUCKET/PREFIX/")]
    NotOss { text: String },
    #[error(transparent)]
    Bucket(#[from] crate::sign::oss::object::ObjectError),
}

impl std::str::FromStr for Destination {
    type Err = DestinationError;

    fn from_str(text: &str) -> Result<Destination, DestinationError> {
        let rest = text
            .strip_prefix("oss://")
            .ok_or_else(|| DestinationError::NotOss {
                text: text.to_string(),
            })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        crate::sign::oss::object::check_bucket(bucket)?;
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
pub fn journaled(ledger: &Path) -> HashMap<PathBuf, (Stamp, String)> {
    let mut known = HashMap::new();
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
/// so those rows show as the images they became, not as files still to upload. The ledger is
/// read for it only when a row names a local file.
pub fn read_uploads_from_journal(read: &crate::manifest::ReadOptions, ledger: &Path) {
    let ledger = ledger.to_path_buf();
    read.set_uploaded_from(move || {
        let mut local = LocalFiles::default();
        for (path, (then, object)) in journaled(&ledger) {
            if stamp(&path) == Some(then) {
                local.resolved.insert(path, Ok(object));
            }
        }
        local
    });
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

/// What the upload stage did: the summary's `uploads`.
pub use crate::report::Uploads;

/// Why a local file is not a photo that can go: decided when it is named, before planning;
/// its row is invalid with this reason.
#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is {size} bytes; photos of at most {MAX_BYTES} bytes (5 MB) are uploaded", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{} is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{} is not a whole {format} ({why}): a copy cut short?", path.display())]
    CutShort {
        path: PathBuf,
        format: &'static str,
        why: &'static str,
    },
    #[error("{} is not a JPEG or PNG image (by its first bytes)", path.display())]
    NotAnImage { path: PathBuf },
}

/// Why a named photo was not uploaded: its rows are not sent, and the next run tries again.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{} changed after it was named; the next run uploads what it then holds", path.display())]
    Changed { path: PathBuf },
    #[error("{}: read again to upload it: {source}", path.display())]
    Reread { path: PathBuf, source: PhotoError },
    #[error("{}: OSS refused the upload: {error}", path.display())]
    Refused { path: PathBuf, error: ApiError },
    #[error("{}: the upload failed: {error}", path.display())]
    Failed { path: PathBuf, error: ApiError },
    #[error("{object}: not uploaded: the run stopped first")]
    Stopped { object: String },
    #[error("{object}: not uploaded: pre-flight refused it, so no row sends it")]
    KeptBack { object: String },
}

impl UploadError {
    /// The error the image's row is recorded with: OSS's own code when it answered, so that a
    /// refused key or permission stops the run as run-fatal like any request.
    pub fn api_error(&self) -> ApiError {
        match self {
            UploadError::Refused { error, .. } | UploadError::Failed { error, .. } => {
                // A 403 is a permission the run's credentials lack (`oss:PutObject` on the
                // prefix), a missing bucket a mistyped --upload-to: every upload would meet
                // them, like a local configuration error (kept run-fatal).
                let run_wide = error.status() == Some(403)
                    || error.code() == "NoSuchBucket"
                    || error.class() == ErrorClass::RunFatal;
                let class = if run_wide {
                    ErrorClass::RunFatal
                } else {
                    error.class()
                };
                ApiError::with_class(class, error.status(), error.code(), self.to_string())
            }
            _ => ApiError::with_class(
                ErrorClass::OutcomeUnknown,
                None,
                "UploadFailed",
                self.to_string(),
            ),
        }
    }
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
/// them, or why it would not be uploaded: what `report` shows for a file no run has uploaded.
pub fn read_local_photo(path: &Path) -> Result<Vec<u8>, PhotoError> {
    read_checked(path).map(|(bytes, _)| bytes)
}

/// Reads `path` whole and names it, or says why it is not a photo that can go.
fn read_photo(path: &Path) -> Result<Photo, PhotoError> {
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

/// `path`'s bytes with their content type and suffix, or why they are no photo to upload.
fn read_checked(path: &Path) -> Result<(Vec<u8>, (&'static str, &'static str)), PhotoError> {
    let unreadable = |source| PhotoError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.len() > MAX_BYTES {
        return Err(PhotoError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    let cut = |format, why| PhotoError::CutShort {
        path: path.to_path_buf(),
        format,
        why,
    };
    let (content_type, extension) = if bytes.starts_with(JPEG) {
        if !whole_jpeg(&bytes) {
            return Err(cut("JPEG", "it does not end with the end-of-image marker"));
        }
        ("image/jpeg", "jpg")
    } else if bytes.starts_with(PNG) {
        if !whole_png(&bytes) {
            return Err(cut("PNG", "no IEND chunk at its end"));
        }
        ("image/png", "png")
    } else if bytes.is_empty() {
        return Err(PhotoError::Empty {
            path: path.to_path_buf(),
        });
    } else {
        return Err(PhotoError::NotAnImage {
            path: path.to_path_buf(),
        });
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

/// One content to upload: its object, and the files that hold it (the first is the one read
/// for the upload), each with its stamp when it was named.
#[derive(Debug)]
pub struct Pending {
    pub address: String,
    files: Vec<(PathBuf, Option<Stamp>)>,
}

impl Pending {
    /// The file the upload reads.
    pub fn path(&self) -> &Path {
        &self.files[0].0
    }
}

/// A file in the manifest's order, its stamp, and its name by content (or why it has none).
type Named = (usize, PathBuf, Option<Stamp>, Result<Photo, PhotoError>);

/// The files named before planning, waiting for the stage that uploads them.
#[derive(Debug, Default)]
pub struct Prepared {
    pub to: Option<Destination>,
    pub concurrency: usize,
    /// In the manifest's order, one per content.
    pub queue: Vec<Pending>,
    pub counts: Uploads,
}

/// Names every file of `files` by its content (`concurrency` at once; nothing is held but the
/// names) and says what each row will read as: the object its content goes to, or why it is no
/// photo. Files an earlier run uploaded, unchanged since and under this destination, are not
/// read: their object is known.
pub async fn prepare(
    files: Vec<PathBuf>,
    to: &Destination,
    concurrency: usize,
    known: &HashMap<PathBuf, (Stamp, String)>,
) -> (LocalFiles, Prepared) {
    let concurrency = concurrency.max(1);
    let started = crate::clock::instant();
    let mut counts = Uploads {
        files: files.len() as u64,
        ..Uploads::default()
    };
    let mut local = LocalFiles::default();
    let mut files_to_read = Vec::new();
    let prefix = format!("oss://{}/{}", to.bucket, to.prefix);
    for path in files {
        let now = stamp(&path);
        match (now, known.get(&path)) {
            (Some(now), Some((then, object))) if now == *then && object.starts_with(&prefix) => {
                counts.unchanged += 1;
                local.resolved.insert(path, Ok(object.clone()));
            }
            _ => files_to_read.push((path, now)),
        }
    }
    let named: Vec<Named> = futures::stream::iter(files_to_read.into_iter().enumerate())
        .map(|(order, (path, now))| async move {
            let owned = path.clone();
            let named = tokio::task::spawn_blocking(move || read_photo(&owned))
                .await
                .unwrap_or_else(|e| {
                    Err(PhotoError::Unreadable {
                        path: path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })
                })
                .map(Photo::forget_bytes);
            (order, path, now, named)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut named = named;
    named.sort_by_key(|(order, ..)| *order);
    let mut queue: Vec<Pending> = Vec::new();
    let mut by_address: HashMap<String, usize> = HashMap::new();
    for (_, path, now, photo) in named {
        match photo {
            Ok(photo) => {
                let address = address_of(to, &photo);
                local.resolved.insert(path.clone(), Ok(address.clone()));
                match by_address.get(&address) {
                    Some(&i) => queue[i].files.push((path, now)),
                    None => {
                        by_address.insert(address.clone(), queue.len());
                        queue.push(Pending {
                            address,
                            files: vec![(path, now)],
                        });
                    }
                }
            }
            Err(reason) => {
                counts.refused += 1;
                tracing::warn!(file = %path.display(), %reason, "not uploaded");
                local.resolved.insert(path, Err(reason.to_string()));
            }
        }
    }
    counts.naming_s = started.elapsed().as_secs_f64();
    let prepared = Prepared {
        to: Some(to.clone()),
        concurrency,
        queue,
        counts,
    };
    (local, prepared)
}

/// Where each object of the stage is: on its way, there, or not to be had this run.
enum Slot {
    Waiting,
    Done,
    Failed(Arc<UploadError>),
}

/// Where the workers wait for the photos they are about to send.
pub struct Gate {
    slots: Mutex<HashMap<String, Slot>>,
    settled: tokio::sync::watch::Sender<u64>,
}

impl Gate {
    fn new(addresses: impl Iterator<Item = String>) -> Gate {
        Gate {
            slots: Mutex::new(addresses.map(|a| (a, Slot::Waiting)).collect()),
            settled: tokio::sync::watch::Sender::new(0),
        }
    }

    fn settle(&self, address: &str, slot: Slot) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(address.to_string(), slot);
        self.settled.send_modify(|n| *n += 1);
    }

    /// Every object still on its way: not uploaded this run.
    fn give_up(&self, why: impl Fn(&str) -> UploadError) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for (address, slot) in slots.iter_mut() {
            if matches!(slot, Slot::Waiting) {
                *slot = Slot::Failed(Arc::new(why(address)));
            }
        }
        drop(slots);
        self.settled.send_modify(|n| *n += 1);
    }

    /// Waits until `image` is uploaded (or was never this stage's); the error when it will not
    /// be this run.
    pub async fn wait(&self, image: &str) -> Result<(), Arc<UploadError>> {
        let mut settled = self.settled.subscribe();
        // Each turn consumes one settlement, and every address is settled once: bounded.
        loop {
            match self
                .slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(image)
            {
                None | Some(Slot::Done) => return Ok(()),
                Some(Slot::Failed(error)) => return Err(error.clone()),
                Some(Slot::Waiting) => {}
            }
            if settled.changed().await.is_err() {
                // Cannot happen while the gate lives (it holds the sender); were it to, the
                // photo is not known to be there: not sent.
                return Err(Arc::new(UploadError::Stopped {
                    object: image.to_string(),
                }));
            }
        }
    }
}

/// Settles what is still waiting when the stage ends early (a panic included): no worker
/// waits for an upload that will not come.
struct GiveUpOnDrop(Arc<Gate>);

impl Drop for GiveUpOnDrop {
    fn drop(&mut self) {
        self.0.give_up(|address| UploadError::Stopped {
            object: address.to_string(),
        });
    }
}

/// The upload stage of a run: started once the plan says which photos it sends.
pub struct Stage {
    pub gate: Arc<Gate>,
    task: tokio::task::JoinHandle<Uploads>,
}

impl Stage {
    /// Starts uploading `prepared`'s photos: first those of `needed` (the plan's images, in the
    /// order the workers take them), then the rest (rows that are already registered, or
    /// invalid for another reason: uploaded too, so that the next run knows their files).
    /// `journal` receives a record for every file whose object is now known to be there.
    /// `kept_back`: objects no row sends because pre-flight refused them: never uploaded (a
    /// photo the service would refuse has no business in the bucket), counted as refused.
    pub fn start(
        client: Client,
        prepared: Arc<Prepared>,
        needed: &[&str],
        kept_back: &[&str],
        journal: impl Fn(UploadRecord) + Send + Sync + 'static,
        stop: Arc<Stop>,
    ) -> Stage {
        let position: HashMap<&str, usize> = prepared
            .queue
            .iter()
            .enumerate()
            .map(|(i, p)| (p.address.as_str(), i))
            .collect();
        let mut order = Vec::with_capacity(prepared.queue.len());
        let mut taken = vec![false; prepared.queue.len()];
        for address in needed {
            if let Some(&i) = position.get(address)
                && !std::mem::replace(&mut taken[i], true)
            {
                order.push(i);
            }
        }
        // Kept back unless a row needs the same content after all.
        let mut skipped = Vec::new();
        for address in kept_back {
            if let Some(&i) = position.get(address)
                && !std::mem::replace(&mut taken[i], true)
            {
                skipped.push(i);
            }
        }
        order.extend((0..prepared.queue.len()).filter(|&i| !taken[i]));
        let gate = Arc::new(Gate::new(prepared.queue.iter().map(|p| p.address.clone())));
        let mut skipped_files = 0;
        for i in skipped {
            let pending = &prepared.queue[i];
            skipped_files += pending.files.len() as u64;
            let error = UploadError::KeptBack {
                object: pending.address.clone(),
            };
            gate.settle(&pending.address, Slot::Failed(Arc::new(error)));
        }
        let driven = gate.clone();
        let task = tokio::spawn(async move {
            let mut uploads = drive(client, prepared, order, driven, journal, stop).await;
            uploads.refused += skipped_files;
            uploads
        });
        Stage { gate, task }
    }

    /// Waits for the uploads still running (those no worker needed) and says what the stage
    /// did.
    pub async fn finish(self) -> Uploads {
        let gate = self.gate.clone();
        let uploads = match self.task.await {
            Ok(uploads) => uploads,
            Err(e) => {
                // A bug: every photo still waiting was settled as not uploaded (not sent).
                tracing::error!(error = %e, "the upload stage ended abnormally; the next run uploads what is missing");
                Uploads::default()
            }
        };
        gate.give_up(|address| UploadError::Stopped {
            object: address.to_string(),
        });
        uploads
    }
}

async fn drive(
    client: Client,
    prepared: Arc<Prepared>,
    order: Vec<usize>,
    gate: Arc<Gate>,
    journal: impl Fn(UploadRecord) + Send + Sync + 'static,
    stop: Arc<Stop>,
) -> Uploads {
    let _settle_the_rest = GiveUpOnDrop(gate.clone());
    let started = crate::clock::instant();
    let mut counts = prepared.counts.clone();
    let Some(to) = prepared.to.clone() else {
        return counts;
    };
    // OSS answered something (a stored object, a refusal): a failed connection after that is
    // a row's trouble, not an outage.
    let mut answered = false;
    let (client, to, gate_ref, stop) = (&client, &to, &gate, &stop);
    let mut done = futures::stream::iter(order)
        .map(|i| {
            let pending = &prepared.queue[i];
            async move {
                let result = match stop.until(upload_one(client, pending, to)).await {
                    Some(result) => result,
                    None => Err(UploadError::Stopped {
                        object: pending.address.clone(),
                    }),
                };
                (pending, result)
            }
        })
        .buffer_unordered(prepared.concurrency.max(1));
    while let Some((pending, result)) = done.next().await {
        // Every count is of files, as `files` is: one content may be several files.
        let files = pending.files.len() as u64;
        match &result {
            Ok(Uploaded::Stored) => counts.uploaded += files,
            Ok(Uploaded::AlreadyThere) => counts.already_there += files,
            Err(UploadError::Stopped { .. }) => counts.stopped += files,
            Err(_) => counts.refused += files,
        }
        match &result {
            Ok(_) | Err(UploadError::Refused { .. }) => answered = true,
            // Every try of an upload failed to connect and OSS never answered this run: it
            // cannot be reached, an outage (exit 6) rather than rows left for the next run.
            Err(UploadError::Failed { error, .. })
                if !answered && error.code() == "ConnectFailed" =>
            {
                stop.unreachable(error.clone());
            }
            Err(_) => {}
        }
        match result {
            Ok(_) => {
                for (path, stamp) in &pending.files {
                    if let Some((size, modified_ns)) = *stamp {
                        journal(UploadRecord {
                            ts: crate::clock::now_rfc3339(),
                            run: String::new(),
                            path: path.to_string_lossy().into_owned(),
                            size,
                            modified_ns,
                            oss_object: pending.address.clone(),
                        });
                    }
                }
                gate_ref.settle(&pending.address, Slot::Done);
            }
            Err(error) => {
                if !matches!(error, UploadError::Stopped { .. }) {
                    tracing::warn!(reason = %error, "not uploaded");
                }
                gate_ref.settle(&pending.address, Slot::Failed(Arc::new(error)));
            }
        }
    }
    counts.uploading_s = started.elapsed().as_secs_f64();
    counts
}

/// `oss://BUCKET/PREFIX<sha256>.<ext>`: the object a photo's content goes to.
fn address_of(to: &Destination, photo: &Photo) -> String {
    format!(
        "oss://{}/{}{}.{}",
        to.bucket, to.prefix, photo.sha256, photo.extension
    )
}

/// Reads the content's first file again and uploads it, if it still holds what it was named
/// for. A reset or a 5xx may have stored it or not: trying again is safe, since an object
/// already there answers 409, which is success for a key named by its content.
async fn upload_one(
    client: &Client,
    pending: &Pending,
    to: &Destination,
) -> Result<Uploaded, UploadError> {
    let path = pending.path().to_path_buf();
    let owned = path.clone();
    let photo = tokio::task::spawn_blocking(move || read_photo(&owned))
        .await
        .unwrap_or_else(|e| {
            Err(PhotoError::Unreadable {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })
        })
        .map_err(|source| UploadError::Reread {
            path: path.clone(),
            source,
        })?;
    if address_of(to, &photo) != pending.address {
        return Err(UploadError::Changed { path });
    }
    let mut last = None;
    for attempt in 0..3u32 {
        if attempt > 0 {
            // A short pause before the next try: OSS's 5xx and resets are mostly brief.
            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
        }
        match client
            .put_object(
                &pending.address,
                photo.bytes.clone(),
                photo.content_type,
                &photo.md5,
            )
            .await
        {
            Ok(done) => return Ok(done),
            // A reset, a timeout or a 5xx may pass; a refusal or a configuration error will not.
            Err(error)
                if matches!(
                    error.class(),
                    ErrorClass::Transient | ErrorClass::OutcomeUnknown | ErrorClass::Throttled
                ) =>
            {
                last = Some(error)
            }
            Err(error) => return Err(UploadError::Refused { path, error }),
        }
    }
    let error = last.unwrap_or_else(|| ApiError::new(None, "UploadFailed", "no attempt made"));
    Err(UploadError::Failed { path, error })
}

impl Photo {
    /// The photo's names without its bytes (naming holds no file's bytes).
    fn forget_bytes(self) -> Photo {
        Photo {
            bytes: bytes::Bytes::new(),
            ..self
        }
    }
}

/// A manifest's local photos and where `--upload-to` puts them: `run` names them and uploads
/// them, `check` names them only, to plan as the run would.
pub struct LocalPhotos<'a> {
    pub manifest: &'a Path,
    pub to: Option<&'a Destination>,
    pub concurrency: usize,
    pub ledger: PathBuf,
    /// The built-in sandbox's OSS is new each run: everything is uploaded again.
    pub sandbox: bool,
}

impl LocalPhotos<'_> {
    /// Names each local photo by its content, so that each row reads as the object its file
    /// is (or will be); `None` when the manifest names no local file. Local files without a
    /// destination: the message to refuse the command with.
    pub async fn name(
        &self,
        read: &crate::manifest::ReadOptions,
    ) -> Result<Option<Prepared>, String> {
        let manifest = self.manifest.to_path_buf();
        let reading = read.clone();
        let found = tokio::task::spawn_blocking(move || {
            crate::manifest::Reader::open(&manifest, &reading).and_then(|r| r.local_files())
        })
        .await;
        let files = match found {
            Ok(Ok(files)) => files,
            // The planner reads the manifest again and reports what is wrong with it.
            Ok(Err(_)) => return Ok(None),
            Err(e) => return Err(format!("internal error: {e}")),
        };
        if files.is_empty() {
            return Ok(None);
        }
        let Some(to) = self.to else {
            let (line, path) = &files[0];
            return Err(format!(
                "{}: line {line} names the local file {} ({} local files in all): give \
                 --upload-to oss://BUCKET/PREFIX/ to upload them and send them as those objects",
                self.manifest.display(),
                path.display(),
                files.len()
            ));
        };
        let paths = files.into_iter().map(|(_, path)| path).collect();
        let known = if self.sandbox {
            Default::default()
        } else {
            let ledger = self.ledger.clone();
            tokio::task::spawn_blocking(move || journaled(&ledger))
                .await
                .unwrap_or_default()
        };
        let (local, prepared) = prepare(paths, to, self.concurrency, &known).await;
        let c = &prepared.counts;
        tracing::info!(
            files = c.files,
            to_upload = prepared.queue.len(),
            unchanged = c.unchanged,
            refused = c.refused,
            "local photos named by their content, for oss://{}/{}",
            to.bucket,
            to.prefix
        );
        read.set_uploaded(local);
        Ok(Some(prepared))
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
    fn an_upload_oss_refuses_for_lack_of_permission_stops_the_run_and_a_failed_one_is_retried() {
        use crate::api::ErrorClass;
        let path = PathBuf::from("/photos/a.jpg");
        let denied = UploadError::Refused {
            path: path.clone(),
            error: ApiError::new(Some(403), "AccessDenied", "no oss:PutObject"),
        };
        assert_eq!(denied.api_error().class(), ErrorClass::RunFatal);
        assert_eq!(denied.api_error().code(), "AccessDenied");
        let failed = UploadError::Failed {
            path: path.clone(),
            error: ApiError::new(Some(500), "InternalError", "try again"),
        };
        assert_eq!(failed.api_error().class(), ErrorClass::OutcomeUnknown);
        assert!(failed.api_error().message().contains("/photos/a.jpg"));
        let no_bucket = UploadError::Refused {
            path: path.clone(),
            error: ApiError::new(Some(404), "NoSuchBucket", "mistyped"),
        };
        assert_eq!(no_bucket.api_error().class(), ErrorClass::RunFatal);
        let no_endpoint = UploadError::Refused {
            path: path.clone(),
            error: ApiError::config("NoOssEndpoint", "no OSS region"),
        };
        assert_eq!(no_endpoint.api_error().class(), ErrorClass::RunFatal);
        let changed = UploadError::Changed { path };
        assert_eq!(changed.api_error().code(), "UploadFailed");
        assert_ne!(changed.api_error().class(), ErrorClass::RunFatal);
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
        assert!(
            read_photo(&cut)
                .unwrap_err()
                .to_string()
                .contains("not a whole JPEG")
        );
        let png = dir.path().join("cut.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\n no end").unwrap();
        assert!(
            read_photo(&png)
                .unwrap_err()
                .to_string()
                .contains("not a whole PNG")
        );
        let text = dir.path().join("notes.jpg");
        std::fs::write(&text, b"hello").unwrap();
        assert!(
            read_photo(&text)
                .unwrap_err()
                .to_string()
                .contains("not a JPEG or PNG")
        );
        let empty = dir.path().join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        assert!(
            read_photo(&empty)
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
    }
}
