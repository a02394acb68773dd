//! The sweep: fetches each image a run would send — paced at its own rate, a few at a time,
//! each read capped at the size limit and one byte more — checks it, then compares hashes
//! across rows. One report, by line, for `check --preflight` and `run --preflight` alike.

use std::time::Duration;

use futures::StreamExt as _;

use super::cross::{self, Seen};
use super::inspect::{Body, Inspection, human_bytes, inspect, looks_like};
use super::recorded::{Prior, Remembered};
use super::{Finding, Limits};
use crate::api::{Client, Fetched};

/// How the sweep runs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub limits: Limits,
    /// Images fetched per second (0: unpaced).
    pub qps: u32,
    /// Images fetched at once.
    pub in_flight: usize,
    /// The longest one image's download may take.
    pub timeout: Duration,
    /// Every image (`--preflight`), else only `oss://` objects and local photos (`run`'s
    /// default: their bytes are the tool's to read anyway).
    pub every_image: bool,
}

/// One image to check: where it is and whose it is.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    pub line: u64,
    pub category_id: &'a str,
    pub person_id: &'a str,
    pub image_url: &'a str,
    /// The local file whose content the object will be, when the run uploads it (`--upload-to`):
    /// read instead of the object, which may not be there yet.
    pub file: Option<&'a std::path::Path>,
    /// The SHA-256 the manifest says the bytes have (`image_sha256`): other bytes are refused.
    pub expected_sha256: Option<&'a str>,
}

/// Every image `jobs` would send (unsettled ones included: `check` reads them all), in plan
/// order.
pub fn items(jobs: &[crate::plan::PersonJob]) -> Vec<Item<'_>> {
    jobs.iter()
        .flat_map(|job| {
            job.images.iter().map(move |image| Item {
                line: image.line,
                category_id: &job.category_id,
                person_id: &job.person_id,
                image_url: &image.image.source,
                file: None,
                expected_sha256: crate::manifest::declared_sha256(image.image.key.as_deref()),
            })
        })
        .collect()
}

/// What pre-flight found about one image.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Checked {
    pub line: u64,
    pub category_id: String,
    pub person_id: String,
    /// As it may be shown: a signed link's signature is dropped.
    pub image_url: String,
    /// The HTTP status of the download (absent when none came back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(flatten)]
    pub inspection: Inspection,
    /// The same bytes as this earlier line of the same person: one image, sent once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as: Option<u64>,
}

impl Checked {
    pub fn refused(&self) -> bool {
        self.inspection.refused()
    }

    /// The errors in one line of words, as a rejects file and the ledger give a reason.
    pub fn reason(&self) -> String {
        let errors: Vec<&str> = self
            .inspection
            .findings
            .iter()
            .filter(|f| f.is_error())
            .map(|f| f.message.as_str())
            .collect();
        errors.join("; ")
    }
}

/// Everything the sweep found, by line.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Images read (or tried).
    pub checked: u64,
    /// Images not read again: an earlier run's verdict stands, the image has not changed since
    /// (its `ETag` and size by a HEAD, or its key names its content) and the limits are the same.
    pub unchanged: u64,
    /// Images the service would refuse (not sent by `run --preflight`).
    pub refused: u64,
    /// Images sent, with something worth a look.
    pub warned: u64,
    pub bytes_read: u64,
    /// Refused images by what is wrong with them (the first error's kind).
    pub refused_by_kind: crate::report::Groups,
    /// Findings of images sent anyway, by kind.
    pub warned_by_kind: crate::report::Groups,
    pub images: Vec<Checked>,
    /// The verdicts on images read now, by source: for the ledger, so that the next run reads
    /// only what changes.
    #[serde(skip)]
    pub fresh: Vec<(String, Prior)>,
    /// Not the photos' trouble but the run's: OSS refused the credentials themselves, or
    /// nothing answered a single read. No row is judged by it; the run stops (exit 3 or 6).
    #[serde(skip)]
    pub halt: Option<Halt>,
}

/// Why pre-flight stopped the run instead of judging rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Halt {
    pub exit: crate::exit::Exit,
    pub message: String,
}

/// OSS codes that refuse the credentials, whatever the object: every read would meet them.
const CREDENTIAL_CODES: [&str; 6] = [
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "SecurityTokenExpired",
    "InvalidSecurityToken",
    "RequestTimeTooSkewed",
    "AccessKeyDisabled",
];

/// What one read says about the run rather than the photo.
#[derive(Clone, Debug, Default)]
struct Reach {
    /// Something answered (any status), or a local file was read.
    answered: bool,
    /// OSS refused the credentials: its code and message.
    credentials: Option<String>,
    /// The connection failed: what and where.
    unconnected: Option<String>,
}

impl Reach {
    fn of(fetched: &Result<Fetched, crate::api::ApiError>) -> Reach {
        match fetched {
            Ok(f) => Reach {
                answered: true,
                credentials: (f.status == 403)
                    .then(|| f.oss_code())
                    .flatten()
                    .filter(|code| CREDENTIAL_CODES.contains(&code.as_str()))
                    .map(|code| format!("OSS refused the run's credentials ({code})")),
                unconnected: None,
            },
            Err(e) if e.code() == "ConnectFailed" => Reach {
                unconnected: Some(e.message().to_string()),
                ..Reach::default()
            },
            Err(_) => Reach::default(),
        }
    }
}

/// Problems listed one by one in the text; the rest are counted.
const SHOWN: usize = 50;

impl Report {
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut text = format!(
            "preflight: {} images read ({}): {} would be refused, {} with warnings\n",
            self.checked,
            human_bytes(self.bytes_read),
            self.refused,
            self.warned
        );
        if self.unchanged > 0 {
            let _ = writeln!(
                text,
                "  {} of them not read again: unchanged since an earlier run read them, its \
                 verdict stands",
                self.unchanged
            );
        }
        if !self.refused_by_kind.is_empty() {
            let _ = writeln!(
                text,
                "  refused: {}",
                crate::report::render_groups(&self.refused_by_kind)
            );
        }
        if !self.warned_by_kind.is_empty() {
            let _ = writeln!(
                text,
                "  warnings: {}",
                crate::report::render_groups(&self.warned_by_kind)
            );
        }
        let noted = self
            .images
            .iter()
            .filter(|c| !c.inspection.findings.is_empty());
        let mut shown = 0;
        for c in noted.clone().take(SHOWN) {
            for f in &c.inspection.findings {
                let _ = writeln!(
                    text,
                    "    line {}: {} / {} {}: {f}",
                    c.line, c.category_id, c.person_id, c.image_url
                );
            }
            shown += 1;
        }
        let noted = noted.count();
        if noted > shown {
            let _ = writeln!(
                text,
                "    … and {} more images with findings (--json lists them all)",
                noted - shown
            );
        }
        text
    }
}

/// Fetches and checks `items` with `client` (its credentials sign `oss://` links), paced by
/// `settings`, and compares their hashes with each other's and with the registered ones the
/// ledger `remembers`; an image an earlier run read, unchanged since and held to the same
/// limits, keeps that run's verdict and is not read again. The report lists the items in line
/// order.
pub async fn sweep(
    client: &Client,
    items: &[Item<'_>],
    remembered: &Remembered,
    settings: &Settings,
) -> Report {
    if !items.is_empty() {
        tracing::info!(
            images = items.len(),
            qps = settings.qps,
            in_flight = settings.in_flight,
            "pre-flight: reading each image before anything is sent"
        );
    }
    let pace = Pace {
        start: crate::clock::instant(),
        gap: (settings.qps > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(settings.qps))),
    };
    let limits = settings.limits.fingerprint();
    let mut images: Vec<Swept> = futures::stream::iter(items.iter().enumerate())
        .map(|(i, item)| sweep_one(client, item, pace.slot(i), remembered, settings, &limits))
        .buffer_unordered(settings.in_flight.max(1))
        .collect()
        .await;
    images.sort_by_key(|swept| swept.checked.line);
    if let Some(halt) = halt_of(&images) {
        return Report {
            checked: images.len() as u64,
            halt: Some(halt),
            ..Report::default()
        };
    }
    let verdicts = compare(&images, remembered);
    tally(images, verdicts)
}

/// When the `i`th image may be asked for: the pace spares the servers photos come from.
#[derive(Clone, Copy)]
struct Pace {
    start: tokio::time::Instant,
    gap: Option<Duration>,
}

impl Pace {
    fn slot(self, i: usize) -> Option<tokio::time::Instant> {
        self.gap.map(|gap| self.start + gap.mul_f64(i as f64))
    }
}

/// One image: its earlier verdict when it stands (a key that names its content, or a HEAD
/// that finds it unchanged), else read (at its slot, unless it is a local file) and checked.
async fn sweep_one<'a>(
    client: &Client,
    item: &Item<'a>,
    slot: Option<tokio::time::Instant>,
    remembered: &Remembered,
    settings: &Settings,
    limits: &str,
) -> Swept<'a> {
    let source = crate::image::Locator::of(item.image_url).into_string();
    let prior = remembered
        .checks
        .get(&source)
        .filter(|prior| prior.limits == limits);
    // A key that names its content needs no question to the server.
    if let Some(prior) = prior.filter(|p| p.named_by_content(&source)) {
        return reused(item, prior);
    }
    if let Some(at) = slot
        && item.file.is_none()
    {
        tokio::time::sleep_until(at).await;
    }
    if let Some(prior) = prior
        && item.file.is_none()
        && let Ok(Some(now)) = client.head_image(item.image_url, settings.timeout).await
        && prior.validators.same_as_before(&now)
    {
        return reused(item, prior);
    }
    let fetched = match item.file {
        Some(file) => read_file(file, cap_of(settings)).await,
        None => {
            client
                .fetch_image(item.image_url, cap_of(settings), settings.timeout)
                .await
        }
    };
    let validators = match &fetched {
        Ok(f) if (200..300).contains(&f.status) => Some(f.validators()),
        _ => None,
    };
    let reach = Reach::of(&fetched);
    let (checked, read) = check_one(item, fetched, &settings.limits);
    // Only an answered read is a verdict worth keeping: one that could not reach the image is
    // tried again next time.
    let fresh = validators
        .filter(|v| v.usable() || item.file.is_some())
        .map(|validators| {
            let prior = Prior {
                limits: limits.to_string(),
                validators,
                http_status: checked.status,
                inspection: checked.inspection.clone(),
            };
            (source, prior)
        });
    Swept {
        checked,
        read,
        reused: false,
        fresh,
        expected: item.expected_sha256,
        reach,
    }
}

/// The rule across rows ([`cross`]) over the swept images (in line order) and the registered
/// ones the ledger remembers: one verdict per swept image.
fn compare(images: &[Swept<'_>], remembered: &Remembered) -> Vec<cross::Verdict> {
    let mut seen: Vec<Seen<'_>> = images
        .iter()
        .map(|swept| Seen {
            line: swept.checked.line,
            category_id: &swept.checked.category_id,
            person_id: &swept.checked.person_id,
            sha256: swept.checked.inspection.sha256.as_deref(),
            recorded: false,
        })
        .collect();
    seen.extend(remembered.registered.iter().map(|r| Seen {
        line: r.line,
        category_id: &r.category_id,
        person_id: &r.person_id,
        sha256: Some(&r.sha256),
        recorded: true,
    }));
    let mut verdicts = cross::compare(&seen);
    verdicts.truncate(images.len());
    verdicts
}

/// The report: each image with every finding (its own, the rule across rows, the hash the
/// manifest names), and the counts.
fn tally(images: Vec<Swept<'_>>, verdicts: Vec<cross::Verdict>) -> Report {
    let mut report = Report::default();
    for (swept, verdict) in images.into_iter().zip(verdicts) {
        let Swept {
            mut checked,
            read,
            reused,
            fresh,
            expected,
            reach: _,
        } = swept;
        checked.inspection.findings.extend(verdict.findings);
        checked
            .inspection
            .findings
            .extend(not_the_named_photo(&checked.inspection, expected));
        checked.same_as = verdict.same_as;
        report.checked += 1;
        report.unchanged += u64::from(reused);
        report.bytes_read += read;
        report.fresh.extend(fresh);
        if let Some(error) = checked.inspection.findings.iter().find(|f| f.is_error()) {
            report.refused += 1;
            *report
                .refused_by_kind
                .entry(error.kind.to_string())
                .or_default() += 1;
        } else if !checked.inspection.findings.is_empty() {
            report.warned += 1;
            for f in &checked.inspection.findings {
                *report.warned_by_kind.entry(f.kind.to_string()).or_default() += 1;
            }
        }
        report.images.push(checked);
    }
    report
}

/// One image swept: what was found, the bytes read for it, whether an earlier verdict stood,
/// and the verdict to remember when it was read now.
struct Swept<'a> {
    checked: Checked,
    read: u64,
    reused: bool,
    fresh: Option<(String, Prior)>,
    expected: Option<&'a str>,
    reach: Reach,
}

/// The run's trouble, if the reads show it: OSS refusing the credentials (exit 3: every read
/// would meet it), or not one read answered and they failed to connect (exit 6: an outage, not
/// photos that are not there).
fn halt_of(images: &[Swept<'_>]) -> Option<Halt> {
    if let Some(refused) = images.iter().find_map(|s| s.reach.credentials.as_ref()) {
        return Some(Halt {
            exit: crate::exit::Exit::ServiceFatal,
            message: format!(
                "pre-flight: {refused}; fix the credentials (or --oss-region / --oss-endpoint) \
                 and run again: nothing was sent"
            ),
        });
    }
    let tried: Vec<&Swept<'_>> = images.iter().filter(|s| !s.reused).collect();
    let unconnected = tried.iter().find_map(|s| s.reach.unconnected.as_ref())?;
    (!tried.iter().any(|s| s.reach.answered)).then(|| Halt {
        exit: crate::exit::Exit::Unreachable,
        message: format!(
            "pre-flight: no photo could be read, nothing answered ({unconnected}); check the \
             network and --oss-endpoint / --oss-region: nothing was sent"
        ),
    })
}

/// The finding when the manifest names the photo's bytes (`image_sha256`) and these are
/// others: the link leads to another photo (replaced, or the wrong file).
fn not_the_named_photo(inspection: &Inspection, expected: Option<&str>) -> Option<Finding> {
    let (expected, got) = (expected?, inspection.sha256.as_deref()?);
    (!got.eq_ignore_ascii_case(expected)).then(|| {
        Finding::error(
            "not the photo named",
            format!(
                "not the photo image_sha256 names: its bytes hash to {}…, not {}… (the photo \
                 was replaced, or the row links another file)",
                &got[..12.min(got.len())],
                &expected[..12.min(expected.len())]
            ),
        )
    })
}

/// The most a read takes: the size limit and one byte more (to tell "over" from "at").
fn cap_of(settings: &Settings) -> u64 {
    settings.limits.max_bytes.saturating_add(1)
}

/// `item` judged as an earlier run judged the same bytes.
fn reused<'a>(item: &Item<'a>, prior: &Prior) -> Swept<'a> {
    Swept {
        checked: Checked {
            line: item.line,
            category_id: item.category_id.to_string(),
            person_id: item.person_id.to_string(),
            image_url: crate::image::shown(item.image_url).into_owned(),
            status: prior.http_status,
            inspection: prior.inspection.clone(),
            same_as: None,
        },
        read: 0,
        reused: true,
        fresh: None,
        expected: item.expected_sha256,
        reach: Reach {
            answered: true,
            ..Reach::default()
        },
    }
}

/// A local file read as a download would be: at most `cap` bytes.
async fn read_file(path: &std::path::Path, cap: u64) -> Result<Fetched, crate::api::ApiError> {
    use std::io::Read as _;
    let path = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let declared = file.metadata()?.len();
        let mut bytes = Vec::new();
        file.take(cap).read_to_end(&mut bytes)?;
        Ok::<_, std::io::Error>(Fetched {
            status: 200,
            content_type: None,
            declared_len: Some(declared),
            truncated: declared > bytes.len() as u64,
            bytes,
            // A file's content is its identity (its object is named by its hash).
            etag: None,
            last_modified: None,
        })
    })
    .await;
    match read {
        Ok(Ok(fetched)) => Ok(fetched),
        Ok(Err(e)) => Err(crate::api::ApiError::new(
            None,
            "FileUnreadable",
            e.to_string(),
        )),
        Err(e) => Err(crate::api::ApiError::new(
            None,
            "FileUnreadable",
            e.to_string(),
        )),
    }
}

/// The checks on one download: what came back, then the bytes.
fn check_one(
    item: &Item<'_>,
    fetched: Result<Fetched, crate::api::ApiError>,
    limits: &Limits,
) -> (Checked, u64) {
    let mut checked = Checked {
        line: item.line,
        category_id: item.category_id.to_string(),
        person_id: item.person_id.to_string(),
        image_url: crate::image::shown(item.image_url).into_owned(),
        status: None,
        inspection: Inspection::default(),
        same_as: None,
    };
    let fetched = match fetched {
        Ok(fetched) => fetched,
        Err(error) => {
            checked.inspection.findings.push(Finding::error(
                "not reachable",
                format!("not reachable: {}", error.message()),
            ));
            return (checked, 0);
        }
    };
    checked.status = Some(fetched.status);
    let read = fetched.bytes.len() as u64;
    if !(200..300).contains(&fetched.status) {
        checked.inspection.bytes = read;
        checked
            .inspection
            .findings
            .push(refusal(item.image_url, &fetched));
        return (checked, read);
    }
    checked.inspection = inspect(
        item.image_url,
        &Body {
            bytes: &fetched.bytes,
            truncated: fetched.truncated,
            declared_len: fetched.declared_len,
            content_type: fetched.content_type.as_deref(),
        },
        limits,
    );
    (checked, read)
}

/// Why a download that was answered with an error status would be refused: OSS's code for an
/// object, else the status and what came back instead of an image.
fn refusal(source: &str, fetched: &Fetched) -> Finding {
    let status = fetched.status;
    let body = String::from_utf8_lossy(&fetched.bytes[..fetched.bytes.len().min(4096)]);
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.trim().to_string());
    match code {
        Some(code) if source.starts_with("oss://") => {
            let what = match code.as_str() {
                "NoSuchKey" | "NoSuchBucket" => "the object is not there",
                "AccessDenied" => "the run's credentials need oss:GetObject on it",
                _ => "the service could not download it either",
            };
            Finding::error(
                "not readable",
                format!("not readable: OSS answered {status} {code}: {what}"),
            )
        }
        _ => Finding::error(
            "not reachable",
            format!(
                "not reachable: HTTP {status}, not an image: {}",
                looks_like(
                    &fetched.bytes,
                    fetched.content_type.as_deref(),
                    fetched.declared_len
                )
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_page_names_its_status_and_what_it_is() {
        let fetched = Fetched {
            status: 404,
            content_type: Some("text/html".into()),
            declared_len: Some(1229),
            bytes: vec![b'<'; 1229],
            ..Fetched::default()
        };
        assert_eq!(
            refusal("http://x/a.jpg", &fetched).message,
            "not reachable: HTTP 404, not an image: text/html, 1.2 kB"
        );
        let oss = Fetched {
            status: 404,
            bytes: b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>".to_vec(),
            ..Fetched::default()
        };
        assert_eq!(
            refusal("oss://b/k.jpg", &oss).message,
            "not readable: OSS answered 404 NoSuchKey: the object is not there"
        );
    }
}
