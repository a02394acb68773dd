//! What `verify` compares with the server, read once: the ledger's registered images (indexed
//! by library and person in a compact map) and the manifest's rows.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::backend::TargetKind;
use crate::commands::drift::{self, ExpectedRow, Inputs, LedgerIndex, LedgerRec, LibraryInputs};
use crate::exit::Exit;
use crate::image::{ImageId, fold_id, person_key};
use crate::ledger::{self, Entry, KeyMap, LedgerError, Status};
use crate::manifest::{self, Entry as Row, ManifestError};
use crate::pipeline::journal;
use crate::plan::Key;

/// Why what `verify` compares could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoadError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{} changed while verify read it; run verify again", .0.display())]
    Changed(PathBuf),
}

impl journal::Read for crate::commands::drift::Inputs {
    fn torn_tail(&self) -> u64 {
        self.torn_tail
    }
}

impl LoadError {
    pub(super) fn exit(&self) -> Exit {
        match self {
            LoadError::Ledger(e) => e.into(),
            LoadError::Manifest(_) | LoadError::Changed(_) => Exit::Usage,
        }
    }
}

/// Reads the ledger, then the manifest, into what the comparison needs.
pub(super) fn load(
    manifest: &Path,
    read: &manifest::ReadOptions,
    ledger: &Path,
    kind: TargetKind,
) -> Result<Inputs, LoadError> {
    let mut inputs = Inputs::default();
    let (registered, ledger_libraries) = read_ledger(ledger, kind, &mut inputs)?;
    let mut index: HashMap<String, usize> = HashMap::new();
    read_manifest(manifest, read, kind, registered, &mut inputs, &mut index)?;
    // Libraries only the ledger knows, in name order, so the report is stable.
    let mut only_ledger: BTreeMap<&str, (String, Vec<u32>)> = BTreeMap::new();
    for at in inputs.ledger.face_images() {
        let (folded, name) = &ledger_libraries[inputs.ledger.rec(at).library as usize];
        match index.get(folded) {
            Some(&lib) => inputs.libraries[lib].ledger_faces.push(at as u32),
            None => {
                let entry = only_ledger
                    .entry(folded)
                    .or_insert_with(|| (name.clone(), Vec::new()));
                entry.1.push(at as u32);
            }
        }
    }
    for (_, (name, ledger_faces)) in only_ledger {
        inputs.libraries.push(LibraryInputs {
            name,
            ledger_faces,
            ..LibraryInputs::default()
        });
    }
    Ok(inputs)
}

/// The ledger's libraries: each folded, and as first written.
pub(super) type LedgerLibraries = Vec<(String, String)>;

/// The last state of every image of the target, packed into `inputs.ledger`; returns the
/// registered images per person, and the ledger's libraries.
pub(super) fn read_ledger(
    path: &Path,
    kind: TargetKind,
    inputs: &mut Inputs,
) -> Result<(KeyMap<u32>, LedgerLibraries), LedgerError> {
    let ice = matches!(kind, TargetKind::Ice(_));
    let mut at: Parted<u32> = Parted::default();
    let mut images: Vec<([u64; 2], LedgerRec, [u64; 2])> = Vec::new();
    let mut per_person: KeyMap<u32> = KeyMap::default();
    let mut libraries = LibraryIndex::default();
    let mut aliases: KeyMap<u128> = KeyMap::default();
    let mut unfinished = false;
    let scanned = ledger::scan(path, true, |entry| {
        let image = match entry {
            Entry::Image(image) => image,
            Entry::Run(view) => {
                match view.kind {
                    Some(ledger::record::LineKind::RunStart) => unfinished = true,
                    Some(ledger::record::LineKind::RunEnd) => unfinished = false,
                    _ => {}
                }
                return;
            }
            _ => return,
        };
        if image.is_mts() == ice {
            inputs.other_target_records += 1;
            return;
        }
        let library = libraries.of(image.category_id);
        let key = image.key();
        if image.view.image_key.is_some() {
            let by_url =
                ImageId::new(image.image_url, None).key(image.category_id, image.person_id);
            if by_url != key {
                aliases.insert(by_url, key);
            }
        }
        let slot = *at.entry(key).or_insert_with(|| {
            images.push((
                drift::split(key),
                LedgerRec {
                    status: image.status,
                    face: false,
                    refused: false,
                    library: 0,
                },
                [0; 2],
            ));
            (images.len() - 1) as u32
        }) as usize;
        let id = match (image.status, image.server_id()) {
            (Status::Registered, Some(id)) => Some(drift::id_hash(id)),
            _ => None,
        };
        let was_face = images[slot].1.face;
        if was_face != id.is_some() {
            let person = person_key(image.category_id, image.person_id);
            recount(&mut per_person, person, was_face);
        }
        images[slot].1 = LedgerRec {
            status: image.status,
            face: id.is_some(),
            refused: image.status == Status::Failed && image.view.retryable != Some(true),
            library,
        };
        images[slot].2 = id.unwrap_or_default();
    })?;
    drop(at);
    inputs.aliases = aliases;
    inputs.torn_tail = scanned.torn_tail;
    inputs.unfinished_run = unfinished;
    inputs.ledger = LedgerIndex::build_split(images);
    Ok((per_person, libraries.libraries))
}

/// How many parts [`Parted`] has.
const PARTS: usize = 64;

/// A map by image key in parts (chosen by the key's high half; a part hashes by the low
/// half), so a part that grows holds its old and its new table of a sixty-fourth of the
/// images rather than of them all; each key kept in 16 bytes at 4-byte alignment (an entry of
/// a `u32` takes 20 bytes, not 32). A million images: some 60 MB less at the peak.
pub(super) struct Parted<V> {
    parts: Vec<HashMap<Key, V, std::hash::BuildHasherDefault<ledger::KeyHasher>>>,
}

impl<V> Default for Parted<V> {
    fn default() -> Self {
        Parted {
            parts: (0..PARTS).map(|_| HashMap::default()).collect(),
        }
    }
}

impl<V> Parted<V> {
    fn part(
        &mut self,
        key: u128,
    ) -> &mut HashMap<Key, V, std::hash::BuildHasherDefault<ledger::KeyHasher>> {
        &mut self.parts[(key >> 64) as usize % PARTS]
    }

    fn entry(&mut self, key: u128) -> std::collections::hash_map::Entry<'_, Key, V> {
        self.part(key).entry(Key::of(key))
    }

    fn insert(&mut self, key: u128, value: V) -> Option<V> {
        self.part(key).insert(Key::of(key), value)
    }
}

/// A person's registered images, one fewer when an image stopped being a face (`was_face`),
/// else one more.
pub(super) fn recount(per_person: &mut KeyMap<u32>, person: u128, was_face: bool) {
    let count = per_person.entry(person).or_insert(0);
    *count = if was_face {
        count.saturating_sub(1)
    } else {
        *count + 1
    };
}

/// The ledger's libraries by their folded name, numbered as first written.
#[derive(Default)]
pub(super) struct LibraryIndex {
    libraries: LedgerLibraries,
    library_of: HashMap<String, u32>,
    /// The last category id asked for and its library: records come in runs of one library.
    last: (String, u32),
}

impl LibraryIndex {
    /// The number of the library `category_id` names, added when new.
    fn of(&mut self, category_id: &str) -> u32 {
        if self.libraries.is_empty() || self.last.0 != category_id {
            let folded = fold_id(category_id);
            let next = self.libraries.len() as u32;
            let libraries = &mut self.libraries;
            let library = *self.library_of.entry(folded.clone()).or_insert_with(|| {
                libraries.push((folded, category_id.trim().to_string()));
                next
            });
            self.last = (category_id.to_string(), library);
        }
        self.last.1
    }
}

/// The manifest's distinct valid images, up to each person's limit as `plan` counts it (images
/// the ledger holds count first, then new rows in manifest order).
pub(super) fn read_manifest(
    path: &Path,
    read: &manifest::ReadOptions,
    kind: TargetKind,
    registered: KeyMap<u32>,
    inputs: &mut Inputs,
    index: &mut HashMap<String, usize>,
) -> Result<(), ManifestError> {
    let rules = kind.rules();
    let reader = manifest::Reader::open(path, read)?;
    let mut seen: Parted<()> = Parted::default();
    // Each person's count starts at its registered images: the counts become the used ones.
    let mut used = registered;
    for entry in reader {
        let row = match entry? {
            Row::Valid(row) if rules.check_row.and_then(|check| check(&row)).is_none() => row,
            _ => {
                inputs.invalid_rows += 1;
                continue;
            }
        };
        let key = inputs.row_key(&row);
        if seen.insert(key, ()).is_some() {
            inputs.duplicate_rows += 1;
            continue;
        }
        let at = *index.entry(fold_id(&row.category_id)).or_insert_with(|| {
            inputs.libraries.push(LibraryInputs {
                name: row.category_id.clone(),
                ..LibraryInputs::default()
            });
            inputs.libraries.len() - 1
        });
        let person = person_key(&row.category_id, &row.person_id);
        let already = inputs.ledger.is_face(key);
        let slot = used.entry(person).or_insert(0);
        if !already {
            if rules
                .max_images_per_person
                .is_some_and(|limit| *slot >= limit)
            {
                inputs.libraries[at].over_limit += 1;
                continue;
            }
            *slot += 1;
        }
        inputs.libraries[at]
            .expected
            .push(ExpectedRow::new(key, row.line));
    }
    Ok(())
}

#[cfg(test)]
#[path = "verify_inputs_tests.rs"]
mod tests;
