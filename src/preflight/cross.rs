//! The rule across rows: the same bytes (SHA-256) under two different persons is an error for
//! both rows — a photo shows one face, so one of the two persons is wrong — and the same bytes
//! twice for one person (under two URLs) is one image: the later row is a warning and is sent
//! once. Images the ledger records as registered, with the hash pre-flight read then, take
//! part: they come first (they are on the server already).

use std::collections::HashMap;

use super::Finding;

/// One image as the rule sees it.
#[derive(Clone, Debug)]
pub struct Seen<'a> {
    pub line: u64,
    pub category_id: &'a str,
    pub person_id: &'a str,
    pub sha256: Option<&'a str>,
    /// Registered by an earlier run (the ledger's hash): compared with, not judged.
    pub recorded: bool,
}

/// What the rule says about one image, by its index in the input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub findings: Vec<Finding>,
    /// The same bytes as this earlier line of the same person: sent once, under that line.
    pub same_as: Option<u64>,
}

/// Compares every image's hash with the others'; one verdict per input, in order.
pub fn compare(images: &[Seen<'_>]) -> Vec<Verdict> {
    let mut out = vec![Verdict::default(); images.len()];
    let mut by_hash: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, image) in images.iter().enumerate() {
        if let Some(hash) = image.sha256 {
            by_hash.entry(hash).or_default().push(i);
        }
    }
    let person = |i: usize| crate::image::person_key(images[i].category_id, images[i].person_id);
    for group in by_hash.values().filter(|g| g.len() > 1) {
        let mut group = group.clone();
        group.sort_by_key(|&i| (!images[i].recorded, images[i].line));
        for (at, &i) in group.iter().enumerate() {
            let others: Vec<usize> = group
                .iter()
                .copied()
                .filter(|&j| j != i && person(j) != person(i))
                .collect();
            if !others.is_empty() {
                let named: Vec<String> = others
                    .iter()
                    .map(|&j| {
                        format!(
                            "line {} ({} / {}{})",
                            images[j].line,
                            images[j].category_id,
                            images[j].person_id,
                            if images[j].recorded {
                                ", registered"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                out[i].findings.push(Finding::error(
                    "the same photo under two persons",
                    format!(
                        "the same photo as {} under another person: a photo shows one face, so one \
                     of them is wrong",
                        named.join(", ")
                    ),
                ));
                continue;
            }
            // Only this person holds these bytes: the first row is the image, later ones repeat it.
            if let Some(&first) = group[..at].first() {
                out[i].same_as = Some(images[first].line);
                let (registered, sent) = if images[first].recorded {
                    (", registered", "not sent again")
                } else {
                    ("", "sent once")
                };
                out[i].findings.push(Finding::warning(
                    "the same photo twice for a person",
                    format!(
                        "the same photo as line {}{registered} for the same person under another \
                     URL: one image, {sent}",
                        images[first].line
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen<'a>(line: u64, person: &'a str, sha: Option<&'a str>) -> Seen<'a> {
        Seen {
            line,
            category_id: "lib",
            person_id: person,
            sha256: sha,
            recorded: false,
        }
    }

    #[test]
    fn a_registered_photo_counts_first_for_its_person_and_against_any_other() {
        let recorded = Seen {
            recorded: true,
            ..seen(9, "alice", Some("aa"))
        };
        let v = compare(&[seen(3, "alice", Some("aa")), recorded.clone()]);
        assert_eq!(v[0].same_as, Some(9), "{v:?}");
        assert!(
            v[0].findings[0].message.contains("line 9, registered"),
            "{v:?}"
        );
        let v = compare(&[seen(3, "bob", Some("aa")), recorded]);
        assert!(v[0].findings[0].is_error(), "{v:?}");
        assert!(
            v[0].findings[0]
                .message
                .contains("line 9 (lib / alice, registered)"),
            "{v:?}"
        );
    }

    #[test]
    fn one_photo_under_two_persons_is_an_error_for_both_naming_the_other() {
        let v = compare(&[
            seen(2, "alice", Some("aa")),
            seen(3, "bob", Some("aa")),
            seen(4, "carol", Some("bb")),
        ]);
        assert!(v[0].findings[0].is_error());
        assert!(
            v[0].findings[0].message.contains("line 3 (lib / bob)"),
            "{v:?}"
        );
        assert!(v[1].findings[0].is_error());
        assert!(
            v[1].findings[0].message.contains("line 2 (lib / alice)"),
            "{v:?}"
        );
        assert_eq!(v[2], Verdict::default());
    }

    #[test]
    fn one_photo_twice_for_one_person_is_sent_once_with_a_warning_on_the_later_line() {
        let v = compare(&[
            seen(7, "alice", Some("aa")),
            seen(2, "Alice ", Some("aa")),
            seen(9, "alice", None),
        ]);
        assert_eq!(v[1], Verdict::default(), "the earlier line is the image");
        assert_eq!(v[0].same_as, Some(2));
        assert!(!v[0].findings[0].is_error());
        assert!(v[0].findings[0].message.contains("line 2"), "{v:?}");
        assert_eq!(v[2], Verdict::default());
    }

    #[test]
    fn a_photo_twice_for_one_person_and_once_for_another_is_an_error_everywhere() {
        let v = compare(&[
            seen(2, "alice", Some("aa")),
            seen(3, "alice", Some("aa")),
            seen(4, "bob", Some("aa")),
        ]);
        assert!(
            v.iter().all(|v| v.findings.iter().any(Finding::is_error)),
            "{v:?}"
        );
        assert!(
            v[2].findings[0]
                .message
                .contains("line 2 (lib / alice), line 3 (lib / alice)")
        );
    }
}
