//! `face-enroll export`: one row per image whose last ledger record is `registered`, with its
//! FaceId, for other systems — CSV (safe to open in a spreadsheet) or JSON Lines (exact).
//!
//! CSV cells that start with `=`, `+`, `-`, `@`, a tab or a carriage return get a leading `'`,
//! so a spreadsheet shows them as text instead of evaluating them as a formula (CSV injection).
//! JSON Lines values are never changed.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::exit::Exit;
use crate::image::fold_id;
use crate::ledger::{self as scan, Entry};
use crate::ledger::{KeyMap, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

/// Validated flags of `export`.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    pub ledger: PathBuf,
    pub format: Format,
    /// `None`: standard output.
    pub output: Option<PathBuf>,
}

/// One registered image, as exported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    pub category_id: String,
    pub person_id: String,
    pub person_name: Option<String>,
    pub image_url: String,
    pub face_id: Option<String>,
    pub registered_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lib_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_id: Option<String>,
}

pub async fn execute(config: ExportConfig) -> Exit {
    let result = super::blocking(move || {
        let rows = collect(&config)?;
        let write = |out: &mut dyn Write| match config.format {
            Format::Csv => write_csv(rows.iter(), rows.ice, out),
            Format::Jsonl => write_jsonl(rows.iter(), out),
        };
        let what = match &config.output {
            Some(path) => crate::report::write_output_with(path, 0o600, write)
                .map_err(|source| (path.display().to_string(), source)),
            None => crate::report::write_output_with(std::path::Path::new("-"), 0o600, write)
                .map_err(|source| ("standard output".to_string(), source)),
        };
        what.map_err(|(what, source)| super::OpsError::Write { what, source })?;
        Ok(rows.len())
    })
    .await;
    match result {
        Ok(n) => {
            tracing::debug!(rows = n, "exported");
            Exit::Success
        }
        Err(e) => {
            crate::say!("face-enroll: {e}");
            e.exit()
        }
    }
}

/// The registered images, packed: every row's own fields in one buffer, each row found by its
/// offset, and the library, person and name it shares with the person's other rows packed
/// once (its head), so a million rows cost their own bytes and little more.
pub struct Rows {
    /// Each row: its head's index (4 bytes, little-endian), then its six fields of its own.
    packed: Vec<u8>,
    /// Each row's offset in `packed`, in export order.
    at: Vec<usize>,
    /// The heads (library, person, name), packed; each found by its offset in `head_at`.
    heads: Vec<u8>,
    head_at: Vec<usize>,
    /// Some row has an ICE column.
    pub ice: bool,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = RowRef<'_>> {
        self.at.iter().map(|&at| self.row(at))
    }

    fn row(&self, at: usize) -> RowRef<'_> {
        let [cat, person, name] = fields::<3>(&self.heads[self.head_at[self.head(at)]..]);
        let ([url, face], rest) = fields_and_rest::<2>(&self.packed[at + 4..]);
        let (ts, rest) = Stamp::unpack(rest);
        let [lib, entity, sample] = fields::<3>(rest);
        RowRef {
            category_id: cat.unwrap_or_default(),
            person_id: person.unwrap_or_default(),
            person_name: name,
            image_url: url.unwrap_or_default(),
            face_id: face,
            registered_at: ts,
            lib_id: lib,
            entity_id: entity,
            sample_id: sample,
        }
    }

    /// The index of the head of the row at `at`.
    fn head(&self, at: usize) -> usize {
        let mut index = [0u8; 4];
        index.copy_from_slice(&self.packed[at..at + 4]);
        u32::from_le_bytes(index) as usize
    }

    /// Appends a row: its head, shared with earlier rows that have the same one (found by a
    /// hash of its packed bytes, then compared byte for byte), and its own fields.
    fn push(&mut self, interned: &mut Heads, head: [Option<&str>; 3], own: Own<'_>) {
        interned.scratch.clear();
        pack(&mut interned.scratch, head);
        let packed = &interned.scratch;
        let hash = xxhash_rust::xxh3::xxh3_64(packed);
        let same = |&index: &u32| {
            let start = self.head_at[index as usize];
            self.heads.get(start..start + packed.len()) == Some(&packed[..])
        };
        let index = match interned.by_hash.get(&hash).filter(|i| same(i)) {
            Some(&index) => index,
            None => {
                let index = self.head_at.len() as u32;
                self.head_at.push(self.heads.len());
                self.heads.extend_from_slice(packed);
                interned.by_hash.entry(hash).or_insert(index);
                index
            }
        };
        self.at.push(self.packed.len());
        self.packed.extend_from_slice(&index.to_le_bytes());
        pack(&mut self.packed, [Some(own.image_url), own.face_id]);
        Stamp::pack(&mut self.packed, own.registered_at);
        pack(&mut self.packed, [own.lib_id, own.entity_id, own.sample_id]);
    }
}

/// A row's own fields, as [`Rows::push`] packs them.
struct Own<'a> {
    image_url: &'a str,
    face_id: Option<&'a str>,
    registered_at: &'a str,
    lib_id: Option<&'a str>,
    entity_id: Option<&'a str>,
    sample_id: Option<&'a str>,
}

/// The length of a time as the ledger writes it: `2026-11-22T00:00:00.000Z`.
const STAMP_LEN: usize = 24;

/// When an image was registered, as its record says: the text itself, or, for a time in the
/// ledger's own form (`2026-11-22T00:00:00.000Z`), that text rebuilt from its 17 digits, which
/// [`Rows`] packs into 8 bytes rather than 25 (a sixth of an exported row).
#[derive(Clone, Copy, Debug)]
pub enum Stamp<'a> {
    Text(&'a str),
    Rebuilt([u8; STAMP_LEN]),
}

/// The ledger's form of a time: `D` a digit, anything else itself.
const STAMP_FORM: &[u8; STAMP_LEN] = b"DDDD-DD-DDTDD:DD:DD.DDDZ";

impl<'a> Stamp<'a> {
    pub fn as_str(&self) -> &str {
        match self {
            Stamp::Text(text) => text,
            // Built from ASCII digits and the form's ASCII: always UTF-8.
            Stamp::Rebuilt(bytes) => std::str::from_utf8(bytes).unwrap_or_default(),
        }
    }

    /// The digits of a time in the ledger's form, as one number; `None` for any other text.
    fn digits(text: &str) -> Option<u64> {
        let bytes: &[u8; STAMP_LEN] = text.as_bytes().try_into().ok()?;
        let mut n = 0u64;
        for (&b, &form) in bytes.iter().zip(STAMP_FORM) {
            match form {
                b'D' if b.is_ascii_digit() => n = n * 10 + u64::from(b - b'0'),
                b'D' => return None,
                _ if b != form => return None,
                _ => {}
            }
        }
        Some(n)
    }

    /// Appends `text`: a tag byte, then 8 bytes of digits (tag 0) or the text as a field (1).
    fn pack(out: &mut Vec<u8>, text: &str) {
        match Stamp::digits(text) {
            Some(n) => {
                out.push(0);
                out.extend_from_slice(&n.to_le_bytes());
            }
            None => {
                out.push(1);
                pack(out, [Some(text)]);
            }
        }
    }

    /// A time [`Stamp::pack`] packed, and the bytes after it.
    fn unpack(bytes: &'a [u8]) -> (Stamp<'a>, &'a [u8]) {
        if bytes[0] != 0 {
            let ([text], rest) = fields_and_rest::<1>(&bytes[1..]);
            return (Stamp::Text(text.unwrap_or_default()), rest);
        }
        let mut digits = [0u8; 8];
        digits.copy_from_slice(&bytes[1..9]);
        let mut n = u64::from_le_bytes(digits);
        let mut text = *STAMP_FORM;
        for b in text.iter_mut().rev() {
            if *b == b'D' {
                *b = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
        (Stamp::Rebuilt(text), &bytes[9..])
    }
}

impl Default for Stamp<'_> {
    fn default() -> Self {
        Stamp::Text("")
    }
}

impl PartialEq for Stamp<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Stamp<'_> {}

impl Serialize for Stamp<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The heads [`Rows::push`] has packed, by a hash of their bytes.
#[derive(Default)]
struct Heads {
    by_hash: crate::ledger::PersonMap<u32>,
    scratch: Vec<u8>,
}

/// One exported row, borrowed from [`Rows`]; serialised exactly as [`Row`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RowRef<'a> {
    pub category_id: &'a str,
    pub person_id: &'a str,
    pub person_name: Option<&'a str>,
    pub image_url: &'a str,
    pub face_id: Option<&'a str>,
    pub registered_at: Stamp<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lib_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_id: Option<&'a str>,
}

impl<'a> From<&'a Row> for RowRef<'a> {
    fn from(r: &'a Row) -> Self {
        RowRef {
            category_id: &r.category_id,
            person_id: &r.person_id,
            person_name: r.person_name.as_deref(),
            image_url: &r.image_url,
            face_id: r.face_id.as_deref(),
            registered_at: Stamp::Text(&r.registered_at),
            lib_id: r.lib_id.as_deref(),
            entity_id: r.entity_id.as_deref(),
            sample_id: r.sample_id.as_deref(),
        }
    }
}

/// The fields of a whole row.
#[cfg(test)]
const FIELDS: usize = 9;

/// Appends the fields, each as a varint of its length + 1 (0: absent) and its bytes.
fn pack<const N: usize>(out: &mut Vec<u8>, fields: [Option<&str>; N]) {
    for field in fields {
        let mut n = field.map_or(0, |f| f.len() as u64 + 1);
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(field.unwrap_or_default().as_bytes());
    }
}

/// The first `N` fields of a packed row.
fn fields<const N: usize>(bytes: &[u8]) -> [Option<&str>; N] {
    fields_and_rest(bytes).0
}

/// The first `N` fields of a packed row, and the bytes after them.
fn fields_and_rest<const N: usize>(mut bytes: &[u8]) -> ([Option<&str>; N], &[u8]) {
    let mut fields = [None; N];
    for field in &mut fields {
        let (mut n, mut shift) = (0u64, 0);
        loop {
            let byte = bytes[0];
            bytes = &bytes[1..];
            n |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if n > 0 {
            let (text, rest) = bytes.split_at(n as usize - 1);
            // Packed from `&str`s, so always valid UTF-8.
            *field = Some(std::str::from_utf8(text).unwrap_or_default());
            bytes = rest;
        }
    }
    (fields, bytes)
}

/// A whole row packed in one piece (the tests' form of [`pack`]'s format).
#[cfg(test)]
fn unpack(bytes: &[u8]) -> RowRef<'_> {
    let [cat, person, name, url, face, ts, lib, entity, sample] = fields::<FIELDS>(bytes);
    RowRef {
        category_id: cat.unwrap_or_default(),
        person_id: person.unwrap_or_default(),
        person_name: name,
        image_url: url.unwrap_or_default(),
        face_id: face,
        registered_at: Stamp::Text(ts.unwrap_or_default()),
        lib_id: lib,
        entity_id: entity,
        sample_id: sample,
    }
}

/// `fold_id(a).cmp(&fold_id(b))`, without allocating for ASCII ids (the common case; other
/// ids go through `fold_id` itself, whose Unicode lowercasing depends on context).
fn cmp_folded(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim(), b.trim());
    if a.is_ascii() && b.is_ascii() {
        return a
            .bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase()));
    }
    fold_id(a).cmp(&fold_id(b))
}

/// Image records numbered in ledger order, in 32 bits (half the memory of 64 for the numbers
/// export keeps per image). Past `u32::MAX` records it stops numbering and says so, rather than
/// wrap around and mix up which record is an image's last.
#[derive(Default)]
struct Ordinal {
    next: u32,
    overflowed: bool,
}

impl Ordinal {
    fn next(&mut self) -> Option<u32> {
        let this = self.next;
        match self.next.checked_add(1) {
            Some(next) => self.next = next,
            None => {
                self.overflowed = true;
                return None;
            }
        }
        Some(this)
    }

    fn check(&self, ledger: &std::path::Path) -> Result<(), super::OpsError> {
        if self.overflowed {
            return Err(super::OpsError::Internal(format!(
                "{} holds more than {} image records: more than export can number",
                ledger.display(),
                u32::MAX
            )));
        }
        Ok(())
    }
}

/// The registered images, sorted by library, person (both case-insensitively) and URL, so two
/// exports of the same ledger state are identical whatever order the run registered them in
/// (ties keep the order of each image's first registration).
///
/// Two passes over the ledger, so memory follows the rows exported rather than every string
/// of the ledger's history: the first finds, per image, which record is its last and whether
/// it is `registered`; the second keeps only those records' fields.
pub fn collect(config: &ExportConfig) -> Result<Rows, super::OpsError> {
    let (keep, first_of) = records_to_keep(config)?;
    let rows = read_kept(config, &keep, first_of.len())?;
    drop(keep);
    Ok(sorted(rows, first_of))
}

/// The first pass: the records to keep (each registered image's last record, if that one is
/// `registered`) as one bit per image record (rather than 4 bytes per row), and each kept
/// row's tie order (the ordinal of its image's first `registered` record) in ledger order.
fn records_to_keep(config: &ExportConfig) -> Result<(Vec<u64>, Vec<u32>), super::OpsError> {
    // Per image: the ordinal of its first `registered` record (the tie order) and of its last
    // record if that one is `registered`.
    let mut last: KeyMap<(u32, Option<u32>)> = KeyMap::default();
    let mut ordinal = Ordinal::default();
    scan::scan(&config.ledger, false, |entry| {
        let Entry::Image(image) = entry else { return };
        let Some(this) = ordinal.next() else { return };
        let registered = image.status == Status::Registered;
        match last.get_mut(&image.key()) {
            Some(slot) => slot.1 = registered.then_some(this),
            None if registered => {
                last.insert(image.key(), (this, Some(this)));
            }
            None => {}
        }
    })?;
    ordinal.check(&config.ledger)?;
    let mut wanted: Vec<(u32, u32)> = last
        .into_values()
        .filter_map(|(first, last)| Some((last?, first)))
        .collect();
    wanted.sort_unstable();
    let mut keep = vec![0u64; (ordinal.next as usize).div_ceil(64)];
    for &(last, _) in &wanted {
        keep[last as usize / 64] |= 1 << (last % 64);
    }
    let first_of: Vec<u32> = wanted.iter().map(|&(_, first)| first).collect();
    Ok((keep, first_of))
}

/// The second pass: the kept records, packed. The ledger is only ever appended to: a kept
/// record that is no longer `registered`, or a count other than `expected`, means it was
/// replaced between the passes.
fn read_kept(
    config: &ExportConfig,
    keep: &[u64],
    expected: usize,
) -> Result<Rows, super::OpsError> {
    let mut rows = Rows {
        packed: Vec::new(),
        at: Vec::with_capacity(expected),
        heads: Vec::new(),
        head_at: Vec::new(),
        ice: false,
    };
    let mut heads = Heads::default();
    let (mut ordinal, mut next, mut changed) = (Ordinal::default(), 0usize, false);
    scan::scan(&config.ledger, false, |entry| {
        let Entry::Image(image) = entry else { return };
        let Some(this) = ordinal.next() else { return };
        let kept = keep
            .get(this as usize / 64)
            .is_some_and(|bits| bits & (1 << (this % 64)) != 0);
        if !kept {
            return;
        }
        next += 1;
        if image.status != Status::Registered {
            changed = true;
            return;
        }
        let v = image.view;
        rows.ice |= v.lib_id.is_some() || v.entity_id.is_some() || v.sample_id.is_some();
        rows.push(
            &mut heads,
            [
                Some(image.category_id),
                Some(image.person_id),
                v.person_name.as_deref(),
            ],
            Own {
                image_url: image.image_url,
                face_id: v.face_id.as_deref(),
                registered_at: v.ts.as_deref().unwrap_or_default(),
                lib_id: v.lib_id.as_deref(),
                entity_id: v.entity_id.as_deref(),
                sample_id: v.sample_id.as_deref(),
            },
        );
    })?;
    if changed || next != expected {
        return Err(super::OpsError::Changed {
            path: config.ledger.clone(),
        });
    }
    drop(heads);
    rows.packed.shrink_to_fit();
    rows.heads.shrink_to_fit();
    Ok(rows)
}

/// The rows in export order: library and person (folded), URL, then the tie order. Row
/// numbers are sorted, each row's offset and tie order looked up: 4 bytes a row.
fn sorted(mut rows: Rows, first_of: Vec<u32>) -> Rows {
    let mut order: Vec<u32> = (0..rows.at.len() as u32).collect();
    let key = |n: u32| {
        let at = rows.at[n as usize];
        let [cat, person, _] = fields::<3>(&rows.heads[rows.head_at[rows.head(at)]..]);
        let [url] = fields::<1>(&rows.packed[at + 4..]);
        let (cat, person) = (cat.unwrap_or_default(), person.unwrap_or_default());
        (cat, person, url)
    };
    // First-record order is unique: a total order, so an unstable sort gives the same rows.
    order.sort_unstable_by(|&a, &b| {
        let (cat_a, person_a, url_a) = key(a);
        let (cat_b, person_b, url_b) = key(b);
        cmp_folded(cat_a, cat_b)
            .then_with(|| cmp_folded(person_a, person_b))
            .then_with(|| url_a.cmp(&url_b))
            .then(first_of[a as usize].cmp(&first_of[b as usize]))
    });
    drop(first_of);
    rows.at = order.into_iter().map(|n| rows.at[n as usize]).collect();
    rows
}

/// A cell a spreadsheet would not take for a formula.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// Writes the rows as CSV; the ICE columns appear when `ice` (some row has one).
pub fn write_csv<'a>(
    rows: impl Iterator<Item = RowRef<'a>>,
    ice: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut header = vec![
        "category_id",
        "person_id",
        "person_name",
        "image_url",
        "face_id",
        "registered_at",
    ];
    if ice {
        header.extend(["lib_id", "entity_id", "sample_id"]);
    }
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(&header)?;
    for r in rows {
        let mut cells = vec![
            r.category_id,
            r.person_id,
            r.person_name.unwrap_or_default(),
            r.image_url,
            r.face_id.unwrap_or_default(),
            r.registered_at.as_str(),
        ];
        if ice {
            cells.extend([
                r.lib_id.unwrap_or_default(),
                r.entity_id.unwrap_or_default(),
                r.sample_id.unwrap_or_default(),
            ]);
        }
        writer.write_record(cells.iter().map(|c| neutralise(c).into_owned()))?;
    }
    writer.flush()
}

/// Writes the rows as JSON Lines, values exactly as recorded.
pub fn write_jsonl<'a>(
    rows: impl Iterator<Item = RowRef<'a>>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    for r in rows {
        serde_json::to_writer(&mut *out, &r)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub fn to_csv(rows: &[Row]) -> Vec<u8> {
    let ice = rows
        .iter()
        .any(|r| r.lib_id.is_some() || r.entity_id.is_some() || r.sample_id.is_some());
    let mut out = Vec::new();
    let _ = write_csv(rows.iter().map(RowRef::from), ice, &mut out);
    out
}

/// The command's flags, lowered once into its validated config.
impl crate::cli::ops::ExportArgs {
    pub fn config(&self) -> Result<ExportConfig, crate::exit::UsageError> {
        let ledger = crate::cli::ops::ledger_for(
            &self.ledger,
            &self.manifest,
            &self.target,
            self.sandbox,
            "export",
        )?;
        if let Some(output) = &self.output {
            let lock = crate::ledger::lock_path(&ledger);
            let mut keep = vec![ledger.as_path(), lock.as_path()];
            keep.extend(self.manifest.as_deref());
            crate::report::refuse_clobbering("-o", output, &keep)?;
        }
        Ok(ExportConfig {
            ledger,
            format: match self.format {
                crate::cli::ops::ExportFormat::Csv => Format::Csv,
                crate::cli::ops::ExportFormat::Jsonl => Format::Jsonl,
            },
            output: self.output.clone(),
        })
    }
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
