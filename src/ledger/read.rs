//! The one reader of the ledger: every command (replay before a run, status, export, verify,
//! rollback) streams it through here. One borrowed view per line, handed to a callback and
//! dropped, so a ledger of millions of lines is read in constant memory. The view is the wide
//! [`View`] (every field) for the commands, or a narrower one ([`ScanAs`]) for a reader that
//! needs few fields and many lines — replay before a run — through the same scan and checks.
//!
//! Only a torn *last* line is tolerated (skipped, and measured so a writer can cut it off); any
//! other unreadable line is an error naming file, line and column. A line longer than
//! [`MAX_LINE_BYTES`] is corruption too, and only regular files are read (never `/dev/zero`).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};

use serde::Deserialize;

use super::LedgerError;
pub use super::record::LineKind;
pub use super::record::{ReplayView, View};
use super::record::{SCHEMA_VERSION, Status, TargetName};

/// The longest line a ledger may hold; the longest real record is a few kilobytes.
pub const MAX_LINE_BYTES: u64 = 1 << 20;

impl ReplayView<'_> {
    pub fn run(&self) -> &str {
        self.run.as_deref().unwrap_or_default()
    }
}

/// Scans into the narrow [`ReplayView`].
pub struct Narrow;

impl ScanAs for Narrow {
    type View<'a> = ReplayView<'a>;
}

/// The scan's accessors for a view type: both views name these fields alike.
macro_rules! line_view {
    ($view:ident) => {
        impl<'a> LineView<'a> for $view<'a> {
            fn version(&self) -> Option<u32> {
                self.v
            }
            fn kind(&self) -> Option<LineKind> {
                self.kind
            }
            fn status(&self) -> Option<Status> {
                self.status
            }
            fn image_ids(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
                (
                    self.category_id.as_deref(),
                    self.person_id.as_deref(),
                    self.image_url.as_deref(),
                )
            }
            fn image_key(&self) -> Option<&str> {
                self.image_key.as_deref()
            }
        }
    };
}

line_view!(ReplayView);

/// What the scan itself needs of a line's view, whichever view it is.
pub trait LineView<'a>: Deserialize<'a> {
    fn version(&self) -> Option<u32>;
    fn kind(&self) -> Option<LineKind>;
    fn status(&self) -> Option<Status>;
    /// `category_id`, `person_id`, `image_url`.
    fn image_ids(&self) -> (Option<&str>, Option<&str>, Option<&str>);
    fn image_key(&self) -> Option<&str>;
}

/// A view type a scan decodes every line into (a type with a lifetime per line).
pub trait ScanAs {
    type View<'a>: LineView<'a>;
}

/// Scans into the wide [`View`].
pub struct Wide;

impl ScanAs for Wide {
    type View<'a> = View<'a>;
}

line_view!(View);

impl View<'_> {
    pub fn run(&self) -> &str {
        self.run.as_deref().unwrap_or_default()
    }

    /// The record is about the MTS service (absent `target` means MTS).
    pub fn is_mts(&self) -> bool {
        self.target.is_none_or(|t| t == TargetName::Mts)
    }
}

/// One complete image record: the four fields every image record has, checked.
pub struct ImageLine<'v, 'a, V = View<'a>> {
    pub view: &'v V,
    pub status: Status,
    pub category_id: &'v str,
    pub person_id: &'v str,
    pub image_url: &'v str,
    _line: std::marker::PhantomData<&'a ()>,
}

impl<'a, V: LineView<'a>> ImageLine<'_, 'a, V> {
    /// What makes the image this image: its recorded `image_key`, else its URL.
    pub fn image_id(&self) -> crate::image::ImageId<'_> {
        crate::image::ImageId::new(self.image_url, self.view.image_key())
    }

    /// The image as recorded, owned: its source and its `image_key`.
    pub fn image(&self) -> crate::image::Image {
        crate::image::Image::new(self.image_url, self.view.image_key().map(str::to_string))
    }

    /// The image's key (library, person, identity).
    pub fn key(&self) -> u128 {
        self.image_id().key(self.category_id, self.person_id)
    }
}

impl ImageLine<'_, '_> {
    pub fn is_mts(&self) -> bool {
        self.view.is_mts()
    }

    pub fn run(&self) -> &str {
        self.view.run()
    }

    pub fn face_id(&self) -> Option<&str> {
        self.view.face_id.as_deref()
    }

    /// The server's id of the image: FaceId (MTS) or SampleId (ICE).
    pub fn server_id(&self) -> Option<&str> {
        self.view
            .face_id
            .as_deref()
            .or(self.view.sample_id.as_deref())
    }
}

/// What the callback is given for each line.
pub enum Entry<'v, 'a, V = View<'a>> {
    Image(ImageLine<'v, 'a, V>),
    /// `run_start` or `run_end`.
    Run(&'v V),
    /// ICE `created` or `deleted`.
    Object(&'v V),
    /// About a person, not one image's state: a late `copy` removed, a person `settled`.
    Person(&'v V),
    /// A local photo uploaded (`upload`).
    Upload(&'v V),
    /// What pre-flight found in an image (`checked`).
    Checked(&'v V),
}

/// What a scan measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scanned {
    pub lines: u64,
    /// Bytes at the end that form no complete line; an appender cuts them off first.
    pub torn_tail: u64,
}

/// Streams the ledger at `path` through `each`. A missing file is an empty ledger when
/// `missing_ok`, else an `Open` error.
pub fn scan(
    path: &Path,
    missing_ok: bool,
    each: impl FnMut(Entry<'_, '_>),
) -> Result<Scanned, LedgerError> {
    scan_as::<Wide>(path, missing_ok, each)
}

/// [`scan`] into the view `S` names.
pub fn scan_as<S: ScanAs>(
    path: &Path,
    missing_ok: bool,
    each: impl for<'v, 'a> FnMut(Entry<'v, 'a, S::View<'a>>),
) -> Result<Scanned, LedgerError> {
    match open(path, missing_ok)? {
        Some(file) => scan_from_as::<S>(path, file, each),
        None => Ok(Scanned::default()),
    }
}

/// The ledger file, checked to be a regular file; `None` if it is missing and `missing_ok`.
fn open(path: &Path, missing_ok: bool) -> Result<Option<File>, LedgerError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LedgerError::Open {
                path: path.into(),
                source,
            });
        }
    };
    let is_file = file
        .metadata()
        .map_err(|source| LedgerError::Open {
            path: path.into(),
            source,
        })?
        .is_file();
    if !is_file {
        return Err(LedgerError::NotAFile { path: path.into() });
    }
    Ok(Some(file))
}

pub fn scan_from(
    path: &Path,
    reader: impl Read,
    each: impl FnMut(Entry<'_, '_>),
) -> Result<Scanned, LedgerError> {
    scan_from_as::<Wide>(path, reader, each)
}

/// The one scanning loop: [`scan_from`] into the view `S` names.
pub fn scan_from_as<S: ScanAs>(
    path: &Path,
    reader: impl Read,
    mut each: impl for<'v, 'a> FnMut(Entry<'v, 'a, S::View<'a>>),
) -> Result<Scanned, LedgerError> {
    let mut chunks = Chunks::new(path, reader, BLOCK_BYTES);
    while let Some(chunk) = chunks.next_chunk()? {
        chunk.each_line(path, |line, raw| apply::<S>(path, line, raw, &mut each))?;
    }
    Ok(chunks.scanned())
}

/// [`scan_as`] with the decoding spread over `workers` threads, for a reader of millions of
/// lines: one thread reads the file in blocks of whole lines, each worker decodes a block's
/// lines and folds them into a `B`, and this thread is handed each `B` by `take` in ledger
/// order. The checks and the errors are [`scan_as`]'s (the first error in ledger order wins);
/// memory stays bounded by a few blocks in flight.
pub fn scan_parallel_as<S: ScanAs, B: Default + Send>(
    path: &Path,
    missing_ok: bool,
    workers: usize,
    fold: impl for<'v, 'a> Fn(&mut B, Entry<'v, 'a, S::View<'a>>) + Sync,
    take: impl FnMut(B),
) -> Result<Scanned, LedgerError> {
    let Some(file) = open(path, missing_ok)? else {
        return Ok(Scanned::default());
    };
    scan_parallel_from_as::<S, B>(path, file, workers, BLOCK_BYTES, fold, take)
}

/// [`scan_parallel_as`] from any reader, in blocks of about `block` bytes.
fn scan_parallel_from_as<S: ScanAs, B: Default + Send>(
    path: &Path,
    reader: impl Read + Send,
    workers: usize,
    block: usize,
    fold: impl for<'v, 'a> Fn(&mut B, Entry<'v, 'a, S::View<'a>>) + Sync,
    mut take: impl FnMut(B),
) -> Result<Scanned, LedgerError> {
    let workers = workers.max(1);
    let spawn_error = |source| LedgerError::Read {
        path: path.into(),
        source,
    };
    std::thread::scope(|scope| {
        let fold = &fold;
        let mut inputs = Vec::with_capacity(workers);
        let mut outputs = Vec::with_capacity(workers);
        let mut decoders = Vec::with_capacity(workers);
        for n in 0..workers {
            let (input, chunks) = std::sync::mpsc::sync_channel::<Chunk>(2);
            let (output, folded) = std::sync::mpsc::sync_channel::<Result<B, LedgerError>>(2);
            let decoder = std::thread::Builder::new().name(format!("ledger-decode-{n}"));
            decoders.push(
                decoder
                    .spawn_scoped(scope, move || {
                        decode_blocks::<S, B>(path, chunks, output, fold)
                    })
                    .map_err(spawn_error)?,
            );
            inputs.push(input);
            outputs.push(folded);
        }
        let read_thread = std::thread::Builder::new().name("ledger-read".into());
        let read_thread = read_thread
            .spawn_scoped(scope, move || read_blocks(path, reader, block, inputs))
            .map_err(spawn_error)?;
        let failed = take_in_order(&outputs, &mut take);
        drop(outputs);
        let read = joined(read_thread);
        for decoder in decoders {
            joined(decoder);
        }
        match failed {
            Some(e) => Err(e),
            None => read,
        }
    })
}

/// A decoding thread's work: each block's lines decoded and folded into a `B` of its own, sent
/// back in turn; it stops after an error (sent in the block's place) or when no more is wanted.
fn decode_blocks<S: ScanAs, B: Default>(
    path: &Path,
    chunks: Receiver<Chunk>,
    output: SyncSender<Result<B, LedgerError>>,
    fold: &impl for<'v, 'a> Fn(&mut B, Entry<'v, 'a, S::View<'a>>),
) {
    for chunk in chunks {
        let mut folded = B::default();
        let result = chunk.each_line(path, |line, raw| {
            apply::<S>(path, line, raw, &mut |entry| fold(&mut folded, entry))
        });
        let failed = result.is_err();
        // The receiver only goes away when no more is wanted.
        if output.send(result.map(|()| folded)).is_err() || failed {
            break;
        }
    }
}

/// The reading thread's work: the reader in blocks of whole lines, dealt to the decoders'
/// `inputs` in turn; what it measured, or the first error reading.
fn read_blocks(
    path: &Path,
    reader: impl Read,
    block: usize,
    inputs: Vec<SyncSender<Chunk>>,
) -> Result<Scanned, LedgerError> {
    let mut chunks = Chunks::new(path, reader, block);
    let mut turn = 0;
    while let Some(chunk) = chunks.next_chunk()? {
        if inputs[turn % inputs.len()].send(chunk).is_err() {
            // A decoder stopped at an error, which is reported in its place.
            break;
        }
        turn += 1;
    }
    Ok(chunks.scanned())
}

/// Hands the decoders' folds to `take` in ledger order (they were dealt the blocks in turn)
/// until every block is handed over; the first error met instead, if any.
fn take_in_order<B>(
    outputs: &[Receiver<Result<B, LedgerError>>],
    take: &mut impl FnMut(B),
) -> Option<LedgerError> {
    for turn in 0.. {
        match outputs[turn % outputs.len()].recv() {
            Ok(Ok(folded)) => take(folded),
            Ok(Err(e)) => return Some(e),
            // Every block has been handed over (or a decoder panicked: its join says so).
            Err(_) => break,
        }
    }
    None
}

/// What a scoped thread returned; its panic goes on in this thread.
fn joined<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// How many bytes the scan reads at a time.
const BLOCK_BYTES: usize = 1 << 20;

#[cfg(test)]
pub(super) fn tests_block_bytes() -> usize {
    BLOCK_BYTES
}

/// A block of whole lines: it ends with a newline, and its first line's number is known.
struct Chunk {
    first_line: u64,
    bytes: Vec<u8>,
}

impl Chunk {
    /// Calls `each` with every line's number and bytes (without the newline). A line longer
    /// than [`MAX_LINE_BYTES`] is corruption.
    fn each_line(
        &self,
        path: &Path,
        mut each: impl FnMut(u64, &[u8]) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let mut start = 0;
        for (line, end) in (self.first_line..).zip(memchr::memchr_iter(b'\n', &self.bytes)) {
            let raw = &self.bytes[start..end];
            if raw.len() as u64 > MAX_LINE_BYTES {
                return Err(too_long(path, line));
            }
            each(line, raw)?;
            start = end + 1;
        }
        Ok(())
    }
}

fn too_long(path: &Path, line: u64) -> LedgerError {
    LedgerError::Corrupt {
        path: path.into(),
        line,
        column: 1,
        problem: format!("a line longer than {MAX_LINE_BYTES} bytes: this is not a ledger"),
    }
}

/// Reads a ledger in blocks of whole lines; the bytes after the last newline (a torn tail)
/// are measured, not handed out.
struct Chunks<'p, R> {
    path: &'p Path,
    reader: R,
    /// The start of a line the last block cut.
    carry: Vec<u8>,
    /// Bytes read at a time.
    block: usize,
    /// Complete lines handed out so far.
    lines: u64,
    torn_tail: u64,
    /// A read error met after some bytes: reported once the lines before it are handed out.
    failed: Option<std::io::Error>,
}

impl<'p, R: Read> Chunks<'p, R> {
    fn new(path: &'p Path, reader: R, block: usize) -> Self {
        Chunks {
            path,
            reader,
            carry: Vec::new(),
            block: block.max(1),
            lines: 0,
            torn_tail: 0,
            failed: None,
        }
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>, LedgerError> {
        loop {
            let mut bytes = std::mem::take(&mut self.carry);
            let wanted = bytes.len() + self.block;
            let at_end = self.fill(&mut bytes, wanted)?;
            match memchr::memrchr(b'\n', &bytes) {
                Some(last) => {
                    self.carry = bytes[last + 1..].to_vec();
                    bytes.truncate(last + 1);
                    let first_line = self.lines + 1;
                    self.lines += memchr::memchr_iter(b'\n', &bytes).count() as u64;
                    // A carry over the cap is caught by the next call, after these lines
                    // (an earlier damaged line is the error to report).
                    return Ok(Some(Chunk { first_line, bytes }));
                }
                None if bytes.len() as u64 > MAX_LINE_BYTES => {
                    return Err(too_long(self.path, self.lines + 1));
                }
                None if at_end => {
                    self.torn_tail = bytes.len() as u64;
                    return Ok(None);
                }
                None => self.carry = bytes,
            }
        }
    }

    /// Reads until `bytes` holds `wanted` bytes or the reader ends; says whether it ended.
    fn fill(&mut self, bytes: &mut Vec<u8>, wanted: usize) -> Result<bool, LedgerError> {
        let read_error = |source| LedgerError::Read {
            path: self.path.into(),
            source,
        };
        if let Some(source) = self.failed.take() {
            return Err(read_error(source));
        }
        let want = wanted.saturating_sub(bytes.len());
        bytes.reserve(want);
        let before = bytes.len();
        // `read_to_end` on a `take` stops at the limit or at the reader's end; on an error it
        // keeps what it read before it.
        match (&mut self.reader).take(want as u64).read_to_end(bytes) {
            Ok(read) => Ok(read < want),
            Err(source) if bytes.len() > before => {
                self.failed = Some(source);
                Ok(false)
            }
            Err(source) => Err(read_error(source)),
        }
    }

    fn scanned(&self) -> Scanned {
        Scanned {
            lines: self.lines,
            torn_tail: self.torn_tail,
        }
    }
}

/// One line handed to `each` as the entry its kind makes it; a blank line is skipped, a damaged
/// one is an error naming the line and column.
#[inline]
fn apply<S: ScanAs>(
    path: &Path,
    line: u64,
    raw: &[u8],
    each: &mut impl for<'v, 'a> FnMut(Entry<'v, 'a, S::View<'a>>),
) -> Result<(), LedgerError> {
    let text = raw.trim_ascii();
    if text.is_empty() {
        return Ok(());
    }
    let view: S::View<'_> = decode(path, line, text)?;
    hand_out::<S>(path, line, &view, each)
}

/// The line's record as the view `V`, of a schema version this build reads.
#[inline]
fn decode<'a, V: LineView<'a>>(path: &Path, line: u64, text: &'a [u8]) -> Result<V, LedgerError> {
    let corrupt = |column: u64, problem: String| LedgerError::Corrupt {
        path: path.into(),
        line,
        column,
        problem,
    };
    // The line checked as UTF-8 at once (the fast whole-slice check), so the JSON parser need
    // not check each string again.
    let text = std::str::from_utf8(text).map_err(|e| {
        corrupt(
            utf8_error_column(text, &e),
            format!("not a ledger record (not UTF-8: {e})"),
        )
    })?;
    let view: V = serde_json::from_str(text)
        .map_err(|e| corrupt(e.column() as u64, format!("not a ledger record ({e})")))?;
    let version = view
        .version()
        .ok_or_else(|| corrupt(1, "the record has no version field \"v\"".into()))?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::TooNew {
            path: path.into(),
            line,
            version,
        });
    }
    Ok(view)
}

/// The column (1-based, in characters) of the first byte of `text` that is not UTF-8.
fn utf8_error_column(text: &[u8], error: &std::str::Utf8Error) -> u64 {
    let column = text[..error.valid_up_to()]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count();
    column as u64 + 1
}

/// Hands `view` to `each` as the entry its kind makes it, once the fields that kind needs are
/// there; kinds from later versions of the same schema are not ours to interpret.
#[inline]
fn hand_out<'v, 'a, S: ScanAs>(
    path: &Path,
    line: u64,
    view: &'v S::View<'a>,
    each: &mut impl for<'w, 'b> FnMut(Entry<'w, 'b, S::View<'b>>),
) -> Result<(), LedgerError> {
    let entry = match view.kind() {
        Some(LineKind::Image) => Entry::Image(image_entry(path, line, view)?),
        Some(LineKind::RunStart | LineKind::RunEnd) => Entry::Run(view),
        Some(LineKind::Created | LineKind::Deleted) => Entry::Object(view),
        Some(LineKind::Copy | LineKind::Settled) => {
            let (category_id, person_id, _) = view.image_ids();
            if category_id.is_none() || person_id.is_none() {
                return Err(LedgerError::Corrupt {
                    path: path.into(),
                    line,
                    column: 1,
                    problem: "a copy or settled record needs category_id and person_id".into(),
                });
            }
            Entry::Person(view)
        }
        Some(LineKind::Upload) => Entry::Upload(view),
        Some(LineKind::Checked) => Entry::Checked(view),
        _ => return Ok(()),
    };
    each(entry);
    Ok(())
}

/// An image record with the four fields every image record has, checked.
#[inline]
fn image_entry<'v, 'a, V: LineView<'a>>(
    path: &Path,
    line: u64,
    view: &'v V,
) -> Result<ImageLine<'v, 'a, V>, LedgerError> {
    let (Some(category_id), Some(person_id), Some(image_url)) = view.image_ids() else {
        return Err(missing_image_fields(path, line));
    };
    let Some(status) = view.status() else {
        return Err(missing_image_fields(path, line));
    };
    Ok(ImageLine {
        view,
        status,
        category_id,
        person_id,
        image_url,
        _line: std::marker::PhantomData,
    })
}

fn missing_image_fields(path: &Path, line: u64) -> LedgerError {
    LedgerError::Corrupt {
        path: path.into(),
        line,
        column: 1,
        problem: "an image record needs category_id, person_id, image_url and status".into(),
    }
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
