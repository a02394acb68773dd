//! Plain-data copies of the sandbox state and counters, in insertion order, for tests and dumps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything the sandbox holds, as `GET /__sandbox/state` and `--state-file` show it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateSnapshot {
    pub mts: MtsSnapshot,
    pub ice: IceSnapshot,
    pub stats: Stats,
    #[serde(default)]
    pub oss: OssSnapshot,
}

/// The sandbox's OSS: its objects, the object requests it received, and the service side's
/// downloads of `ImageUrl`s that named its objects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OssSnapshot {
    /// By bucket, then key.
    pub objects: Vec<ObjectSnapshot>,
    pub requests: OssRequests,
    /// In arrival order, links included (a link is a secret with a short life: this state is
    /// for tests and rehearsals; the sandbox never logs one).
    pub fetches: Vec<FetchSnapshot>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectSnapshot {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// Lower-case hex.
    pub md5: String,
    /// As OSS sends it: the MD5 in upper-case hex, quoted.
    pub etag: String,
    pub content_type: String,
}

/// Object requests received over HTTP, by method (the service side's downloads not included).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OssRequests {
    pub get: u64,
    pub head: u64,
    pub put: u64,
    /// Any other method (refused).
    pub other: u64,
    /// Requests answered with an OSS error (a 4xx or an injected 500).
    pub refused: u64,
}

/// One download of an `ImageUrl` by `RegisterCustomFace` or `CreateRecognitionSample`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FetchSnapshot {
    pub action: String,
    /// The URL as the service received it.
    pub link: String,
    pub bucket: String,
    pub key: String,
    /// When the download happened (Unix milliseconds).
    pub at_ms: i64,
    /// When the link expires by its own terms, if it is a signed link.
    pub link_expires_ms: Option<i64>,
    /// When the STS token it was signed with expires, if it was signed with one the sandbox
    /// issued.
    pub token_expires_ms: Option<i64>,
    /// `None` when the image was served; else OSS's error code, or `NotAnImage`.
    pub refused: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MtsSnapshot {
    pub categories: Vec<CategorySnapshot>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CategorySnapshot {
    pub category_id: String,
    pub category_name: Option<String>,
    pub category_description: Option<String>,
    pub persons: Vec<PersonSnapshot>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonSnapshot {
    pub person_id: String,
    pub person_name: Option<String>,
    pub person_description: Option<String>,
    pub faces: Vec<FaceSnapshot>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaceSnapshot {
    pub face_id: String,
    pub image_url: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IceSnapshot {
    pub libs: Vec<LibSnapshot>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LibSnapshot {
    pub algorithm: String,
    pub lib_id: String,
    pub lib_name: String,
    pub lib_description: Option<String>,
    pub entities: Vec<EntitySnapshot>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntitySnapshot {
    pub entity_id: String,
    pub entity_name: String,
    pub entity_info: Option<String>,
    pub samples: Vec<SampleSnapshot>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleSnapshot {
    pub sample_id: String,
    pub image_url: Option<String>,
    pub label_prompt: Option<String>,
}

/// Successful state changes of one action, and their time span.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

impl Applied {
    /// Successes per second between the first and the last.
    pub fn rate(&self) -> f64 {
        let span = self.last_ms.saturating_sub(self.first_ms) as f64 / 1000.0;
        if self.count < 2 || span <= 0.0 {
            return 0.0;
        }
        (self.count - 1) as f64 / span
    }
}

/// Counters since start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Every API request received (the `/__sandbox/` paths excluded).
    pub requests: u64,
    /// Requests that passed authentication and rate limiting, per action.
    pub by_action: BTreeMap<String, u64>,
    /// State-changing calls that succeeded and changed the state (an `error_after` one included).
    pub applied: u64,
    /// Calls refused with `Throttling.User` (a scripted `Throttle` included).
    pub throttled: u64,
    /// Calls refused by authentication (missing parameters, key, timestamp, signature, nonce, token).
    pub auth_rejected: u64,
    /// Injected faults per kind (`error_before`, ..., `throttle`).
    pub faults: BTreeMap<String, u64>,
    /// Per state-changing action: how many succeeded, and when the first and the last did
    /// (Unix milliseconds): the rate as the server saw it.
    #[serde(default)]
    pub applied_by_action: BTreeMap<String, Applied>,
    /// Temporary credentials handed out (STS, ECS metadata, credentials URI).
    #[serde(default)]
    pub credentials_issued: u64,
    /// Per action: the most requests accepted within any sliding second (measured whatever
    /// the limit, so a client's pacing can be checked against an unlimited sandbox).
    #[serde(default)]
    pub peak_per_second: BTreeMap<String, u64>,
}

impl StateSnapshot {
    /// Every face of the MTS side, as `(category_id, person_id, face)`.
    pub fn faces(&self) -> impl Iterator<Item = (&str, &str, &FaceSnapshot)> {
        self.mts.categories.iter().flat_map(|c| {
            c.persons.iter().flat_map(move |p| {
                p.faces
                    .iter()
                    .map(move |f| (c.category_id.as_str(), p.person_id.as_str(), f))
            })
        })
    }
}
