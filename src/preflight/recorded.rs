//! What the ledger remembers for pre-flight, read in one pass:
//! - the photos it records as registered with the hash pre-flight read then, which new photos
//!   are compared with, so that a photo already enrolled for one person is caught when a later
//!   manifest files it under another (or again under the same person at another URL);
//! - the last verdict on each image pre-flight read (`checked` records), so that a later run
//!   reads again only what has changed.

use std::collections::HashMap;
use std::path::Path;

use super::{Finding, Format, Inspection};
use crate::api::Validators;
use crate::ledger::record::{CheckRecord, Verdict};
use crate::ledger::{LedgerError, Status, read};

/// One registered image and its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub line: u64,
    pub category_id: String,
    pub person_id: String,
    pub sha256: String,
}

/// What an earlier run's pre-flight found in the bytes at one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prior {
    /// The limits it was held to ([`super::Limits::fingerprint`]).
    pub limits: String,
    pub validators: Validators,
    pub http_status: Option<u16>,
    /// What was found in the image itself (not across rows).
    pub inspection: Inspection,
}

impl Prior {
    /// Whether the source names its content: an object whose key is the hash it was read with
    /// (`…/<sha256>.jpg`, as `--upload-to` names a local photo), so the same source is the
    /// same bytes whatever a HEAD would say.
    pub fn named_by_content(&self, source: &str) -> bool {
        let Some(sha) = self.inspection.sha256.as_deref() else {
            return false;
        };
        let last = source.rsplit('/').next().unwrap_or(source);
        let stem = last.split_once('.').map_or(last, |(stem, _)| stem);
        stem.eq_ignore_ascii_case(sha)
    }

    /// The verdict as the ledger writes it, for `source` read under `limits`.
    pub fn record(&self, run: &str, source: &str) -> CheckRecord {
        let findings =
            serde_json::to_value(&self.inspection.findings).expect("findings always serialise");
        let mut record = CheckRecord::required(
            crate::clock::now_rfc3339(),
            run.to_string(),
            source.to_string(),
            if self.inspection.refused() {
                Verdict::Refused
            } else {
                Verdict::Passed
            },
            self.limits.clone(),
        );
        record.http_status = self.http_status;
        record.etag = self.validators.etag.clone();
        record.last_modified = self.validators.last_modified.clone();
        record.size = self.validators.size;
        record.bytes = Some(self.inspection.bytes);
        record.format = self
            .inspection
            .format
            .map(|f| f.name().to_ascii_lowercase());
        record.width = self.inspection.width;
        record.height = self.inspection.height;
        record.orientation = self.inspection.orientation;
        record.sha256 = self.inspection.sha256.clone();
        record.findings = (!self.inspection.findings.is_empty()).then_some(findings);
        record
    }
}

/// What the ledger remembers for pre-flight.
#[derive(Clone, Debug, Default)]
pub struct Remembered {
    /// Every image whose last word is `registered` with a hash, in line order.
    pub registered: Vec<Recorded>,
    /// The last verdict on each source, by its locator.
    pub checks: HashMap<String, Prior>,
}

/// Reads what the ledger at `ledger` remembers for pre-flight (a missing ledger: nothing).
/// Blocking: it reads the file.
pub fn recorded(ledger: &Path) -> Result<Remembered, LedgerError> {
    let mut last: HashMap<u128, Option<Recorded>> = HashMap::new();
    let mut checks: HashMap<String, Prior> = HashMap::new();
    read::scan(ledger, true, |entry| match entry {
        read::Entry::Image(image) => {
            let key = image.key();
            match (image.status, image.view.sha256.as_deref()) {
                (Status::Registered, Some(sha)) => {
                    last.insert(
                        key,
                        Some(Recorded {
                            line: image.view.line.unwrap_or(0),
                            category_id: image.category_id.to_string(),
                            person_id: image.person_id.to_string(),
                            sha256: sha.to_string(),
                        }),
                    );
                }
                // Registered again without a hash (read back, adopted): the bytes seen stay.
                (Status::Registered, None) => {}
                _ => {
                    last.insert(key, None);
                }
            }
        }
        read::Entry::Checked(view) => {
            if let Some((source, prior)) = prior_of(view) {
                checks.insert(source, prior);
            }
        }
        _ => {}
    })?;
    let mut registered: Vec<Recorded> = last.into_values().flatten().collect();
    registered.sort_by_key(|r| r.line);
    Ok(Remembered { registered, checks })
}

/// A `checked` line as a [`Prior`]; `None` when it lacks what a reuse needs (a damaged or
/// foreign line is read again rather than trusted).
fn prior_of(view: &crate::ledger::View<'_>) -> Option<(String, Prior)> {
    let source = view.source.as_deref()?.to_string();
    let limits = view.limits.as_deref()?.to_string();
    let findings: Vec<Finding> = match &view.findings {
        Some(value) => serde_json::from_value(value.clone()).ok()?,
        None => Vec::new(),
    };
    let refused = findings.iter().any(Finding::is_error);
    // The verdict and the findings must agree, or the line is not one this build wrote.
    if view.verdict?
        != if refused {
            Verdict::Refused
        } else {
            Verdict::Passed
        }
    {
        return None;
    }
    let format = match view.format.as_deref() {
        Some(name) => Some(Format::parse(name)?),
        None => None,
    };
    let inspection = Inspection {
        format,
        bytes: view.bytes.unwrap_or(0),
        width: view.width,
        height: view.height,
        orientation: view.orientation,
        sha256: view.sha256.as_deref().map(str::to_string),
        findings,
    };
    let validators = Validators {
        etag: view.etag.as_deref().map(str::to_string),
        last_modified: view.last_modified.as_deref().map(str::to_string),
        size: view.size,
    };
    Some((
        source,
        Prior {
            limits,
            validators,
            http_status: view.http_status,
            inspection,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prior(findings: Vec<Finding>) -> Prior {
        Prior {
            limits: super::super::Limits::default().fingerprint(),
            validators: Validators {
                etag: Some("\"ABC\"".into()),
                last_modified: None,
                size: Some(1234),
            },
            http_status: Some(200),
            inspection: Inspection {
                format: Some(Format::Jpeg),
                bytes: 1234,
                width: Some(40),
                height: Some(40),
                orientation: Some(6),
                sha256: Some("ab".repeat(32)),
                findings,
            },
        }
    }

    #[test]
    fn a_verdict_written_to_the_ledger_reads_back_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut bytes = Vec::new();
        let refused = prior(vec![
            Finding::error("too small", "too small: 40×40 px"),
            Finding::warning("rotated", "EXIF orientation 6"),
        ]);
        let passed = prior(vec![]);
        for (source, prior) in [("oss://b/a.jpg", &refused), ("oss://b/b.jpg", &passed)] {
            crate::ledger::record::encode(
                &crate::ledger::record::Record::Checked(prior.record("r1", source)),
                &mut bytes,
            );
        }
        std::fs::write(&path, &bytes).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\"verdict\":\"refused\""), "{text}");
        assert!(text.contains("\"verdict\":\"passed\""), "{text}");
        let remembered = recorded(&path).unwrap();
        assert_eq!(remembered.checks["oss://b/a.jpg"], refused);
        assert_eq!(remembered.checks["oss://b/b.jpg"], passed);
        assert!(remembered.registered.is_empty());
    }

    #[test]
    fn a_verdict_that_disagrees_with_its_findings_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut record = prior(vec![Finding::error("too small", "…")]).record("r", "oss://b/a.jpg");
        record.verdict = Verdict::Passed;
        let mut bytes = Vec::new();
        crate::ledger::record::encode(&crate::ledger::record::Record::Checked(record), &mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        assert!(recorded(&path).unwrap().checks.is_empty());
    }

    #[test]
    fn an_object_named_by_its_hash_is_its_content() {
        let p = prior(vec![]);
        let sha = "ab".repeat(32);
        assert!(p.named_by_content(&format!("oss://b/photos/{sha}.jpg")));
        assert!(p.named_by_content(&format!("oss://b/{}.png", sha.to_uppercase())));
        assert!(!p.named_by_content("oss://b/photos/anchor.jpg"));
        assert!(!p.named_by_content(&format!("oss://b/{sha}x.jpg")));
    }

    #[test]
    fn validators_prove_an_image_unchanged_only_when_they_can() {
        let etag = |e: &str, size| Validators {
            etag: Some(e.into()),
            last_modified: None,
            size,
        };
        assert!(etag("\"A\"", Some(5)).same_as_before(&etag("\"A\"", Some(5))));
        assert!(etag("\"A\"", Some(5)).same_as_before(&etag("\"A\"", None)));
        assert!(!etag("\"A\"", Some(5)).same_as_before(&etag("\"A\"", Some(6))));
        assert!(!etag("\"A\"", Some(5)).same_as_before(&etag("\"B\"", Some(5))));
        let dated = |d: Option<&str>, size| Validators {
            etag: None,
            last_modified: d.map(str::to_string),
            size,
        };
        let monday = Some("Mon, 30 Nov 2026 10:00:00 GMT");
        assert!(dated(monday, Some(5)).same_as_before(&dated(monday, Some(5))));
        assert!(!dated(monday, None).same_as_before(&dated(monday, None)));
        assert!(!dated(None, Some(5)).same_as_before(&dated(None, Some(5))));
        assert!(!etag("\"A\"", Some(5)).same_as_before(&dated(monday, Some(5))));
        assert!(!Validators::default().usable());
    }
}
