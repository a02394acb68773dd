//! The CSV manifest: reading it as a stream of validated rows, one [`Entry`] per record.
//! A bad row is data ([`InvalidRow`]); only a file that is unusable as a whole is an error.

mod encoding;
mod error;
mod folder;
mod header;
mod local;
mod options;
mod row;
mod validate;
mod workbook;

use std::fs::File;
use std::io::{self, Read};
use std::iter::FusedIterator;
use std::path::{Path, PathBuf};

use csv::{ByteRecord, Position};

pub use encoding::Encoding;
pub use error::ManifestError;
pub use folder::Layout;
pub use header::{ColumnMap, Columns};
pub use local::{LocalFiles, local_path, readable_local_path};
pub use options::{Loader, ReadOptions};
pub use validate::{is_system_library, validate_id, validate_url};

use crate::image::Image;

/// A row that passed every check; ids, URL and name are trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// 1-based line on which the record starts.
    pub line: u64,
    pub category_id: String,
    pub person_id: String,
    /// `None` when the column is absent or the cell is empty.
    pub person_name: Option<String>,
    /// The photo column's source and the `image_key` column (a row with an `image_sha256` has
    /// `sha256:<hex>` as its key: its bytes are its identity).
    pub image: Image,
}

impl Row {
    /// What makes this image this image: its `image_key`, else its canonical URL.
    pub fn image_id(&self) -> crate::image::ImageId<'_> {
        self.image.id()
    }
}

/// The prefix of an identity that is the image's bytes: `sha256:<64 hex digits>`, which the
/// `image_sha256` column gives (or an `image_key` written so).
pub const SHA256_KEY: &str = "sha256:";

/// The SHA-256 (lower-case hex) an image's identity holds it to, if it is one of bytes.
pub fn declared_sha256(image_key: Option<&str>) -> Option<&str> {
    image_key?
        .strip_prefix(SHA256_KEY)
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A row that failed a check. The values are as raw as possible (trimmed, lossy UTF-8) so the
/// ledger and the rejects file can show the user what they wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvalidRow {
    /// 1-based line on which the record starts.
    pub line: u64,
    /// The canonical name of the failing column (`"category_id"`, ...), if one is to blame.
    pub column: Option<&'static str>,
    pub reason: String,
    pub category_id: String,
    pub person_id: String,
    pub image_url: String,
}

/// One data record of the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Valid(Row),
    Invalid(InvalidRow),
}

/// Big enough that a 100 MB manifest is read in a few hundred system calls.
const BUFFER_BYTES: usize = 256 * 1024;

/// Streams the entries of a manifest. The header is checked when the reader is made; after the
/// first `Err` the iterator ends.
pub struct Reader {
    path: PathBuf,
    csv: csv::Reader<Tally<LineEnds<Box<dyn Read + Send>>>>,
    record: ByteRecord,
    columns: Columns,
    /// The start line of the last record if it spans lines (a quoted field held a line break).
    last_multiline: Option<u64>,
    /// How the file was read: its encoding's name, or `a spreadsheet`.
    read_as: &'static str,
    tab_separated: bool,
    /// Entries of the last record not yet handed out (a row with several image columns).
    pending: std::collections::VecDeque<Entry>,
    /// The reader's line after the last record: the next record starts there or later. A
    /// floor for the counted-back line, which a quote the parser took literally (after a
    /// stray BOM, say) can leave one behind.
    next_line: u64,
    done: bool,
    /// The command's reading options, for the local files rows name.
    options: ReadOptions,
}

impl Reader {
    /// Opens a manifest file and checks its header, read as `options` say.
    pub fn open(path: &Path, options: &ReadOptions) -> Result<Reader, ManifestError> {
        if path.is_dir() {
            let text = folder::to_csv(path, Path::new(""), options)?;
            let source = Box::new(io::Cursor::new(text));
            let mut reader = Self::build(path, source, b',', options)?;
            reader.read_as = "a folder of photos";
            return Ok(reader);
        }
        let mut file = open_file(path)?;
        if workbook::is_workbook(path, &mut file) {
            let text = workbook::to_csv(path, options.sheet.as_deref())?;
            let source = Box::new(io::Cursor::new(text));
            let mut reader = Self::build(path, source, b',', options)?;
            reader.read_as = "a spreadsheet";
            return Ok(reader);
        }
        // The whole file's encoding is settled first: it is decoded whole or refused whole.
        let decoded = encoding::decode(path, file, options.encoding)?;
        let delimiter = if decoded.tabs { b'\t' } else { b',' };
        let name = decoded.name;
        let built = Self::build(path, decoded.source, delimiter, options).map(|mut reader| {
            reader.read_as = name;
            if delimiter == b'\t' {
                reader.tab_separated = true;
            }
            reader
        });
        match built {
            // Tabs and commas in the header, read as CSV, and the columns are not found: the
            // file is most likely tab-separated with commas in its names. Say so.
            Err(ManifestError::MissingColumn { line, .. })
                if decoded.tab_in_header && !decoded.tabs =>
            {
                Err(ManifestError::LooksTabSeparated {
                    path: path.to_path_buf(),
                    line,
                })
            }
            // Fewer names than the three required, with semicolons in them: the header is one
            // or two cells of a semicolon-separated file.
            Err(ManifestError::MissingColumn {
                line, ref found, ..
            }) if !decoded.tabs
                && found.len() < 3
                && found.iter().any(|name| name.contains(';')) =>
            {
                Err(ManifestError::LooksSemicolonSeparated {
                    path: path.to_path_buf(),
                    line,
                })
            }
            other => other,
        }
    }

    /// Reads a manifest from any byte source, taken as UTF-8 CSV with the default options;
    /// `name` is the path used in messages.
    pub fn from_reader<R: Read + Send + 'static>(
        name: &Path,
        r: R,
    ) -> Result<Reader, ManifestError> {
        Self::build(name, Box::new(r), b',', &ReadOptions::default())
    }

    fn build(
        name: &Path,
        source: Box<dyn Read + Send>,
        delimiter: u8,
        options: &ReadOptions,
    ) -> Result<Reader, ManifestError> {
        let csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(delimiter)
            .flexible(true)
            .buffer_capacity(BUFFER_BYTES)
            .from_reader(Tally::new(LineEnds::new(source)));
        let mut reader = Reader {
            path: name.to_path_buf(),
            csv,
            record: ByteRecord::new(),
            columns: Columns {
                category_id: 0,
                person_id: 0,
                image_url: 0,
                person_name: None,
                image_key: None,
                image_sha256: None,
                more_images: Vec::new(),
                names: Vec::new(),
                base: PathBuf::new(),
            },
            pending: std::collections::VecDeque::new(),
            read_as: "UTF-8",
            tab_separated: false,
            last_multiline: None,
            next_line: 1,
            done: false,
            options: options.clone(),
        };
        reader.columns = reader.read_header()?;
        // Local paths in the manifest are relative to its folder (a folder manifest: itself).
        reader.columns.base = if name.is_dir() {
            name.to_path_buf()
        } else {
            name.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        Ok(reader)
    }

    /// Which record index each field comes from.
    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// How the file was read and which header holds which field, as `check` says it:
    /// `GB18030, tab-separated; columns category_id=部门, …`.
    pub fn describe(&self) -> String {
        format!(
            "{}{}; columns {}",
            self.read_as,
            if self.tab_separated {
                ", tab-separated"
            } else {
                ""
            },
            self.columns.describe()
        )
    }

    /// Every local file the manifest's image cells name (see [`local_path`]), with the first
    /// line naming it, in order; reads the manifest to its end.
    pub fn local_files(mut self) -> Result<Vec<(u64, PathBuf)>, ManifestError> {
        let mut seen = std::collections::HashSet::new();
        let mut files = Vec::new();
        while self.read_record()? {
            let (line, _) = self.record_lines();
            for index in self.columns.images() {
                let Some(cell) = self
                    .record
                    .get(index)
                    .and_then(|c| std::str::from_utf8(c).ok())
                else {
                    continue;
                };
                let (base, no_escape) = (&self.columns.base, self.options.no_escape);
                if let Some(path) = readable_local_path(cell.trim(), base, no_escape)
                    && seen.insert(path.clone())
                {
                    files.push((line.max(self.next_line), path));
                }
            }
            self.next_line = self.csv.position().line();
        }
        Ok(files)
    }

    /// The path the reader reports in its errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_header(&mut self) -> Result<Columns, ManifestError> {
        loop {
            if !self.read_record()? {
                let path = self.path.clone();
                return Err(if self.csv.get_ref().bytes == 0 {
                    ManifestError::Empty { path }
                } else {
                    ManifestError::NoHeader { path, line: 1 }
                });
            }
            if !row::is_blank(&self.record) {
                let (line, _) = self.record_lines();
                let binary = self.csv.get_ref().window.contains(&0);
                let map = self.options.columns.as_ref();
                return header::parse(&self.path, line, &self.record, binary, map);
            }
        }
    }

    /// Reads the next record into `self.record`; false at the end of the data.
    fn read_record(&mut self) -> Result<bool, ManifestError> {
        match self.csv.read_byte_record(&mut self.record) {
            Ok(more) => Ok(more),
            Err(error) => Err(self.csv_error(error)),
        }
    }

    /// The line on which the record just read starts, and whether it spans lines.
    ///
    /// The csv crate's record position is the reader's position *before* the read: it counts
    /// skipped blank lines and, in CRLF files, the `\n` of the previous line end, so it runs one
    /// line behind. Counting back from the reader's position after the read is exact: that
    /// position counts every `\n` consumed, which are the record's own (inside quoted fields,
    /// kept verbatim in the fields) plus its terminator when that is a `\n` and not a `\r`.
    fn record_lines(&self) -> (u64, bool) {
        let bytes = self.record.as_slice();
        let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        let spans_lines = newlines > 0 || bytes.contains(&b'\r');
        let end = self.csv.position();
        if end.byte() == 0 {
            return (1, spans_lines);
        }
        let field_ends_in_newline = bytes.ends_with(b"\n");
        let tally = self.csv.get_ref();
        let Some(ended_by_newline) = tally.ended_by_newline(end.byte(), field_ends_in_newline)
        else {
            // Not expected: the parser fetches a chunk only when the current record needs more
            // bytes. The crate's line is then the best there is (behind by blank lines at most).
            return (record_line(&self.record), spans_lines);
        };
        let line = end.line() - newlines - u64::from(ended_by_newline);
        (line.max(1), spans_lines)
    }

    fn csv_error(&self, error: csv::Error) -> ManifestError {
        let line = error
            .position()
            .map_or_else(|| self.csv.position().line(), Position::line);
        let message = error.to_string();
        let path = self.path.clone();
        match error.into_kind() {
            csv::ErrorKind::Io(error) => ManifestError::Read { path, line, error },
            _ => ManifestError::Syntax {
                path,
                line,
                message,
            },
        }
    }

    /// At the end of the data: an odd number of `"` in the file and a last record that spans
    /// lines means a quote was opened and never closed, and that record swallowed the rest.
    fn unclosed_quote(&self) -> Option<ManifestError> {
        let line = self.last_multiline?;
        (self.csv.get_ref().quotes % 2 == 1).then(|| ManifestError::UnclosedQuote {
            path: self.path.clone(),
            line,
        })
    }
}

impl Iterator for Reader {
    type Item = Result<Entry, ManifestError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.pending.pop_front() {
            return Some(Ok(entry));
        }
        while !self.done {
            match self.read_record() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return self.unclosed_quote().map(Err);
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
            let (line, spans_lines) = self.record_lines();
            let line = line.max(self.next_line);
            self.next_line = self.csv.position().line();
            self.last_multiline = spans_lines.then_some(line);
            if !row::is_blank(&self.record) {
                if self.columns.more_images.is_empty() {
                    let entry = row::to_entry(&self.record, &self.columns, &self.options, line);
                    return Some(Ok(entry));
                }
                let entries = row::to_entries(&self.record, &self.columns, &self.options, line);
                self.pending = entries.into();
                return self.pending.pop_front().map(Ok);
            }
        }
        None
    }
}

impl FusedIterator for Reader {}

/// Entries read per hand-over by [`Reader::read_ahead`] (32 KiB of them).
const READ_AHEAD_BATCH: usize = 256;

impl Reader {
    /// The same entries in the same order, read on a thread of their own a few batches ahead
    /// of the consumer, so parsing and checking rows overlaps with planning them.
    pub fn read_ahead(self) -> ReadAhead {
        let (batches, received) = std::sync::mpsc::sync_channel(16);
        let (used, used_back) = std::sync::mpsc::sync_channel::<Batch>(32);
        let reader = std::thread::Builder::new().name("manifest-read".into());
        let thread = reader.spawn(move || {
            let mut batch = Batch::default();
            for entry in self {
                batch.push(entry);
                if batch.entries.len() == READ_AHEAD_BATCH {
                    // A batch handed back is emptied here, where its rows were allocated, and
                    // filled again (see [`ReadAhead::give_back`]).
                    let next = match used_back.try_recv() {
                        Ok(mut used) => {
                            used.entries.clear();
                            used.keys.clear();
                            used
                        }
                        Err(_) => Batch::default(),
                    };
                    if batches.send(std::mem::replace(&mut batch, next)).is_err() {
                        // The consumer stopped reading.
                        return;
                    }
                }
            }
            let _ = batches.send(batch);
        });
        let thread = thread.expect("spawning the manifest reader thread");
        ReadAhead {
            received,
            current: Vec::new().into_iter(),
            thread: Some(thread),
            used,
        }
    }
}

/// A hand-over of [`Reader::read_ahead`]: entries, and for each valid row its person's and
/// its image's keys ([`crate::image::ImageId::person_and_key`]), hashed on the reading thread
/// (a planner of ten million rows is the busier of the two threads).
pub struct Batch {
    pub entries: Vec<Result<Entry, ManifestError>>,
    /// `keys[i]` belongs to `entries[i]` (zeros for an entry that is no valid row).
    pub keys: Vec<(u128, u128)>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            entries: Vec::with_capacity(READ_AHEAD_BATCH),
            keys: Vec::with_capacity(READ_AHEAD_BATCH),
        }
    }
}

impl Batch {
    fn push(&mut self, entry: Result<Entry, ManifestError>) {
        let keys = match &entry {
            Ok(Entry::Valid(row)) => row
                .image_id()
                .person_and_key(&row.category_id, &row.person_id),
            _ => (0, 0),
        };
        self.entries.push(entry);
        self.keys.push(keys);
    }
}

/// A folder of photos as a CSV manifest (`scan`), its paths as `dir/…`: saved in the current
/// folder, it names the same photos.
pub fn folder_csv(dir: &Path, options: &ReadOptions) -> Result<Vec<u8>, ManifestError> {
    folder::to_csv(dir, dir, options).map(|text| text.to_vec())
}

/// Checks that the manifest can be read before anything else is done: a file (opened), or a
/// folder of photos (read by its layout when planned).
pub fn check_source(path: &Path) -> Result<(), ManifestError> {
    if path.is_dir() {
        return Ok(());
    }
    open_file(path).map(drop)
}

/// Opens the manifest file: an error that names it when it is missing, unreadable or a
/// directory. A run calls this before it touches the ledger, so a mistyped path leaves nothing
/// behind.
pub fn open_file(path: &Path) -> Result<File, ManifestError> {
    let file = File::open(path).map_err(|error| ManifestError::Open {
        path: path.to_path_buf(),
        error,
    })?;
    // Opening a directory succeeds on Unix; only reading it fails, with a vaguer message.
    if file.metadata().is_ok_and(|metadata| metadata.is_dir()) {
        return Err(ManifestError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// The iterator [`Reader::read_ahead`] returns.
pub struct ReadAhead {
    received: std::sync::mpsc::Receiver<Batch>,
    current: std::vec::IntoIter<Result<Entry, ManifestError>>,
    thread: Option<std::thread::JoinHandle<()>>,
    used: std::sync::mpsc::SyncSender<Batch>,
}

impl ReadAhead {
    /// The next hand-over whole, for a consumer that gives it back ([`ReadAhead::give_back`]);
    /// `None` at the end. Not to be mixed with the entry-by-entry iteration.
    pub fn next_batch(&mut self) -> Option<Batch> {
        match self.received.recv() {
            Ok(batch) => Some(batch),
            Err(_) => {
                self.join();
                None
            }
        }
    }

    /// Hands a batch from [`ReadAhead::next_batch`] back, with the entries the consumer left in
    /// it: the reading thread frees them and fills the batch again. glibc's allocator frees a
    /// block on a thread other than the one that allocated it through a locked path, and the
    /// allocating thread then gets no recycled blocks: for `check` of a million rows, four
    /// strings a row, that was 40 % of the CPU. A batch that cannot be taken back now is freed
    /// here.
    pub fn give_back(&self, batch: Batch) {
        let _ = self.used.try_send(batch);
    }

    /// The reading thread is done; a panic there must not pass for the end of the manifest.
    fn join(&mut self) {
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Iterator for ReadAhead {
    type Item = Result<Entry, ManifestError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.current.next() {
                return Some(entry);
            }
            match self.received.recv() {
                Ok(batch) => self.current = batch.entries.into_iter(),
                Err(_) => {
                    self.join();
                    return None;
                }
            }
        }
    }
}

impl FusedIterator for ReadAhead {}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("path", &self.path)
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

/// The 1-based line on which a record starts.
fn record_line(record: &ByteRecord) -> u64 {
    record.position().map_or(0, Position::line)
}

/// Hands the parser every line end as `\n`: `\r\n` and a lone `\r` (classic Mac OS, Excel for
/// Mac's "CSV (Macintosh)") alike, so the parser and the line arithmetic below see one
/// convention and line numbers come out right whatever the file uses. Quoted fields pass
/// verbatim: it follows RFC 4180 quoting as the parser does (a `"` opens a quoted field only at
/// the start of a field; `""` inside one is a quote).
struct LineEnds<R> {
    inner: R,
    state: QuoteState,
    after_cr: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    /// Outside quotes; `true` at the start of a field.
    Unquoted(bool),
    Quoted,
    /// A `"` inside a quoted field: the end of the field, or the first half of `""`.
    QuoteInQuoted,
}

impl<R> LineEnds<R> {
    fn new(inner: R) -> Self {
        LineEnds {
            inner,
            state: QuoteState::Unquoted(true),
            after_cr: false,
        }
    }

    /// The byte to hand on for `byte`, if any.
    fn translate(&mut self, byte: u8) -> Option<u8> {
        use QuoteState::*;
        if self.state == QuoteInQuoted {
            self.state = if byte == b'"' {
                Quoted
            } else {
                Unquoted(false)
            };
            if byte == b'"' {
                return Some(byte);
            }
        }
        match (self.state, byte) {
            (Quoted, b'"') => self.state = QuoteInQuoted,
            (Quoted, _) => {}
            (Unquoted(true), b'"') => self.state = Quoted,
            (Unquoted(_), b'\r') => {
                self.state = Unquoted(true);
                self.after_cr = true;
                return Some(b'\n');
            }
            (Unquoted(_), b'\n') => {
                self.state = Unquoted(true);
                // The `\n` of a `\r\n`: its line end is already out.
                if std::mem::take(&mut self.after_cr) {
                    return None;
                }
            }
            (Unquoted(_), b',') => self.state = Unquoted(true),
            (Unquoted(_), _) => self.state = Unquoted(false),
            (QuoteInQuoted, _) => unreachable!("handled above"),
        }
        self.after_cr = false;
        Some(byte)
    }
}

impl<R: Read> Read for LineEnds<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.inner.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            // The common chunk, with no `\r` and no `"` (and no `\r\n` split before it),
            // passes unchanged: only the state at its end needs working out.
            let chunk = &buf[..n];
            if !self.after_cr && !chunk.contains(&b'\r') && !chunk.contains(&b'"') {
                if self.state != QuoteState::Quoted {
                    self.state = QuoteState::Unquoted(matches!(chunk[n - 1], b',' | b'\n'));
                }
                return Ok(n);
            }
            let mut out = 0;
            for i in 0..n {
                if let Some(byte) = self.translate(buf[i]) {
                    buf[out] = byte;
                    out += 1;
                }
            }
            // A chunk that was only the `\n` of a `\r\n` yields nothing: read on, since
            // returning 0 would mean the end of the data.
            if out > 0 {
                return Ok(out);
            }
        }
    }
}

/// Watches the bytes on their way to the CSV parser, for what the csv crate cannot report:
/// whether the file is empty, whether a quote was left open, and which byte ended a record.
struct Tally<R> {
    inner: R,
    /// Bytes read so far.
    bytes: u64,
    /// `"` characters read so far, and before the window.
    quotes: u64,
    quotes_before_window: u64,
    /// A copy of the last non-empty chunk read, and its offset in the file. The parser asks
    /// for a chunk only when it has consumed the previous one, so a record just parsed always
    /// ends inside this chunk.
    window: Vec<u8>,
    window_start: u64,
}

impl<R> Tally<R> {
    fn new(inner: R) -> Self {
        Tally {
            inner,
            bytes: 0,
            quotes: 0,
            quotes_before_window: 0,
            window: Vec::new(),
            window_start: 0,
        }
    }

    /// Whether the record that ends just before offset `end` was terminated by a `\n` (rather
    /// than a `\r`, or the end of the data); `None` when that byte is no longer in the window.
    fn ended_by_newline(&self, end: u64, field_ends_in_newline: bool) -> Option<bool> {
        let index = usize::try_from(end.checked_sub(self.window_start)?).ok()?;
        let last = *self.window.get(index.checked_sub(1)?)?;
        if last != b'\n' || !field_ends_in_newline {
            return Some(last == b'\n');
        }
        // That `\n` may instead be the content of a quoted field left open at the end of the
        // data; then an odd number of quotes comes before it. Rare, so counting here is cheap.
        let before = self.window[..index].iter().filter(|&&b| b == b'"').count() as u64;
        Some((self.quotes_before_window + before).is_multiple_of(2))
    }
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let chunk = &buf[..n];
            self.window.clear();
            self.window.extend_from_slice(chunk);
            self.window_start = self.bytes;
            self.quotes_before_window = self.quotes;
            self.bytes += n as u64;
            self.quotes += chunk.iter().filter(|&&b| b == b'"').count() as u64;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
