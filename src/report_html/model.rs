//! The page's model: libraries, persons and photos with a badge and a reason, the runs, and the
//! figures counted from them — plain data that `commands::report` fills and `render` writes.

use std::collections::BTreeMap;

use super::Rate;
use super::thumbs::{self, Source, Thumbs};

/// How photos appear: inlined (no link can expire), linked to the manifest's URL, or not at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThumbMode {
    Embed,
    Link,
    None,
}

/// What became of one manifest row (or one image the ledger knows that the manifest no longer
/// names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Badge {
    Failed,
    Invalid,
    Skipped,
    #[default]
    Pending,
    Registered,
    Adopted,
    Removed,
    /// A later row naming an image an earlier row named: sent once, for the first.
    Duplicate,
}

impl Badge {
    pub const ALL: [Badge; 8] = [
        Badge::Failed,
        Badge::Invalid,
        Badge::Skipped,
        Badge::Pending,
        Badge::Registered,
        Badge::Adopted,
        Badge::Removed,
        Badge::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Badge::Failed => "failed",
            Badge::Invalid => "invalid",
            Badge::Skipped => "skipped",
            Badge::Pending => "pending",
            Badge::Registered => "registered",
            Badge::Adopted => "adopted",
            Badge::Removed => "removed",
            Badge::Duplicate => "duplicate",
        }
    }

    /// What the badge says on the page.
    pub(super) fn label(self) -> &'static str {
        match self {
            Badge::Skipped => "skipped: 10-photo limit",
            // A sync, a rollback or a repair: the record's reason says which.
            Badge::Removed => "removed",
            other => other.as_str(),
        }
    }

    /// Something an operator has to look at: refused, not sent, or not known yet.
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            Badge::Failed | Badge::Invalid | Badge::Skipped | Badge::Pending
        )
    }
}

#[derive(Clone, Debug, Default)]
pub struct Photo {
    /// The manifest line; `None` for an image the manifest no longer names.
    pub line: Option<u64>,
    pub url: String,
    pub badge: Badge,
    /// The service's code (or the failing column of an invalid row).
    pub code: Option<String>,
    /// The service's message, or the reason the tool gave.
    pub reason: Option<String>,
    /// What happens next, in words.
    pub note: Option<String>,
    pub server_id: Option<String>,
    pub attempts: Option<u32>,
    /// The local photo the row names, when no run has uploaded it yet (its thumbnail is read
    /// from disk).
    pub file: Option<std::path::PathBuf>,
}

impl Photo {
    /// Where its thumbnail can be read from, if anywhere.
    pub(super) fn source(&self) -> Option<Source> {
        thumbs::source(&self.url, self.file.as_deref())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Person {
    pub id: String,
    pub name: Option<String>,
    pub photos: Vec<Photo>,
    /// Left out of the page by `--max-cards` (only ever a person without a problem).
    pub not_drawn: bool,
}

impl Person {
    pub fn has_problem(&self) -> bool {
        self.photos.iter().any(|p| p.badge.is_problem())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Library {
    pub name: String,
    pub persons: Vec<Person>,
}

/// One run as its start and end records tell it; also `status`'s last run (serialised as
/// `status --json` prints it).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunSpan {
    pub run: String,
    pub command: Option<String>,
    pub started: Option<String>,
    pub ended: Option<String>,
    pub outcome: Option<String>,
    pub exit_code: Option<i32>,
}

/// A run in the page's table: its span, and what its summary and registrations add.
#[derive(Clone, Debug, Default)]
pub struct RunLine {
    pub span: RunSpan,
    /// From the run's summary.
    pub throttled: Option<u64>,
    pub retries: Option<u64>,
    /// Its registrations over time, if it made any.
    pub rate: Option<Rate>,
}

/// The summary's figures, counted from the photos shown.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub rows: u64,
    pub persons: u64,
    pub problem_persons: u64,
    pub by_badge: BTreeMap<Badge, u64>,
    /// Refusals and other reasons, by (badge, code, message): the same code with different
    /// messages ("no face", "link expired") are different groups.
    pub reasons: BTreeMap<(Badge, String, String), u64>,
    pub copies_removed: u64,
}

impl Figures {
    pub fn count(rows: u64, libraries: &[Library], copies_removed: u64) -> Figures {
        let mut figures = Figures {
            rows,
            copies_removed,
            ..Figures::default()
        };
        for person in libraries.iter().flat_map(|l| &l.persons) {
            figures.persons += 1;
            figures.problem_persons += u64::from(person.has_problem());
            for photo in &person.photos {
                *figures.by_badge.entry(photo.badge).or_default() += 1;
                if matches!(photo.badge, Badge::Failed | Badge::Invalid | Badge::Skipped) {
                    let key = (
                        photo.badge,
                        photo.code.clone().unwrap_or_default(),
                        photo.reason.clone().unwrap_or_default(),
                    );
                    *figures.reasons.entry(key).or_default() += 1;
                }
            }
        }
        figures
    }

    pub(super) fn of(&self, badge: Badge) -> u64 {
        self.by_badge.get(&badge).copied().unwrap_or(0)
    }
}

/// Everything the page shows.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub manifest: String,
    pub ledger: String,
    pub target: String,
    /// The host the last run sent to.
    pub endpoint: Option<String>,
    pub generated: String,
    pub runs: Vec<RunLine>,
    /// Older runs not listed.
    pub runs_hidden: usize,
    pub libraries: Vec<Library>,
    pub figures: Figures,
}

impl Page {
    /// The photos whose thumbnails to read (URL as written, and where from), once each, in
    /// page order (problem cards come first, so they are the ones that get thumbnails when
    /// there are more than `max`).
    pub fn thumbnail_sources(&self, mode: ThumbMode, max: usize) -> Vec<(String, Source)> {
        if mode != ThumbMode::Embed {
            return Vec::new();
        }
        let mut seen = std::collections::HashSet::new();
        let mut wanted = Vec::new();
        for photo in self.drawn_problems_first().flat_map(|p| &p.photos) {
            if wanted.len() >= max {
                break;
            }
            if let Some(source) = photo.source()
                && seen.insert(photo.url.as_str())
            {
                wanted.push((photo.url.clone(), source));
            }
        }
        wanted
    }

    /// The `oss://` objects of the cards drawn, once each: the links `--thumbnails link` signs.
    pub fn linked_objects(&self, mode: ThumbMode) -> Vec<String> {
        if mode != ThumbMode::Link {
            return Vec::new();
        }
        let mut seen = std::collections::HashSet::new();
        self.drawn_problems_first()
            .flat_map(|p| &p.photos)
            .filter(|p| p.file.is_none() && thumbs::is_object(&p.url))
            .filter(|p| seen.insert(p.url.as_str()))
            .map(|p| p.url.clone())
            .collect()
    }

    /// The persons whose cards are drawn, those with a problem first.
    fn drawn_problems_first(&self) -> impl Iterator<Item = &Person> {
        let persons = || self.libraries.iter().flat_map(|l| &l.persons);
        persons()
            .filter(|p| p.has_problem())
            .chain(persons().filter(|p| !p.has_problem() && !p.not_drawn))
    }

    /// Photos of the cards drawn that could have had a thumbnail but were not read.
    pub(super) fn capped_thumbnails(&self, thumbs: &Thumbs) -> usize {
        let drawn = self.libraries.iter().flat_map(|l| &l.persons);
        drawn
            .filter(|p| !p.not_drawn)
            .flat_map(|p| &p.photos)
            .filter(|p| p.source().is_some() && thumbs.get(&p.url).is_none())
            .count()
    }

    /// Keeps the cards of every person with a problem and of at most `max` others (`0`: no
    /// cap); the others are counted, not drawn, so a page of 100,000 rows stays light.
    pub fn cap_cards(&mut self, max: usize) {
        if max == 0 {
            return;
        }
        let mut left = max;
        for person in self.libraries.iter_mut().flat_map(|l| &mut l.persons) {
            if person.has_problem() {
                continue;
            }
            match left.checked_sub(1) {
                Some(rest) => left = rest,
                None => person.not_drawn = true,
            }
        }
    }
}

/// `2026-12-05 21:04:05 UTC`: a time as a reader of the page reads it.
pub(super) fn utc_text(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}
