//! Property tests of the pure parts a user's data flows through: the manifest reader, the
//! signer's percent-encoding and ledger replay. Each property runs a bounded number of cases
//! (proptest's default 256, fewer for the costlier ones) so the file stays fast in debug builds.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

use face_enroll::image::ImageId;
use face_enroll::ledger::{self, ImageRecord, RunRecord, Status};
use face_enroll::manifest::{Entry, Reader, Row};
use face_enroll::sign::percent_encode;
use proptest::prelude::*;

/// `cases` per property, and no regression files written into the source tree.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest reader
// ---------------------------------------------------------------------------------------------

/// Reads every entry; returns `None` when the header is refused. Never panics by contract.
fn read_all(bytes: Vec<u8>) -> Option<Vec<Result<Entry, String>>> {
    let reader = Reader::from_reader(Path::new("prop.csv"), Cursor::new(bytes)).ok()?;
    // The iterator is fused and ends after its first error; the bound is only a safety net.
    Some(
        reader
            .take(100_000)
            .map(|r| r.map_err(|e| e.to_string()))
            .collect(),
    )
}

/// Bytes that look a little like CSV, so the fuzzing reaches past the header more often.
fn csv_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"category_id,person_id,image_url\n".to_vec()),
        Just(b"CategoryId;PersonId;ImageUrl;PersonName\r\n".to_vec()),
        Just(b"lib,p1,https://img.example.com/a.jpg\n".to_vec()),
        Just(b"\"".to_vec()),
        Just(b",".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\xef\xbb\xbf".to_vec()),
        Just(b"\0".to_vec()),
        Just("张".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// An id the reader must accept: non-empty after trimming, no control characters, not a system
/// library, with commas, quotes, spaces and non-ASCII text that force CSV quoting.
fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,\"'张é_.-]{0,24}".prop_filter("non-empty after trimming", |s| !s.trim().is_empty())
}

fn url() -> impl Strategy<Value = String> {
    (
        "(http|https|HTTPS)",
        "[a-z0-9.-]{1,12}",
        "[a-zA-Z0-9/_.%,-]{0,30}",
    )
        .prop_map(|(scheme, host, path)| format!("{scheme}://h{host}/{path}"))
}

/// A person name may hold anything printable, line breaks included (a quoted CSV field).
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z 张,\"'\n.-]{1,20}",
        "[a-z]{1,5}\r\n[a-z]{1,5}",
    ]
}

#[derive(Clone, Debug)]
struct GenRow {
    category_id: String,
    person_id: String,
    person_name: String,
    image_url: String,
}

fn gen_row() -> impl Strategy<Value = GenRow> {
    (id(), id(), name(), url()).prop_map(|(c, p, n, u)| GenRow {
        category_id: format!("c-{c}"),
        person_id: p,
        person_name: n,
        image_url: u,
    })
}

/// The column orders the writer uses: the canonical one, a shuffled one, and one without names.
const LAYOUTS: [&[&str]; 3] = [
    &["category_id", "person_id", "person_name", "image_url"],
    &["image_url", "PersonName", "PersonId", "CategoryId"],
    &["category_id", "person_id", "image_url"],
];

fn write_csv(rows: &[GenRow], layout: &[&str], crlf: bool) -> Vec<u8> {
    let mut builder = csv::WriterBuilder::new();
    if crlf {
        builder.terminator(csv::Terminator::CRLF);
    }
    let mut writer = builder.from_writer(Vec::new());
    writer.write_record(layout).unwrap();
    for row in rows {
        let fields: Vec<&str> = layout
            .iter()
            .map(
                |column| match column.to_ascii_lowercase().replace('_', "").as_str() {
                    "categoryid" => row.category_id.as_str(),
                    "personid" => row.person_id.as_str(),
                    "personname" => row.person_name.as_str(),
                    _ => row.image_url.as_str(),
                },
            )
            .collect();
        writer.write_record(&fields).unwrap();
    }
    writer.into_inner().unwrap()
}

/// What the reader should give for `rows`: trimmed values, and the line each record starts on
/// (the header is line 1; a record spans one line more per line break inside its fields).
fn expected_rows(rows: &[GenRow], with_name: bool) -> Vec<Row> {
    let mut line = 2u64;
    rows.iter()
        .map(|r| {
            let name = r.person_name.trim();
            let row = Row {
                line,
                category_id: r.category_id.trim().to_string(),
                person_id: r.person_id.trim().to_string(),
                person_name: (with_name && !name.is_empty()).then(|| name.to_string()),
                image: face_enroll::image::Image::at(r.image_url.trim().to_string()),
            };
            let breaks = if with_name {
                r.person_name.matches('\n').count()
            } else {
                0
            };
            line += 1 + breaks as u64;
            row
        })
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_never_panic_the_manifest_reader(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_all(bytes);
    }

    #[test]
    fn csv_like_noise_never_panics_and_lines_never_go_backwards(bytes in csv_ish_bytes()) {
        let has_cr = bytes.contains(&b'\r');
        if let Some(entries) = read_all(bytes) {
            let mut last = 1u64;
            for entry in entries.into_iter().flatten() {
                let line = match entry {
                    Entry::Valid(row) => row.line,
                    Entry::Invalid(invalid) => invalid.line,
                };
                // A lone CR ends a record without starting a line (see the test below), so
                // strictly increasing lines are only promised for input without CR.
                prop_assert!(line > last || (has_cr && line == last), "line {line} after {last}");
                last = line;
            }
        }
    }

    #[test]
    fn valid_rows_written_by_the_csv_crate_read_back_equal_with_their_line_numbers(
        rows in proptest::collection::vec(gen_row(), 0..12),
        layout in 0..LAYOUTS.len(),
        crlf in any::<bool>(),
    ) {
        let columns = LAYOUTS[layout];
        let bytes = write_csv(&rows, columns, crlf);
        let entries = read_all(bytes.clone()).expect("the header is accepted");
        let got: Vec<Row> = entries
            .into_iter()
            .map(|entry| match entry {
                Ok(Entry::Valid(row)) => Ok(row),
                other => Err(format!("{other:?}")),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("{e} in {:?}", String::from_utf8_lossy(&bytes))))?;
        let with_name = columns.len() == 4;
        prop_assert_eq!(got, expected_rows(&rows, with_name), "{:?}", String::from_utf8_lossy(&bytes));
    }
}

/// Found by `csv_like_noise_never_panics_and_lines_never_go_backwards`: a file with classic Mac
/// line endings (a lone CR, as Excel for Mac's "CSV (Macintosh)" writes) is read as one record
/// per CR, but every record is reported on the same line, because only LF counts as a line
/// break. Rejects and ledger lines then all point at line 2.
#[test]
fn records_ended_by_a_lone_cr_are_numbered_one_line_apart() {
    let text = "category_id,person_id,image_url\rlib,a,https://h/a.jpg\rlib,b,https://h/b.jpg\rlib,c,nope\r";
    let entries = read_all(text.as_bytes().to_vec()).expect("header accepted");
    let lines: Vec<u64> = entries
        .into_iter()
        .map(|entry| match entry.unwrap() {
            Entry::Valid(row) => row.line,
            Entry::Invalid(invalid) => invalid.line,
        })
        .collect();
    assert_eq!(lines, [2, 3, 4]);
}

/// Found by `csv_like_noise_never_panics_and_lines_never_go_backwards`: after a stray BOM the
/// parser takes `"""` literally, so counting the quotes misjudged whether the last record's
/// line break was its own, and the record that follows was numbered on the line before it.
#[test]
fn a_record_after_quotes_taken_literally_is_numbered_on_its_own_line() {
    let bytes =
        b"category_id,person_id,image_url\n\xef\xbb\xbf\"\"\"\n\"category_id,person_id,image_url\n";
    let lines: Vec<u64> = read_all(bytes.to_vec())
        .expect("header accepted")
        .into_iter()
        .flatten()
        .map(|entry| match entry {
            Entry::Valid(row) => row.line,
            Entry::Invalid(invalid) => invalid.line,
        })
        .collect();
    assert_eq!(lines, [2, 3]);
}

// ---------------------------------------------------------------------------------------------
// Percent-encoding
// ---------------------------------------------------------------------------------------------

/// RFC 3986 written out the slow, obvious way: unreserved bytes stay, the rest become `%XY`.
fn reference_encode(input: &str) -> String {
    let mut out = String::new();
    for &b in input.as_bytes() {
        let unreserved = b.is_ascii_uppercase()
            || b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'-'
            || b == b'_'
            || b == b'.'
            || b == b'~';
        if unreserved {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The recipe the older official SDKs use: form-encode, then patch `+`, `*` and `%7E`.
fn sdk_style_encode(input: &str) -> String {
    form_urlencoded::byte_serialize(input.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
        .replace('*', "%2A")
        .replace("%7E", "~")
}

fn decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn percent_encoding_matches_an_independent_reference(input in any::<String>()) {
        let encoded = percent_encode(&input);
        prop_assert_eq!(&encoded, &reference_encode(&input));
        prop_assert_eq!(&encoded, &sdk_style_encode(&input));
    }

    #[test]
    fn percent_encoding_round_trips_and_uses_only_the_safe_alphabet(input in any::<String>()) {
        let encoded = percent_encode(&input);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)));
        // Hex digits after `%` are uppercase, as the service computes them.
        for (i, _) in encoded.match_indices('%') {
            let hex = &encoded[i + 1..i + 3];
            prop_assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{hex}");
        }
        prop_assert_eq!(decode(&encoded), Some(input));
    }
}

// ---------------------------------------------------------------------------------------------
// Ledger replay
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum GenLine {
    Image {
        category_id: String,
        person_id: String,
        image_url: String,
        status: Status,
        face_id: Option<String>,
    },
    Run {
        start: bool,
    },
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Pending),
        Just(Status::Registered),
        Just(Status::Failed),
        Just(Status::Invalid),
        Just(Status::Skipped),
        Just(Status::Removed),
    ]
}

fn gen_line() -> impl Strategy<Value = GenLine> {
    // A small key space, so images get several records and "the last one wins" is exercised.
    let image = (
        prop_oneof![
            Just("lib".to_string()),
            Just("LIB".to_string()),
            "[张\"\\\\a-c ]{1,4}"
        ],
        "[a-cA-C\"\\\\é]{1,3}",
        "https://img\\.example\\.com/[0-3\"\\\\\n]{1,2}",
        status(),
        proptest::option::of("[0-9a-f]{8}"),
    )
        .prop_map(
            |(category_id, person_id, image_url, status, face_id)| GenLine::Image {
                category_id,
                person_id,
                image_url,
                status,
                face_id,
            },
        );
    prop_oneof![8 => image, 1 => any::<bool>().prop_map(|start| GenLine::Run { start })]
}

/// The encoded lines, one `Vec<u8>` per line, each ending in `\n`.
fn encode_lines(lines: &[GenLine]) -> Vec<Vec<u8>> {
    lines
        .iter()
        .map(|line| {
            let mut out = Vec::new();
            match line {
                GenLine::Image {
                    category_id,
                    person_id,
                    image_url,
                    status,
                    face_id,
                } => {
                    let mut record =
                        ImageRecord::new("r1", *status, category_id, person_id, image_url);
                    record.face_id = face_id.clone();
                    record.retryable = (*status == Status::Failed).then_some(true);
                    ledger::encode(&ledger::Record::Image(record), &mut out);
                }
                GenLine::Run { start } => {
                    let record = RunRecord {
                        ts: "2026-01-01T00:00:00.000Z".into(),
                        run: "r1".into(),
                        ..RunRecord::default()
                    };
                    let record = if *start {
                        ledger::Record::RunStart(record)
                    } else {
                        ledger::Record::RunEnd(record)
                    };
                    ledger::encode(&record, &mut out);
                }
            }
            out
        })
        .collect()
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn any_prefix_of_a_valid_ledger_replays_and_keeps_every_complete_line(
        lines in proptest::collection::vec(gen_line(), 0..24),
        cut_fraction in 0.0f64..=1.0,
    ) {
        let encoded = encode_lines(&lines);
        let whole: Vec<u8> = encoded.concat();
        let cut = ((whole.len() as f64) * cut_fraction).floor() as usize;
        let prefix = &whole[..cut.min(whole.len())];

        let replay = ledger::replay_from(Path::new("prop.ledger.jsonl"), Cursor::new(prefix.to_vec()))
            .map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))?;

        // The complete lines in the prefix, and the bytes after them.
        let mut complete = 0usize;
        let mut consumed = 0usize;
        for line in &encoded {
            if consumed + line.len() > prefix.len() {
                break;
            }
            consumed += line.len();
            complete += 1;
        }
        prop_assert_eq!(replay.lines, complete as u64);
        prop_assert_eq!(replay.torn_tail, (prefix.len() - consumed) as u64);

        let mut expected: HashMap<u128, Status> = HashMap::new();
        for line in &lines[..complete] {
            if let GenLine::Image { category_id, person_id, image_url, status, .. } = line {
                expected.insert(ImageId::new(image_url, None).key(category_id, person_id), *status);
            }
        }
        let got: HashMap<u128, Status> =
            replay.images.iter().map(|(k, s)| (*k, s.state.status)).collect();
        prop_assert_eq!(got, expected);
    }
}
