//! What `verify` compares, as pure data, for either target: the manifest's expected images and
//! the ledger's registered images of one library against what the server holds in it, giving
//! the drift — missing images, duplicates, orphans, vanished ids, persons over the limit.
//!
//! Images match by `image_key` (library and person case-insensitive, URL exact), server images
//! by their id (FaceId or SampleId).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::ledger::{KeyMap, Status};
use crate::manifest::image_key;

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

/// One image on the server, in one library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFace {
    pub category_id: String,
    pub person_id: String,
    pub image_url: Option<String>,
    pub id: String,
}

/// A manifest image that should be on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub line: u64,
    pub category_id: String,
    pub person_id: String,
    pub person_name: Option<String>,
    pub image_url: String,
    /// The row's identity (its `image_key`, else the URL): what ledger records are keyed by.
    pub identity: String,
}

/// An image the ledger records as registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerFace {
    /// The server's id: FaceId or SampleId.
    pub id: String,
    pub category_id: String,
    pub person_id: String,
    pub image_url: String,
    /// The record's identity (its `image_key`, else the URL).
    pub identity: String,
}

/// One library's side of the comparison, before the server is read.
#[derive(Clone, Debug, Default)]
pub struct LibraryInputs {
    /// As first written (manifest first, else ledger).
    pub name: String,
    pub expected: Vec<Expected>,
    /// Manifest images beyond a person's 10 in manifest order: never sent, so not expected.
    pub over_limit: u64,
    /// Image keys of the ledger's registered faces in this library.
    pub ledger_faces: Vec<u128>,
}

/// Everything known before the server is read.
#[derive(Default)]
pub struct Inputs {
    pub libraries: Vec<LibraryInputs>,
    /// The last status of every image in the ledger.
    pub statuses: KeyMap<Status>,
    /// Registered faces, by image key.
    pub faces: KeyMap<LedgerFace>,
    /// Image key of each registered server id.
    pub ids: HashMap<String, u128>,
    pub invalid_rows: u64,
    pub duplicate_rows: u64,
    /// Records of the other target (they live in another service).
    pub other_target_records: u64,
    /// Bytes of a torn last ledger line, for an appender to cut off.
    pub torn_tail: u64,
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
    pub vanished: Vec<Vanished>,
    pub persons_over_limit: Vec<Crowded>,
}

impl Drift {
    pub fn agrees(&self) -> bool {
        self.error.is_none()
            && self.missing.is_empty()
            && self.duplicates.is_empty()
            && self.orphans.is_empty()
            && self.vanished.is_empty()
            && self.persons_over_limit.is_empty()
    }

    pub fn extra_copies(&self) -> usize {
        self.duplicates.iter().map(|d| d.extra.len()).sum()
    }
}

/// Faces of one image on the server, in the order listed.
struct Group {
    person_id: String,
    image_url: String,
    faces: Vec<String>,
}

/// One library's server faces, grouped by image.
#[derive(Default)]
struct Listed<'a> {
    groups: Vec<Group>,
    group_of: KeyMap<usize>,
    on_server: HashSet<&'a str>,
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
/// ledger records.
pub fn compare(
    library: &LibraryInputs,
    listing: &[ServerFace],
    inputs: &Inputs,
    rules: Rules,
) -> Drift {
    let mut drift = Drift {
        library: library.name.clone(),
        expected: library.expected.len() as u64,
        over_limit_in_manifest: library.over_limit,
        ..Drift::default()
    };
    let listed = group(listing, inputs, rules, &mut drift);
    let expected_line: KeyMap<u64> = library
        .expected
        .iter()
        .map(|e| (key_of(e), e.line))
        .collect();
    for (key, at) in &listed.group_of {
        let line = expected_line.get(key).copied();
        judge_group(&listed.groups[*at], *key, line, inputs, rules, &mut drift);
    }
    // HashMap order is arbitrary: list groups' findings in the server's order.
    let order: HashMap<&str, usize> = listed
        .groups
        .iter()
        .enumerate()
        .flat_map(|(i, g)| g.faces.iter().map(move |f| (f.as_str(), i)))
        .collect();
    drift
        .duplicates
        .sort_by_key(|d| order.get(d.keep.as_str()).copied());
    drift
        .orphans
        .sort_by_key(|o| order.get(o.id.as_str()).copied());
    for e in &library.expected {
        let key = key_of(e);
        // Removed on purpose (rollback, or a repair of a vanished id): the ledger and the
        // server agree it is not there; the next run registers it again.
        if inputs.statuses.get(&key) == Some(&Status::Removed) {
            drift.removed_in_ledger += 1;
            continue;
        }
        if !listed.group_of.contains_key(&key) {
            drift.missing.push(Missing {
                line: e.line,
                person_id: e.person_id.clone(),
                image_url: e.image_url.clone(),
                ledger_status: inputs.statuses.get(&key).map(|s| s.as_str()),
            });
        }
    }
    for face in library
        .ledger_faces
        .iter()
        .filter_map(|k| inputs.faces.get(k))
    {
        if !listed.on_server.contains(face.id.as_str()) {
            drift.vanished.push(Vanished {
                person_id: face.person_id.clone(),
                image_url: face.image_url.clone(),
                id: rules.id(&face.id),
            });
        }
    }
    drift
}

/// Groups the library's images by image key; counts them, notes crowded persons and URL-less
/// orphans.
fn group<'a>(
    listing: &'a [ServerFace],
    inputs: &Inputs,
    rules: Rules,
    drift: &mut Drift,
) -> Listed<'a> {
    let mut listed = Listed::default();
    let mut per_person: KeyMap<(usize, &str)> = KeyMap::default();
    for face in listing {
        drift.server_faces += 1;
        listed.on_server.insert(face.id.as_str());
        let person = crate::manifest::person_key(&face.category_id, &face.person_id);
        per_person.entry(person).or_insert((0, &face.person_id)).0 += 1;
        let Some(url) = &face.image_url else {
            if !inputs.ids.contains_key(&face.id) {
                drift.orphans.push(Orphan {
                    person_id: face.person_id.clone(),
                    image_url: None,
                    id: rules.id(&face.id),
                    line: None,
                });
            }
            continue;
        };
        let key = image_key(&face.category_id, &face.person_id, url);
        let groups = &mut listed.groups;
        let at = *listed.group_of.entry(key).or_insert_with(|| {
            groups.push(Group {
                person_id: face.person_id.clone(),
                image_url: url.clone(),
                faces: Vec::new(),
            });
            groups.len() - 1
        });
        groups[at].faces.push(face.id.clone());
    }
    if let Some(limit) = rules.max_per_person {
        let mut crowded: Vec<Crowded> = per_person
            .values()
            .filter(|(n, _)| *n > limit as usize)
            .map(|(n, person)| Crowded {
                person_id: person.to_string(),
                faces: *n as u64,
            })
            .collect();
        crowded.sort_by(|a, b| a.person_id.cmp(&b.person_id));
        drift.persons_over_limit = crowded;
    }
    listed
}

/// Duplicates and orphans of one image's faces.
fn judge_group(
    group: &Group,
    key: u128,
    line: Option<u64>,
    inputs: &Inputs,
    rules: Rules,
    drift: &mut Drift,
) {
    let ledger_face = inputs.faces.get(&key).map(|f| f.id.as_str());
    let keep = ledger_face
        .filter(|id| group.faces.iter().any(|f| f == id))
        .unwrap_or(&group.faces[0])
        .to_string();
    if group.faces.len() > 1 {
        drift.duplicates.push(Duplicate {
            person_id: group.person_id.clone(),
            image_url: group.image_url.clone(),
            extra: group
                .faces
                .iter()
                .filter(|f| **f != keep)
                .cloned()
                .collect(),
            keep: keep.clone(),
        });
    }
    if !inputs.ids.contains_key(&keep) {
        drift.orphans.push(Orphan {
            person_id: group.person_id.clone(),
            image_url: Some(group.image_url.clone()),
            id: rules.id(&keep),
            line,
        });
    }
}

pub fn key_of(e: &Expected) -> u128 {
    image_key(&e.category_id, &e.person_id, &e.image_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTS: Rules = Rules {
        max_per_person: Some(10),
        samples: false,
    };

    fn listing(faces: &[(&str, &str, &str)]) -> Vec<ServerFace> {
        faces
            .iter()
            .map(|(person, url, id)| ServerFace {
                category_id: "LIB".into(),
                person_id: person.to_string(),
                image_url: Some(url.to_string()),
                id: id.to_string(),
            })
            .collect()
    }

    fn inputs(expected: &[(&str, &str)], ledger: &[(&str, &str, &str)]) -> (LibraryInputs, Inputs) {
        let mut lib = LibraryInputs {
            name: "lib".into(),
            ..LibraryInputs::default()
        };
        let mut all = Inputs::default();
        for (i, (person, url)) in expected.iter().enumerate() {
            lib.expected.push(Expected {
                line: i as u64 + 2,
                category_id: "lib".into(),
                person_id: person.to_string(),
                person_name: None,
                image_url: url.to_string(),
                identity: url.to_string(),
            });
        }
        for (person, url, id) in ledger {
            let key = image_key("lib", person, url);
            lib.ledger_faces.push(key);
            all.statuses.insert(key, Status::Registered);
            all.ids.insert(id.to_string(), key);
            all.faces.insert(
                key,
                LedgerFace {
                    id: id.to_string(),
                    category_id: "lib".into(),
                    person_id: person.to_string(),
                    image_url: url.to_string(),
                    identity: url.to_string(),
                },
            );
        }
        (lib, all)
    }

    #[test]
    fn a_server_that_holds_exactly_the_ledgers_faces_agrees() {
        let (lib, all) = inputs(&[("alice", "u1")], &[("alice", "u1", "f1")]);
        let drift = compare(&lib, &listing(&[("Alice", "u1", "f1")]), &all, MTS);
        assert!(drift.agrees(), "{drift:?}");
        assert_eq!(drift.server_faces, 1);
    }

    #[test]
    fn each_kind_of_drift_is_told_apart() {
        let (lib, all) = inputs(
            &[("alice", "u1"), ("bob", "u2"), ("carol", "u3")],
            &[("alice", "u1", "f1"), ("bob", "u2", "f2")],
        );
        let server = listing(&[
            ("alice", "u1", "x1"),
            ("alice", "u1", "f1"),
            ("carol", "u3", "f3"),
            ("dave", "u4", "f4"),
        ]);
        let drift = compare(&lib, &server, &all, MTS);
        assert_eq!(drift.missing.len(), 1);
        assert_eq!(drift.missing[0].image_url, "u2");
        assert_eq!(drift.missing[0].ledger_status, Some("registered"));
        assert_eq!(drift.duplicates.len(), 1);
        assert_eq!(drift.duplicates[0].keep, "f1", "the ledger's copy is kept");
        assert_eq!(drift.duplicates[0].extra, ["x1"]);
        let orphans: Vec<_> = drift
            .orphans
            .iter()
            .map(|o| (o.id.as_str(), o.line))
            .collect();
        assert_eq!(orphans, [("f3", Some(4)), ("f4", None)]);
        assert_eq!(drift.vanished.len(), 1);
        assert_eq!(drift.vanished[0].id.as_str(), "f2");
        assert!(!drift.agrees());
    }

    #[test]
    fn duplicates_the_ledger_does_not_know_keep_the_first_copy_as_an_orphan() {
        let (lib, all) = inputs(&[("alice", "u1")], &[]);
        let drift = compare(
            &lib,
            &listing(&[("alice", "u1", "a"), ("alice", "u1", "b")]),
            &all,
            MTS,
        );
        assert_eq!(drift.duplicates[0].keep, "a");
        assert_eq!(drift.orphans.len(), 1);
        assert_eq!(drift.orphans[0].id.as_str(), "a");
    }

    #[test]
    fn a_person_over_ten_faces_is_reported() {
        let (lib, all) = inputs(&[], &[]);
        let urls: Vec<String> = (0..11).map(|i| format!("u{i}")).collect();
        let ids: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
        let faces: Vec<(&str, &str, &str)> = (0..11)
            .map(|i| ("zoe", urls[i].as_str(), ids[i].as_str()))
            .collect();
        let drift = compare(&lib, &listing(&faces), &all, MTS);
        assert_eq!(drift.persons_over_limit[0].faces, 11);
    }
}
