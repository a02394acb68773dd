//! The photos the ledger records as registered with the hash pre-flight read then: what new
//! photos are compared with, so that a photo already enrolled for one person is caught when a
//! later manifest files it under another (or again under the same person at another URL).

use std::collections::HashMap;
use std::path::Path;

use crate::ledger::{LedgerError, Status, read};

/// One registered image and its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub line: u64,
    pub category_id: String,
    pub person_id: String,
    pub sha256: String,
}

/// Every image whose last word in the ledger is `registered` with a hash (a missing ledger
/// holds none). Blocking: it reads the file.
pub fn recorded(ledger: &Path) -> Result<Vec<Recorded>, LedgerError> {
    let mut last: HashMap<u128, Option<Recorded>> = HashMap::new();
    read::scan(ledger, true, |entry| {
        let read::Entry::Image(image) = entry else {
            return;
        };
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
    })?;
    let mut out: Vec<Recorded> = last.into_values().flatten().collect();
    out.sort_by_key(|r| r.line);
    Ok(out)
}
