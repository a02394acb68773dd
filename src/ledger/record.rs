//! The ledger's one record type: a serde-tagged enum over the kinds of line (`kind`), each line
//! written as `{"v":1,"kind":…,…}`. Status, target and object are enums, never free strings.
//! Its fields are listed once (`ledger_schema!`); the readers' views are generated from them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// The ledger's field list, written once: each record type's fields in the order they are
/// written (its required fields, then `optional { … }`, written only when present), and for each
/// field which reader views carry it. From it come the writer structs, the wide [`View`] every
/// command reads (every field of every kind, borrowed from the line) and the narrow
/// [`ReplayView`] that replay before a run decodes a million times (every other field of a line
/// is skipped unread). A new field is one line here.
///
/// The mark before a field: `[replay]` both views, `[view]` the wide view only, `[again]` the
/// views have it already from a record type above (one field name, one type across kinds),
/// `[unread]` no reader needs it. Text fields (`String`) are borrowed from the line by the
/// views when it holds no escapes; every view field is optional (a reader checks what it needs).
/// Each type is one token (a type used here is imported by name), so that the views can tell
/// text from the rest.
///
/// [`View`]: crate::ledger::View
/// [`ReplayView`]: crate::ledger::ReplayView
/// An optional string borrowed from the line when it holds no escapes. (serde borrows a
/// `Cow` only when it is the field itself: under an `Option` it would always allocate.)
pub(crate) fn borrowed<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed>::deserialize(d)?.map(|b| b.0))
}

/// Pre-flight's word on an image: the service would take it, or refuse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Passed,
    Refused,
}

/// What kind of line this is; kinds from later versions of the schema are `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Image,
    RunStart,
    RunEnd,
    Created,
    Deleted,
    Copy,
    Settled,
    Upload,
    Checked,
    #[serde(other)]
    Other,
}

macro_rules! ledger_schema {
    (
        $(
            $(#[$smeta:meta])*
            pub struct $name:ident {
                $( $(#[doc = $rdoc:literal])* [$rmark:ident] $rf:ident : $rt:tt, )*
                optional {
                    $( $(#[doc = $odoc:literal])* [$omark:ident] $of:ident : Option<$ot:tt>, )*
                }
            }
        )*
    ) => {
        $(
            $(#[$smeta])*
            pub struct $name {
                $( $(#[doc = $rdoc])* pub $rf: $rt, )*
                $(
                    $(#[doc = $odoc])*
                    #[serde(default, skip_serializing_if = "Option::is_none")]
                    pub $of: Option<$ot>,
                )*
            }

            impl $name {
                /// The record with its required fields, every optional one absent.
                #[allow(dead_code, clippy::too_many_arguments)]
                pub(crate) fn required($($rf: $rt),*) -> $name {
                    $name { $($rf,)* $($of: None,)* }
                }
            }
        )*
        ledger_schema!(@view ['a] [] []
            $( $( [$rmark] $rf : $rt, )* $( [$omark] $of : Option<$ot>, )* )*
        );
    };

    // The views, one field at a time: `[wide fields] [narrow fields] fields left`.
    (@view [$lt:lifetime] [$($w:tt)*] [$($n:tt)*]) => {
        /// The fields any reader needs, borrowed from the line when it holds no escapes.
        #[derive(Debug, Default, serde::Deserialize)]
        pub struct View<$lt> {
            pub v: Option<u32>,
            #[serde(default)]
            pub kind: Option<crate::ledger::record::LineKind>,
            $($w)*
        }

        /// The few fields replay before a run needs (every other field of a line is skipped
        /// unread): the image's identity and state, and the run records' bookends.
        #[derive(Debug, Default, serde::Deserialize)]
        pub struct ReplayView<$lt> {
            pub v: Option<u32>,
            #[serde(default)]
            pub kind: Option<crate::ledger::record::LineKind>,
            $($n)*
        }
    };
    (@view [$lt:lifetime] [$($w:tt)*] [$($n:tt)*] [$mark:ident] $f:ident : String, $($rest:tt)*) => {
        ledger_schema!(@field [$lt] [$($w)*] [$($n)*] [$mark] $f
            [#[serde(borrow, default, deserialize_with = "crate::ledger::record::borrowed")]]
            [std::borrow::Cow<$lt, str>] $($rest)*);
    };
    (@view [$lt:lifetime] [$($w:tt)*] [$($n:tt)*] [$mark:ident] $f:ident : Option<String>, $($rest:tt)*) => {
        ledger_schema!(@field [$lt] [$($w)*] [$($n)*] [$mark] $f
            [#[serde(borrow, default, deserialize_with = "crate::ledger::record::borrowed")]]
            [std::borrow::Cow<$lt, str>] $($rest)*);
    };
    (@view [$lt:lifetime] [$($w:tt)*] [$($n:tt)*] [$mark:ident] $f:ident : Option<$t:tt>, $($rest:tt)*) => {
        ledger_schema!(@field [$lt] [$($w)*] [$($n)*] [$mark] $f [#[serde(default)]] [$t] $($rest)*);
    };
    (@view [$lt:lifetime] [$($w:tt)*] [$($n:tt)*] [$mark:ident] $f:ident : $t:tt, $($rest:tt)*) => {
        ledger_schema!(@field [$lt] [$($w)*] [$($n)*] [$mark] $f [#[serde(default)]] [$t] $($rest)*);
    };
    (@field [$lt:lifetime] [$($w:tt)*] [$($n:tt)*] [replay] $f:ident [$($a:tt)*] [$($t:tt)*] $($rest:tt)*) => {
        ledger_schema!(@view [$lt]
            [$($w)* $($a)* pub $f: Option<$($t)*>,]
            [$($n)* $($a)* pub $f: Option<$($t)*>,]
            $($rest)*);
    };
    (@field [$lt:lifetime] [$($w:tt)*] [$($n:tt)*] [view] $f:ident [$($a:tt)*] [$($t:tt)*] $($rest:tt)*) => {
        ledger_schema!(@view [$lt] [$($w)* $($a)* pub $f: Option<$($t)*>,] [$($n)*] $($rest)*);
    };
    (@field [$lt:lifetime] [$($w:tt)*] [$($n:tt)*] [again] $f:ident [$($a:tt)*] [$($t:tt)*] $($rest:tt)*) => {
        ledger_schema!(@view [$lt] [$($w)*] [$($n)*] $($rest)*);
    };
    (@field [$lt:lifetime] [$($w:tt)*] [$($n:tt)*] [unread] $f:ident [$($a:tt)*] [$($t:tt)*] $($rest:tt)*) => {
        ledger_schema!(@view [$lt] [$($w)*] [$($n)*] $($rest)*);
    };
}

ledger_schema! {
    /// One line about one image. Field order is the order in the file.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
    pub struct ImageRecord {
        [replay] ts: String,
        [replay] run: String,
        [replay] status: Status,
        [replay] category_id: String,
        [replay] person_id: String,
        [replay] image_url: String,
        optional {
            /// The image's identity when it is not its URL: the manifest's `image_key`, or the
            /// canonical URL of a presigned one. Absent: the URL is the identity.
            [replay] image_key: Option<String>,
            [view] person_name: Option<String>,
            [view] line: Option<u64>,
            [view] face_id: Option<String>,
            [view] recovered: Option<bool>,
            /// Found on the server before anything was sent (reconciliation), not registered by us.
            [view] adopted: Option<bool>,
            /// A request for this image may still land after it was recorded (an attempt got no
            /// answer and the image was sent again): the next run reads the person once more and
            /// removes a late copy. Cleared by a `settled` record for the person.
            [replay] recheck: Option<bool>,
            /// Created by this run: another writer (the same job on another host, with another
            /// ledger) may have made the image too and, keeping the lowest id, remove this one
            /// after this run ended. A later run reads the person once more and keeps the lowest
            /// id as both writers do. Cleared by a `settled` record for the person.
            [replay] converge: Option<bool>,
            [view] attempts: Option<u32>,
            [view] error_code: Option<String>,
            [view] message: Option<String>,
            [replay] retryable: Option<bool>,
            /// For a `failed` image sent as a link the user signed: a fingerprint of that link
            /// (never the link), so a run can tell the manifest now has a new one.
            [replay] link_fingerprint: Option<String>,
            [view] reason: Option<String>,
            /// The SHA-256 of the image's bytes (lower-case hex), when pre-flight read them: a
            /// later run compares new photos with it (the same photo under two persons).
            [view] sha256: Option<String>,
            /// `ice` for ICE recognition-library records; absent means MTS.
            [replay] target: Option<TargetName>,
            [replay] algorithm: Option<String>,
            [view] lib_id: Option<String>,
            [view] entity_id: Option<String>,
            [view] sample_id: Option<String>,
        }
    }

    /// A command's start or end (`run_start` / `run_end`): no `image_url`.
    #[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
    pub struct RunRecord {
        [again] ts: String,
        [again] run: String,
        optional {
            [replay] command: Option<String>,
            [replay] manifest: Option<String>,
            [replay] endpoint: Option<String>,
            [unread] pid: Option<u32>,
            [unread] version: Option<String>,
            [replay] outcome: Option<String>,
            [replay] exit_code: Option<i32>,
            [view] summary: Option<Value>,
            [again] target: Option<TargetName>,
            /// The ICE algorithm of an ICE run.
            [again] algorithm: Option<String>,
        }
    }

    /// An ICE library or entity that a run created (`created`) or a rollback deleted (`deleted`):
    /// what lets a rollback remove only what the tool itself made.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
    pub struct ObjectRecord {
        [again] ts: String,
        [again] run: String,
        [again] target: TargetName,
        [again] algorithm: String,
        [view] object: ObjectKind,
        /// The library's or entity's name (the manifest's category_id or person_id).
        [view] name: String,
        [again] lib_id: String,
        optional {
            [again] entity_id: Option<String>,
            /// Found by a look-up after an answer that never arrived.
            [again] recovered: Option<bool>,
        }
    }

    /// A local photo a run uploaded (`upload`): the file as it was when it was read, and the
    /// object its content went to, so a later run neither reads nor uploads it again while its
    /// size and modification time are unchanged.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
    pub struct UploadRecord {
        [again] ts: String,
        [again] run: String,
        /// The file, as an absolute path.
        [view] path: String,
        [view] size: u64,
        /// Its modification time, in nanoseconds since the Unix epoch.
        [view] modified_ns: u64,
        /// `oss://BUCKET/PREFIX<sha256>.jpg|png`.
        [view] oss_object: String,
        optional {
        }
    }

    /// What pre-flight found when it read an image (`checked`): the image as it was then (its
    /// validators), the limits it was held to, and what was found, so that a later run with
    /// the same limits reads it again only when it has changed.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
    pub struct CheckRecord {
        [again] ts: String,
        [again] run: String,
        /// Where the bytes are: `oss://BUCKET/KEY` or the URL in canonical form (never a signed
        /// link).
        [view] source: String,
        [view] verdict: Verdict,
        /// The limits the image was held to (`Limits::fingerprint`): a verdict is reused only
        /// under the same ones.
        [view] limits: String,
        optional {
            /// The HTTP status of the download.
            [view] http_status: Option<u16>,
            /// The server's `ETag` and `Last-Modified`, and the size it declared (or the file's).
            [view] etag: Option<String>,
            [view] last_modified: Option<String>,
            [again] size: Option<u64>,
            /// Bytes read (all of them unless over the size limit).
            [view] bytes: Option<u64>,
            [view] format: Option<String>,
            [view] width: Option<u32>,
            [view] height: Option<u32>,
            [view] orientation: Option<u16>,
            [again] sha256: Option<String>,
            /// What was found in the image itself, each `{severity, kind, message}` (the
            /// comparison with other rows is made afresh by every run).
            [view] findings: Option<Value>,
        }
    }

    /// A person a run read again to settle it (`settled`): no request for any of its images can
    /// still land unseen, so later runs need not read it again.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
    pub struct PersonRecord {
        [again] ts: String,
        [again] run: String,
        [again] category_id: String,
        [again] person_id: String,
        optional {
            /// Late copies of its images that this settling removed.
            [unread] copies_removed: Option<u64>,
            [again] target: Option<TargetName>,
        }
    }
}

impl ImageRecord {
    /// A record of `status` for one image, stamped now, in run `run`. A signed link is
    /// recorded as what it names (its signature is a secret with a short life; the identity is
    /// the same either way).
    pub fn new(
        run: &str,
        status: Status,
        category_id: &str,
        person_id: &str,
        image_url: &str,
    ) -> ImageRecord {
        ImageRecord::required(
            crate::clock::now_rfc3339(),
            run.to_string(),
            status,
            category_id.to_string(),
            person_id.to_string(),
            crate::image::shown(image_url).into_owned(),
        )
    }

    /// A record of `status` for `image`: its source as it may be shown, and its identity
    /// when that is not the source as written.
    pub fn of(
        run: &str,
        status: Status,
        category_id: &str,
        person_id: &str,
        image: &crate::image::Image,
    ) -> ImageRecord {
        ImageRecord::new(run, status, category_id, person_id, &image.source)
            .with_identity(&image.id())
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
    Upload(UploadRecord),
    Checked(CheckRecord),
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

    fn line(record: Record) -> String {
        let mut out = Vec::new();
        encode(&record, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_field_is_written_in_the_order_release_0_1_0_writes_it() {
        let mut image = ImageRecord::new("r", Status::Failed, "c", "p", "u");
        image.ts = "t".into();
        image.image_key = Some("k".into());
        image.person_name = Some("n".into());
        image.line = Some(2);
        image.face_id = Some("f".into());
        image.recovered = Some(true);
        image.adopted = Some(true);
        image.recheck = Some(true);
        image.attempts = Some(3);
        image.error_code = Some("E".into());
        image.message = Some("m".into());
        image.retryable = Some(false);
        image.reason = Some("why".into());
        image.target = Some(TargetName::Ice);
        image.algorithm = Some("face".into());
        image.lib_id = Some("l".into());
        image.entity_id = Some("e".into());
        image.sample_id = Some("s".into());
        assert_eq!(
            line(Record::Image(image)),
            "{\"v\":1,\"kind\":\"image\",\"ts\":\"t\",\"run\":\"r\",\"status\":\"failed\",\
             \"category_id\":\"c\",\"person_id\":\"p\",\"image_url\":\"u\",\"image_key\":\"k\",\
             \"person_name\":\"n\",\"line\":2,\"face_id\":\"f\",\"recovered\":true,\"adopted\":true,\
             \"recheck\":true,\"attempts\":3,\"error_code\":\"E\",\"message\":\"m\",\"retryable\":false,\
             \"reason\":\"why\",\"target\":\"ice\",\"algorithm\":\"face\",\"lib_id\":\"l\",\
             \"entity_id\":\"e\",\"sample_id\":\"s\"}\n"
        );
        let run = RunRecord {
            ts: "t".into(),
            run: "r".into(),
            command: Some("run".into()),
            manifest: Some("m.csv".into()),
            endpoint: Some("e".into()),
            pid: Some(9),
            version: Some("0.1.0".into()),
            outcome: Some("done".into()),
            exit_code: Some(0),
            summary: Some(serde_json::json!({"rows": 1})),
            target: Some(TargetName::Mts),
            algorithm: Some("face".into()),
        };
        assert_eq!(
            line(Record::RunEnd(run)),
            "{\"v\":1,\"kind\":\"run_end\",\"ts\":\"t\",\"run\":\"r\",\"command\":\"run\",\
             \"manifest\":\"m.csv\",\"endpoint\":\"e\",\"pid\":9,\"version\":\"0.1.0\",\
             \"outcome\":\"done\",\"exit_code\":0,\"summary\":{\"rows\":1},\"target\":\"mts\",\
             \"algorithm\":\"face\"}\n"
        );
        let object = ObjectRecord {
            ts: "t".into(),
            run: "r".into(),
            target: TargetName::Ice,
            algorithm: "face".into(),
            object: ObjectKind::Entity,
            name: "p".into(),
            lib_id: "l".into(),
            entity_id: Some("e".into()),
            recovered: Some(true),
        };
        assert_eq!(
            line(Record::Created(object)),
            "{\"v\":1,\"kind\":\"created\",\"ts\":\"t\",\"run\":\"r\",\"target\":\"ice\",\
             \"algorithm\":\"face\",\"object\":\"entity\",\"name\":\"p\",\"lib_id\":\"l\",\
             \"entity_id\":\"e\",\"recovered\":true}\n"
        );
        let person = PersonRecord {
            ts: "t".into(),
            run: "r".into(),
            category_id: "c".into(),
            person_id: "p".into(),
            copies_removed: Some(1),
            target: Some(TargetName::Ice),
        };
        assert_eq!(
            line(Record::Settled(person)),
            "{\"v\":1,\"kind\":\"settled\",\"ts\":\"t\",\"run\":\"r\",\"category_id\":\"c\",\
             \"person_id\":\"p\",\"copies_removed\":1,\"target\":\"ice\"}\n"
        );
    }

    #[test]
    fn the_views_carry_the_fields_they_did_and_borrow_text_from_the_line() {
        use std::borrow::Cow;
        // No `..`: a field added to or lost from a view fails to compile here.
        let View {
            v: _,
            kind: _,
            ts: _,
            run: _,
            status: _,
            category_id: _,
            person_id: _,
            image_url: _,
            image_key: _,
            person_name: _,
            line: _,
            face_id: _,
            recovered: _,
            adopted: _,
            recheck: _,
            converge: _,
            attempts: _,
            error_code: _,
            message: _,
            retryable: _,
            link_fingerprint: _,
            reason: _,
            sha256: _,
            target: _,
            algorithm: _,
            lib_id: _,
            entity_id: _,
            sample_id: _,
            command: _,
            manifest: _,
            endpoint: _,
            outcome: _,
            exit_code: _,
            summary: _,
            object: _,
            name: _,
            path: _,
            size: _,
            modified_ns: _,
            oss_object: _,
            source: _,
            verdict: _,
            limits: _,
            http_status: _,
            etag: _,
            last_modified: _,
            bytes: _,
            format: _,
            width: _,
            height: _,
            orientation: _,
            findings: _,
        } = View::default();
        let ReplayView {
            v: _,
            kind: _,
            ts: _,
            run: _,
            status: _,
            category_id: _,
            person_id: _,
            image_url: _,
            image_key: _,
            retryable: _,
            link_fingerprint: _,
            recheck: _,
            converge: _,
            target: _,
            algorithm: _,
            command: _,
            manifest: _,
            endpoint: _,
            outcome: _,
            exit_code: _,
        } = ReplayView::default();
        let text = "{\"v\":1,\"kind\":\"created\",\"ts\":\"t\",\"run\":\"r\",\"target\":\"ice\",\
                    \"algorithm\":\"face\",\"object\":\"lib\",\"name\":\"n\",\"lib_id\":\"l\",\
                    \"image_url\":\"u\\\"q\"}";
        let wide: View = serde_json::from_str(text).unwrap();
        assert!(matches!(wide.name, Some(Cow::Borrowed("n"))));
        assert!(matches!(wide.lib_id, Some(Cow::Borrowed("l"))));
        assert_eq!(wide.object, Some(ObjectKind::Lib));
        assert!(matches!(wide.image_url, Some(Cow::Owned(ref u)) if u == "u\"q"));
        let narrow: ReplayView = serde_json::from_str(text).unwrap();
        assert!(matches!(narrow.algorithm, Some(Cow::Borrowed("face"))));
        assert_eq!(narrow.target, Some(TargetName::Ice));
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
