//! The ledger's one record type: a serde-tagged enum over the kinds of line (`kind`), each line
//! written as `{"v":1,"kind":…,…}`. Status, target and object are enums, never free strings.

use serde::{Deserialize, Serialize};

/// The record format version written by this build; replay accepts this and older.
pub const SCHEMA_VERSION: u32 = 1;

/// What happened to an image, as its last record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Registered,
    Failed,
    Invalid,
    Skipped,
    /// A removal is about to be sent (journaled first); its outcome is not known yet.
    Removing,
    Removed,
}

impl Status {
    /// Every status, in the order reports show them.
    pub const ALL: [Status; 7] = [
        Status::Registered,
        Status::Pending,
        Status::Failed,
        Status::Invalid,
        Status::Skipped,
        Status::Removing,
        Status::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Registered => "registered",
            Status::Failed => "failed",
            Status::Invalid => "invalid",
            Status::Skipped => "skipped",
            Status::Removing => "removing",
            Status::Removed => "removed",
        }
    }
}

/// The service a record is about; an image record without `target` is MTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetName {
    Mts,
    Ice,
}

/// What an ICE `created` / `deleted` record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Lib,
    Entity,
}

/// One line about one image. Field order is the order in the file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    pub ts: String,
    pub run: String,
    pub status: Status,
    pub category_id: String,
    pub person_id: String,
    pub image_url: String,
    /// The image's identity when it is not its URL: the manifest's `image_key`, or the
    /// canonical URL of a presigned one. Absent: the URL is the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// Found on the server before anything was sent (reconciliation), not registered by us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<bool>,
    /// A request for this image may still land after it was recorded (an attempt got no
    /// answer and the image was sent again): the next run reads the person once more and
    /// removes a late copy. Cleared by a `settled` record for the person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recheck: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `ice` for ICE recognition-library records; absent means MTS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lib_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_id: Option<String>,
}

impl ImageRecord {
    /// A record of `status` for one image, stamped now, in run `run`.
    pub fn new(
        run: &str,
        status: Status,
        category_id: &str,
        person_id: &str,
        image_url: &str,
    ) -> ImageRecord {
        ImageRecord {
            ts: crate::clock::now_rfc3339(),
            run: run.to_string(),
            status,
            category_id: category_id.to_string(),
            person_id: person_id.to_string(),
            image_url: image_url.to_string(),
            image_key: None,
            person_name: None,
            line: None,
            face_id: None,
            recovered: None,
            adopted: None,
            recheck: None,
            attempts: None,
            error_code: None,
            message: None,
            retryable: None,
            reason: None,
            target: None,
            algorithm: None,
            lib_id: None,
            entity_id: None,
            sample_id: None,
        }
    }

    /// Records the image's identity when it is not its URL as written.
    pub fn with_identity(mut self, id: &crate::image::ImageId<'_>) -> ImageRecord {
        if id.as_str() != self.image_url {
            self.image_key = Some(id.as_str().to_owned());
        }
        self
    }

    /// The server's id of the image: FaceId (MTS) or SampleId (ICE).
    pub fn server_id(&self) -> Option<&str> {
        self.face_id.as_deref().or(self.sample_id.as_deref())
    }
}

/// A command's start or end (`run_start` / `run_end`): no `image_url`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub ts: String,
    pub run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetName>,
    /// The ICE algorithm of an ICE run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
}

impl RunRecord {
    /// The start of a command in this process, stamped now.
    pub fn start(run: &str, command: &str) -> RunRecord {
        RunRecord {
            ts: crate::clock::now_rfc3339(),
            run: run.into(),
            command: Some(command.into()),
            pid: Some(std::process::id()),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            ..RunRecord::default()
        }
    }

    /// The end of a command, stamped now.
    pub fn end(run: &str, outcome: &str, exit_code: i32, summary: serde_json::Value) -> RunRecord {
        RunRecord {
            ts: crate::clock::now_rfc3339(),
            run: run.into(),
            outcome: Some(outcome.into()),
            exit_code: Some(exit_code),
            summary: Some(summary),
            ..RunRecord::default()
        }
    }
}

/// An ICE library or entity that a run created (`created`) or a rollback deleted (`deleted`):
/// what lets a rollback remove only what the tool itself made.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ObjectRecord {
    pub ts: String,
    pub run: String,
    pub target: TargetName,
    pub algorithm: String,
    pub object: ObjectKind,
    /// The library's or entity's name (the manifest's category_id or person_id).
    pub name: String,
    pub lib_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// Found by a look-up after an answer that never arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

/// A person a run read again to settle it (`settled`): no request for any of its images can
/// still land unseen, so later runs need not read it again.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PersonRecord {
    pub ts: String,
    pub run: String,
    pub category_id: String,
    pub person_id: String,
    /// Late copies of its images that this settling removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies_removed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetName>,
}

/// One ledger line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Image(ImageRecord),
    RunStart(RunRecord),
    RunEnd(RunRecord),
    Created(ObjectRecord),
    Deleted(ObjectRecord),
    /// A late copy of an image (same image key, another server id): `removing` before the
    /// removal is sent, `removed` after. Never changes the image's own state.
    Copy(ImageRecord),
    Settled(PersonRecord),
}

#[derive(Serialize)]
struct Versioned<'a> {
    v: u32,
    #[serde(flatten)]
    record: &'a Record,
}

/// Serialises a record as one line (`v` first, then `kind`), with its newline, onto `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let line = Versioned {
        v: SCHEMA_VERSION,
        record,
    };
    serde_json::to_writer(&mut *out, &line).expect("ledger records always serialise");
    out.push(b'\n');
}

/// Whether `id` can be sent in a removal: a plain id, never empty, padded, a list, or the
/// service's `ALL` wildcard in any case or spacing (a forged or damaged ledger line must never
/// widen a removal to a whole person or library).
pub fn is_safe_id(id: &str) -> bool {
    let squeezed: String = id.chars().filter(|c| !c.is_whitespace()).collect();
    !id.is_empty()
        && id.trim() == id
        && !id.contains(',')
        && !id.chars().any(char::is_control)
        && !squeezed.eq_ignore_ascii_case("all")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_start_with_the_version_and_the_kind_as_the_current_release_writes_them() {
        let mut out = Vec::new();
        let mut r = ImageRecord::new("r", Status::Pending, "c", "p", "u");
        r.ts = "t".into();
        encode(&Record::Image(r), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"v\":1,\"kind\":\"image\",\"ts\":\"t\",\"run\":\"r\",\"status\":\"pending\",\
             \"category_id\":\"c\",\"person_id\":\"p\",\"image_url\":\"u\"}\n"
        );
    }

    #[test]
    fn a_record_reads_back_as_what_was_written() {
        let mut out = Vec::new();
        let mut r = ImageRecord::new("r", Status::Registered, "c", "p", "u");
        r.target = Some(TargetName::Ice);
        r.sample_id = Some("s".into());
        let record = Record::Image(r);
        encode(&record, &mut out);
        let back: Record = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn ids_that_could_widen_a_removal_are_never_safe() {
        for bad in [
            "", " f1", "f1 ", "a,b", "ALL", "all", " AlL ", "A L L", "f\n1",
        ] {
            assert!(!is_safe_id(bad), "{bad:?}");
        }
        assert!(is_safe_id("7c3f0e2a-11"));
    }
}
