//! What `verify` compares, as pure data, for either target: the manifest's expected images and
//! the ledger's registered images of one library against what the server holds in it, giving
//! the drift — missing images, duplicates, orphans, vanished ids, persons over the limit.
//!
//! Images match by `image_key` (library and person case-insensitive, URL exact), server images
//! by their id (FaceId or SampleId).

use std::collections::HashMap;

use serde::Serialize;

use crate::backend::{ImageRef, Library};
use crate::image::{Image, ImageId, person_key};
use crate::ledger::{KeyMap, Status};

/// The server's id of an image, named as the ledger names it: `face_id` (MTS) or
/// `sample_id` (ICE).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerId {
    FaceId(String),
    SampleId(String),
}

impl ServerId {
    pub fn as_str(&self) -> &str {
        match self {
            ServerId::FaceId(id) | ServerId::SampleId(id) => id,
        }
    }
}

impl Default for ServerId {
    fn default() -> Self {
        ServerId::FaceId(String::new())
    }
}

/// A manifest image that should be on the server: its key and line. Its strings are read
/// again from the manifest only for the lines a finding names ([`Inputs::rows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedRow {
    key: [u64; 2],
    pub line: u64,
}

impl ExpectedRow {
    pub fn new(key: u128, line: u64) -> ExpectedRow {
        ExpectedRow {
            key: split(key),
            line,
        }
    }

    pub fn key(&self) -> u128 {
        join(self.key)
    }
}

pub fn split(v: u128) -> [u64; 2] {
    [(v >> 64) as u64, v as u64]
}

fn join(v: [u64; 2]) -> u128 {
    (u128::from(v[0]) << 64) | u128::from(v[1])
}

/// A manifest row in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub line: u64,
    pub category_id: String,
    pub person_id: String,
    pub person_name: Option<String>,
    /// The row's image: its source, and its `image_key` when it has one.
    pub image: Image,
}

/// An image the ledger records as registered, in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerFace {
    /// The server's id: FaceId or SampleId.
    pub id: String,
    pub category_id: String,
    pub person_id: String,
    /// The image as recorded.
    pub image: Image,
}

/// The last record of one image in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerRec {
    pub status: Status,
    /// Registered with a server id.
    pub face: bool,
    /// `failed` and not retryable: the service refused the image for good.
    pub refused: bool,
    /// The image's library among the ledger's (see `verify`).
    pub library: u32,
}

/// The hash of a server id (xxh3-128): the ledger's ids are compared, not kept.
pub fn id_hash(id: &str) -> [u64; 2] {
    split(xxhash_rust::xxh3::xxh3_128(id.as_bytes()))
}

/// The ledger's last record of every image of the target, packed: image keys in order with
/// their record, and the hashes of the registered ids in order with their image.
#[derive(Debug, Default)]
pub struct LedgerIndex {
    keys: Vec<u128>,
    recs: Vec<LedgerRec>,
    ids: Vec<([u64; 2], u32)>,
}

impl LedgerIndex {
    /// From each image's last record and the hash of its id (if it is a face).
    pub fn build(images: Vec<(u128, LedgerRec, [u64; 2])>) -> LedgerIndex {
        let images = images.into_iter();
        LedgerIndex::build_split(images.map(|(key, rec, id)| (split(key), rec, id)).collect())
    }

    /// [`LedgerIndex::build`] from keys split in halves (40 bytes an image rather than 48).
    pub fn build_split(images: Vec<([u64; 2], LedgerRec, [u64; 2])>) -> LedgerIndex {
        let mut images = images;
        images.sort_unstable_by_key(|(key, _, _)| join(*key));
        let mut index = LedgerIndex {
            keys: images.iter().map(|(key, _, _)| join(*key)).collect(),
            recs: images.iter().map(|(_, rec, _)| *rec).collect(),
            ids: Vec::new(),
        };
        index.ids = images
            .iter()
            .enumerate()
            .filter(|(_, (_, rec, _))| rec.face)
            .map(|(at, (_, _, id))| (*id, at as u32))
            .collect();
        index.ids.sort_unstable();
        index
    }

    /// Images with a record.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Images registered with a server id.
    pub fn faces(&self) -> usize {
        self.ids.len()
    }

    pub fn find(&self, key: u128) -> Option<usize> {
        self.keys.binary_search(&key).ok()
    }

    pub fn key(&self, at: usize) -> u128 {
        self.keys[at]
    }

    pub fn rec(&self, at: usize) -> LedgerRec {
        self.recs[at]
    }

    pub fn status(&self, key: u128) -> Option<Status> {
        self.find(key).map(|at| self.recs[at].status)
    }

    /// Whether the image `key` is registered with a server id.
    pub fn is_face(&self, key: u128) -> bool {
        self.find(key).is_some_and(|at| self.recs[at].face)
    }

    /// The image registered with the server id `id`.
    pub fn by_id(&self, id: &str) -> Option<usize> {
        let hash = id_hash(id);
        let at = self.ids.partition_point(|(h, _)| *h < hash);
        self.ids
            .get(at)
            .filter(|(h, _)| *h == hash)
            .map(|(_, image)| *image as usize)
    }

    /// Every image registered with a server id, in key order.
    pub fn face_images(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.recs.len()).filter(|&at| self.recs[at].face)
    }
}

/// One library's side of the comparison, before the server is read.
#[derive(Clone, Debug, Default)]
pub struct LibraryInputs {
    /// As first written (manifest first, else ledger).
    pub name: String,
    pub expected: Vec<ExpectedRow>,
    /// Manifest images beyond a person's 10 in manifest order: never sent, so not expected.
    pub over_limit: u64,
    /// The ledger's registered faces in this library ([`LedgerIndex`] positions).
    pub ledger_faces: Vec<u32>,
}

/// Everything known before the server is read, and the strings of what was found.
#[derive(Default)]
pub struct Inputs {
    pub libraries: Vec<LibraryInputs>,
    pub ledger: LedgerIndex,
    /// Manifest rows in full, by line: only those a finding names (missing, orphans).
    pub rows: HashMap<u64, Expected>,
    /// Registered faces found vanished, by server id, with their image key.
    pub vanished: HashMap<String, (u128, LedgerFace)>,
    pub invalid_rows: u64,
    pub duplicate_rows: u64,
    /// Records of the other target (they live in another service).
    pub other_target_records: u64,
    /// Bytes of a torn last ledger line, for an appender to cut off.
    pub torn_tail: u64,
    /// The ledger's last run has a start and no end (killed, or still running elsewhere).
    pub unfinished_run: bool,
    /// The key of an image by its URL alone → the key the ledger records it under, for images
    /// recorded with an `image_key` (a manifest that dropped or changed the column still names
    /// them by URL; the planner reads them the same way).
    pub aliases: crate::ledger::KeyMap<u128>,
}

impl Inputs {
    /// The ledger's key of a manifest row: its identity, or, when the ledger knows it by
    /// another (an `image_key` column added, dropped or changed since), that one.
    pub fn row_key(&self, row: &crate::manifest::Row) -> u128 {
        let key = row.image_id().key(&row.category_id, &row.person_id);
        if self.ledger.find(key).is_some() {
            return key;
        }
        let by_url = ImageId::new(&row.image.source, None).key(&row.category_id, &row.person_id);
        if self.ledger.find(by_url).is_some() {
            return by_url;
        }
        self.aliases.get(&by_url).copied().unwrap_or(key)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub line: u64,
    pub person_id: String,
    pub image_url: String,
    /// The image's last status in the ledger, if it has one.
    pub ledger_status: Option<&'static str>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    pub person_id: String,
    pub image_url: String,
    /// The copy to keep: the one the ledger knows, else the first the server lists.
    pub keep: String,
    pub extra: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Orphan {
    pub person_id: String,
    pub image_url: Option<String>,
    #[serde(flatten)]
    pub id: ServerId,
    /// The manifest row it matches, which `--repair` adopts it for.
    pub line: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Vanished {
    pub person_id: String,
    pub image_url: String,
    #[serde(flatten)]
    pub id: ServerId,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Crowded {
    pub person_id: String,
    pub faces: u64,
}

/// One library's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Drift {
    pub library: String,
    /// Why the library could not be read; nothing else is filled in then.
    pub error: Option<String>,
    pub server_faces: u64,
    pub expected: u64,
    pub over_limit_in_manifest: u64,
    /// Manifest images the ledger records as removed (rollback, or a repaired vanished id):
    /// not on the server, as agreed; the next run registers them again.
    pub removed_in_ledger: u64,
    pub missing: Vec<Missing>,
    pub duplicates: Vec<Duplicate>,
    pub orphans: Vec<Orphan>,
    /// With `verify --accept-foreign`: the orphans that match no manifest row (other tools'
    /// faces), moved out of `orphans`; they do not make the library disagree.
    pub foreign: Vec<Orphan>,
    pub vanished: Vec<Vanished>,
    pub persons_over_limit: Vec<Crowded>,
    /// The vanished faces' [`LedgerIndex`] positions, until their strings are read.
    #[serde(skip)]
    pub vanished_at: Vec<u32>,
    /// Manifest images not on the server that the service refused for good (the ledger's last
    /// record is a `failed` that is not retryable): a known refusal, not drift.
    #[serde(skip)]
    pub refused: u64,
}

impl Drift {
    pub fn agrees(&self) -> bool {
        self.error.is_none()
            && self.missing.is_empty()
            && self.duplicates.is_empty()
            && self.orphans.is_empty()
            && self.vanished.is_empty()
            && self.vanished_at.is_empty()
            && self.persons_over_limit.is_empty()
    }

    /// Moves the orphans that match no manifest row into `foreign` (`--accept-foreign`).
    pub fn set_foreign_apart(&mut self) {
        let (foreign, ours) = std::mem::take(&mut self.orphans)
            .into_iter()
            .partition(|o| o.line.is_none());
        self.orphans = ours;
        self.foreign = foreign;
    }

    pub fn extra_copies(&self) -> usize {
        self.duplicates.iter().map(|d| d.extra.len()).sum()
    }
}

/// Faces of one image of one listed person, in the order listed.
struct Group<'a> {
    key: u128,
    image_url: &'a str,
    /// Each face's id and the ledger image registered with it.
    faces: Vec<(&'a str, Option<usize>)>,
}

/// How a comparison names ids and counts persons.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Images per person the service accepts (MTS: 10); `None` = no limit.
    pub max_per_person: Option<u32>,
    /// Ids are SampleIds (ICE), else FaceIds.
    pub samples: bool,
}

impl Rules {
    fn id(&self, id: &str) -> ServerId {
        if self.samples {
            ServerId::SampleId(id.to_string())
        } else {
            ServerId::FaceId(id.to_string())
        }
    }
}

/// Compares what the server holds in one library with what the manifest expects and the
/// ledger records, walking the listing person by person: only findings are copied out of it.
/// With `places`, records where each id a finding names lives (for a repair).
///
/// The strings of missing images and vanished faces are left empty, to be read afterwards
/// from the manifest and the ledger (`verify`), so that neither is held whole meanwhile.
pub fn compare<P: Clone>(
    library: &LibraryInputs,
    listing: &Library<P>,
    inputs: &Inputs,
    rules: Rules,
    places: Option<&mut HashMap<String, P>>,
) -> Drift {
    let sides = Borrowed(library, &inputs.ledger);
    let mut walk = Walk::new(sides, rules, places.is_some());
    listing.walk(|person_id, images, place| walk.person(person_id, images, place));
    let (drift, found) = walk.finish();
    if let Some(places) = places {
        add_places(places, found);
    }
    drift
}

/// Adds the places one library's walk found to those of the libraries before it (an id
/// already there keeps its first place).
pub fn add_places<P>(places: &mut HashMap<String, P>, found: HashMap<String, P>) {
    for (id, place) in found {
        places.entry(id).or_insert(place);
    }
}

/// The library and the ledger a comparison reads.
pub trait Sides {
    fn library(&self) -> &LibraryInputs;
    fn ledger(&self) -> &LedgerIndex;
}

/// Both borrowed.
struct Borrowed<'a>(&'a LibraryInputs, &'a LedgerIndex);

impl Sides for Borrowed<'_> {
    fn library(&self) -> &LibraryInputs {
        self.0
    }
    fn ledger(&self) -> &LedgerIndex {
        self.1
    }
}

/// The library at `.1` of shared inputs, and their ledger: for a walk on another thread.
pub struct Shared(pub std::sync::Arc<Inputs>, pub usize);

impl Sides for Shared {
    fn library(&self) -> &LibraryInputs {
        &self.0.libraries[self.1]
    }
    fn ledger(&self) -> &LedgerIndex {
        &self.0.ledger
    }
}

/// One library's comparison as a walk of its listing ([`crate::backend::Backend::walk_listing`]):
/// [`compare`] for a listing read as it arrives.
pub struct Comparison<P>(Walk<Shared, P>);

impl<P> Comparison<P> {
    /// With `places`, also where each id a finding names lives.
    pub fn new(sides: Shared, rules: Rules, places: bool) -> Self {
        Comparison(Walk::new(sides, rules, places))
    }

    /// The drift, and the places found (empty without `places`).
    pub fn finish(self) -> (Drift, HashMap<String, P>) {
        self.0.finish()
    }
}

impl<P: Send + 'static> crate::backend::ListingWalk<P> for Comparison<P> {
    fn person(&mut self, person_id: &str, images: &[ImageRef<'_>], place: &dyn Fn() -> P) {
        self.0.person(person_id, images, place);
    }
}

/// One library's comparison while it walks the listing, person by person.
struct Walk<S, P> {
    sides: S,
    rules: Rules,
    places: Option<HashMap<String, P>>,
    /// Indexes into the expected images, in key order.
    by_key: Vec<u32>,
    /// Per expected image: the server lists it.
    listed: Vec<bool>,
    /// Per ledger image: the server holds its id.
    on_server: Vec<bool>,
    /// Faces per person; the name of a person over the limit as listed.
    counts: KeyMap<u32>,
    crowded: KeyMap<String>,
    /// Orphans without a URL, and the others, each in the server's order.
    url_less: Vec<Orphan>,
    orphans: Vec<Orphan>,
    drift: Drift,
}

impl<S: Sides, P> Walk<S, P> {
    fn new(sides: S, rules: Rules, places: bool) -> Self {
        let (library, ledger) = (sides.library(), sides.ledger());
        let expected = &library.expected;
        let mut by_key: Vec<u32> = (0..expected.len() as u32).collect();
        by_key.sort_unstable_by_key(|&at| expected[at as usize].key());
        let (listed, on_server) = (vec![false; expected.len()], vec![false; ledger.len()]);
        let drift = Drift {
            library: library.name.clone(),
            expected: expected.len() as u64,
            over_limit_in_manifest: library.over_limit,
            ..Drift::default()
        };
        Walk {
            sides,
            rules,
            places: places.then(HashMap::new),
            by_key,
            listed,
            on_server,
            counts: KeyMap::default(),
            crowded: KeyMap::default(),
            url_less: Vec::new(),
            orphans: Vec::new(),
            drift,
        }
    }

    /// The expected image with this key, if the manifest names it.
    fn find_expected(&self, key: u128) -> Option<usize> {
        let expected = &self.sides.library().expected;
        self.by_key
            .binary_search_by_key(&key, |&at| expected[at as usize].key())
            .ok()
            .map(|found| self.by_key[found] as usize)
    }

    /// One listed person: counted against the limit, its faces grouped by image and judged.
    fn person(&mut self, person_id: &str, images: &[ImageRef<'_>], place: &dyn Fn() -> P) {
        let person = person_key(&self.sides.library().name, person_id);
        let count = self.counts.entry(person).or_insert(0);
        *count += images.len() as u32;
        if self
            .rules
            .max_per_person
            .is_some_and(|limit| *count > limit)
        {
            self.crowded
                .entry(person)
                .or_insert_with(|| person_id.to_string());
        }
        for group in self.group(person_id, images, place) {
            self.judge(person_id, &group, place);
        }
    }

    /// A person's faces by the image they show, in the order listed. A face without a URL
    /// that the ledger does not know is an orphan at once.
    fn group<'i>(
        &mut self,
        person_id: &str,
        images: &[ImageRef<'i>],
        place: &dyn Fn() -> P,
    ) -> Vec<Group<'i>> {
        let mut groups: Vec<Group<'i>> = Vec::new();
        let mut group_of: KeyMap<usize> = KeyMap::default();
        for image in images {
            self.drift.server_faces += 1;
            let known = self.sides.ledger().by_id(image.id);
            if let Some(at) = known {
                self.on_server[at] = true;
            }
            let Some(url) = image.image_url else {
                if known.is_none() {
                    self.url_less.push(Orphan {
                        person_id: person_id.to_string(),
                        image_url: None,
                        id: self.rules.id(image.id),
                        line: None,
                    });
                    note_place(&mut self.places, image.id, place);
                }
                continue;
            };
            let key = ImageId::listed(url).key(&self.sides.library().name, person_id);
            let at = *group_of.entry(key).or_insert_with(|| {
                groups.push(Group {
                    key,
                    image_url: url,
                    faces: Vec::new(),
                });
                groups.len() - 1
            });
            groups[at].faces.push((image.id, known));
        }
        groups
    }

    /// One image's faces: the one to keep (the ledger's, else the first listed), the others
    /// duplicates; a kept face the ledger does not know is an orphan.
    fn judge(&mut self, person_id: &str, group: &Group<'_>, place: &dyn Fn() -> P) {
        let line = self.find_expected(group.key).map(|at| {
            self.listed[at] = true;
            self.sides.library().expected[at].line
        });
        let ledger_image = self.sides.ledger().find(group.key);
        let keep = group
            .faces
            .iter()
            .find(|(_, known)| known.is_some() && *known == ledger_image)
            .unwrap_or(&group.faces[0]);
        if group.faces.len() > 1 {
            for (id, _) in &group.faces {
                note_place(&mut self.places, id, place);
            }
            self.drift.duplicates.push(Duplicate {
                person_id: person_id.to_string(),
                image_url: group.image_url.to_string(),
                extra: group
                    .faces
                    .iter()
                    .filter(|(id, _)| *id != keep.0)
                    .map(|(id, _)| id.to_string())
                    .collect(),
                keep: keep.0.to_string(),
            });
        }
        if keep.1.is_none() {
            note_place(&mut self.places, keep.0, place);
            self.orphans.push(Orphan {
                person_id: person_id.to_string(),
                image_url: Some(group.image_url.to_string()),
                id: self.rules.id(keep.0),
                line,
            });
        }
    }

    /// The drift, once every person was walked.
    fn finish(mut self) -> (Drift, HashMap<String, P>) {
        // Findings in the server's order, the faces without a URL first.
        self.url_less.append(&mut self.orphans);
        self.drift.orphans = std::mem::take(&mut self.url_less);
        if let Some(limit) = self.rules.max_per_person {
            let crowded = std::mem::take(&mut self.crowded);
            self.drift.persons_over_limit = over_limit(crowded, &self.counts, limit);
        }
        self.settle_expected();
        let on_server = &self.on_server;
        self.drift.vanished_at = self
            .sides
            .library()
            .ledger_faces
            .iter()
            .copied()
            .filter(|&at| !on_server[at as usize])
            .collect();
        (self.drift, self.places.unwrap_or_default())
    }

    /// Each expected image the server does not list: missing, or refused (the service said
    /// no), or removed on purpose; one registered under a vanished id is reported as vanished.
    fn settle_expected(&mut self) {
        let (ledger, drift) = (self.sides.ledger(), &mut self.drift);
        for (at, e) in self.sides.library().expected.iter().enumerate() {
            let found = ledger.find(e.key());
            // Registered under an id the server no longer holds: reported once, as vanished.
            if found.is_some_and(|i| ledger.rec(i).face && !self.on_server[i]) {
                continue;
            }
            let rec = found.map(|i| ledger.rec(i));
            let status = rec.map(|r| r.status);
            // Removed on purpose (rollback, or a repair of a vanished id): the ledger and the
            // server agree it is not there; the next run registers it again.
            if status == Some(Status::Removed) {
                drift.removed_in_ledger += 1;
                continue;
            }
            if !self.listed[at] && rec.is_some_and(|r| r.refused) {
                drift.refused += 1;
            } else if !self.listed[at] {
                drift.missing.push(Missing {
                    line: e.line,
                    ledger_status: status.map(|s| s.as_str()),
                    ..Missing::default()
                });
            }
        }
    }
}

/// The persons listed with more faces than `limit`, by person id; `crowded` holds every
/// person whose count passed the limit while listed, `counts` their final counts.
fn over_limit(crowded: KeyMap<String>, counts: &KeyMap<u32>, limit: u32) -> Vec<Crowded> {
    let mut over: Vec<Crowded> = crowded
        .into_iter()
        .filter_map(|(person, person_id)| {
            let faces = counts.get(&person).copied().unwrap_or(0);
            (faces > limit).then_some(Crowded {
                person_id,
                faces: u64::from(faces),
            })
        })
        .collect();
    over.sort_by(|a, b| a.person_id.cmp(&b.person_id));
    over
}

fn note_place<P>(places: &mut Option<HashMap<String, P>>, id: &str, place: &dyn Fn() -> P) {
    if let Some(places) = places.as_mut()
        && !places.contains_key(id)
    {
        places.insert(id.to_string(), place());
    }
}

#[cfg(test)]
#[path = "drift_tests.rs"]
mod tests;
