//! Reader tests: every bad-manifest kind, fatal or per row, with its line and column.

use std::io::{self, Cursor, Read};
use std::path::Path;

use super::*;

const HEADER: &str = "category_id,person_id,image_url,person_name\n";

fn read(text: impl AsRef<[u8]>) -> Result<Vec<Entry>, ManifestError> {
    let bytes = text.as_ref().to_vec();
    Reader::from_reader(Path::new("faces.csv"), Cursor::new(bytes))?.collect()
}

fn entries(text: impl AsRef<[u8]>) -> Vec<Entry> {
    read(text).expect("manifest should be readable")
}

fn fatal(text: impl AsRef<[u8]>) -> ManifestError {
    read(text).expect_err("manifest should be rejected")
}

/// The one entry of a manifest with one data row, which must be invalid.
fn only_invalid(body: &str) -> InvalidRow {
    match entries(format!("{HEADER}{body}")).as_slice() {
        [Entry::Invalid(invalid)] => invalid.clone(),
        other => panic!("expected one invalid row, got {other:?}"),
    }
}

fn valid(entry: &Entry) -> &Row {
    match entry {
        Entry::Valid(row) => row,
        Entry::Invalid(invalid) => panic!("expected a valid row, got {invalid:?}"),
    }
}

fn assert_names_file_and_line(error: &ManifestError, line: u64) {
    let text = error.to_string();
    assert!(text.contains("faces.csv"), "{text}");
    assert!(text.contains(&format!("line {line}")), "{text}");
    assert_eq!(error.line(), Some(line), "{text}");
    assert_eq!(error.path(), Path::new("faces.csv"));
}

#[test]
fn reports_a_missing_file_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.csv");
    let error = Reader::open(&path, &ReadOptions::default()).unwrap_err();
    let ManifestError::Open {
        error: io_error, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(io_error.kind(), io::ErrorKind::NotFound);
    assert_eq!(error.path(), path);
    assert_eq!(error.line(), None);
    let text = error.to_string();
    assert!(
        text.contains("absent.csv") && text.contains("check the path"),
        "{text}"
    );
}

#[test]
fn a_directory_is_read_as_a_folder_of_photos_and_one_without_any_is_refused() {
    // A folder is a manifest now (its photos by the layout); one with none is still an error
    // that names the folder and what to do, not an empty manifest.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "no photo").unwrap();
    let error = Reader::open(dir.path(), &ReadOptions::default()).unwrap_err();
    assert!(
        matches!(error, ManifestError::EmptyFolder { skipped: 1, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("--layout"), "{error}");
}

#[test]
fn opens_a_file_on_disk_and_reads_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faces.csv");
    std::fs::write(
        &path,
        format!("{HEADER}staff,alice,https://h/a.jpg,Alice\n"),
    )
    .unwrap();
    let rows: Vec<Entry> = Reader::open(&path, &ReadOptions::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(valid(&rows[0]).person_id, "alice");
}

#[test]
fn reports_an_empty_file_on_line_1() {
    let error = fatal("");
    assert!(matches!(error, ManifestError::Empty { .. }), "{error:?}");
    assert_names_file_and_line(&error, 1);
}

#[test]
fn reports_a_file_of_blank_lines_as_having_no_header() {
    let error = fatal("\n  \r\n\n");
    assert!(
        matches!(error, ManifestError::NoHeader { line: 1, .. }),
        "{error:?}"
    );
    assert_names_file_and_line(&error, 1);
    assert!(
        error.to_string().contains("category_id,person_id"),
        "{error}"
    );
}

#[test]
fn reads_a_header_only_file_as_zero_rows() {
    assert_eq!(entries("category_id,person_id,image_url"), vec![]);
    assert_eq!(entries(HEADER), vec![]);
}

#[test]
fn reads_a_manifest_with_a_bom_and_crlf_line_ends() {
    let text = "\u{feff}category_id,person_id,image_url\r\nstaff,alice,https://h/a.jpg\r\n\
                staff,bob,https://h/b.jpg\r\n";
    let rows = entries(text);
    assert_eq!(rows.len(), 2);
    let bob = valid(&rows[1]);
    assert_eq!((bob.line, bob.category_id.as_str()), (3, "staff"));
    assert_eq!(bob.image.source, "https://h/b.jpg");
}

#[test]
fn matches_header_spellings_ignoring_case_underscores_dashes_and_spaces() {
    let text = "Notes, Person_ID ,CategoryId,IMAGE-URL,person name\n\
                x,alice,staff,https://h/a.jpg,Alice\n";
    let reader = Reader::from_reader(Path::new("faces.csv"), Cursor::new(text)).unwrap();
    let columns = reader.columns().clone();
    assert_eq!(
        (
            columns.category_id,
            columns.person_id,
            columns.image_url,
            columns.person_name
        ),
        (2, 1, 3, Some(4))
    );
    assert_eq!(columns.names[1], "Person_ID");
    let rows: Vec<Entry> = reader.collect::<Result<_, _>>().unwrap();
    let row = valid(&rows[0]);
    assert_eq!(
        (row.category_id.as_str(), row.person_id.as_str()),
        ("staff", "alice")
    );
    assert_eq!(row.person_name.as_deref(), Some("Alice"));
    assert!(entries("category-id,PERSONID,image_url\n").is_empty());
}

#[test]
fn reports_missing_required_columns_with_the_columns_found() {
    let error = fatal("\ncategory,person_id,url\nstaff,alice,https://h/a.jpg\n");
    let ManifestError::MissingColumn {
        line,
        missing,
        found,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(
        (*line, missing.as_slice()),
        (2, ["category_id", "image_url"].as_slice())
    );
    assert_eq!(found, &["category", "person_id", "url"]);
    assert_names_file_and_line(&error, 2);
    let text = error.to_string();
    assert!(text.contains("`category`, `person_id`, `url`"), "{text}");
    assert!(
        text.contains("CategoryId") && text.contains("category-id"),
        "{text}"
    );
}

#[test]
fn reports_a_required_column_given_twice() {
    let error = fatal("category_id,person_id,image_url,CategoryID\n");
    let ManifestError::DuplicateColumn {
        column,
        first,
        second,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((*column, *first, *second), ("category_id", 1, 4));
    assert_names_file_and_line(&error, 1);
    assert!(error.to_string().contains("columns 1 and 4"), "{error}");
}

#[test]
fn reports_a_nul_byte_in_the_header_as_not_a_csv_file() {
    let error = fatal(
        b"\x89PNG\r\n"
            .iter()
            .chain(b"\x1a\n\0\0\0\rIHDR")
            .copied()
            .collect::<Vec<_>>(),
    );
    assert!(
        matches!(error, ManifestError::NotCsv { column: 1, .. }),
        "{error:?}"
    );
    assert_names_file_and_line(&error, 1);
    assert!(error.to_string().contains("not a CSV file"), "{error}");
    let utf16: Vec<u8> = "category_id,person_id\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert!(matches!(
        fatal(utf16),
        ManifestError::NotCsv { line: 1, .. }
    ));
}

#[test]
fn reports_a_header_that_is_not_utf8_with_its_column() {
    let error = fatal(b"category_id,person_id,image_url,Stra\xdfe\n");
    assert!(
        matches!(error, ManifestError::HeaderNotUtf8 { column: 4, .. }),
        "{error:?}"
    );
    assert_names_file_and_line(&error, 1);
    assert!(error.to_string().contains("column 4"), "{error}");
}

#[test]
fn returns_a_non_utf8_cell_as_an_invalid_row_and_reads_on() {
    let mut text = HEADER.as_bytes().to_vec();
    text.extend_from_slice(b"staff,M\xfcller,https://h/a.jpg\nstaff,bob,https://h/b.jpg\n");
    let rows = entries(text);
    let Entry::Invalid(bad) = &rows[0] else {
        panic!("{rows:?}")
    };
    assert_eq!((bad.line, bad.column), (2, Some("person_id")));
    assert!(bad.reason.contains("not valid UTF-8"), "{}", bad.reason);
    assert_eq!(bad.person_id, "M\u{fffd}ller");
    assert_eq!(valid(&rows[1]).line, 3);
}

#[test]
fn keeps_line_numbers_right_after_a_quoted_field_with_a_comma_and_line_breaks() {
    let text = format!(
        "{HEADER}staff,alice,https://h/a.jpg,\"Smith, \"\"Al\"\"\nline two\r\nline three\"\n\
         staff,bob,https://h/b.jpg,Bob\n"
    );
    let rows = entries(text);
    let alice = valid(&rows[0]);
    assert_eq!(alice.line, 2);
    assert_eq!(
        alice.person_name.as_deref(),
        Some("Smith, \"Al\"\nline two\r\nline three")
    );
    assert_eq!(valid(&rows[1]).line, 5);
}

#[test]
fn returns_a_row_with_too_few_fields_as_invalid() {
    let bad = only_invalid("staff,alice\n");
    assert_eq!((bad.line, bad.column), (2, Some("image_url")));
    assert_eq!(
        bad.reason,
        "image_url is missing: the row has 2 fields but the header has 4"
    );
    assert_eq!(
        (bad.person_id.as_str(), bad.image_url.as_str()),
        ("alice", "")
    );
}

#[test]
fn reads_a_row_with_too_many_fields_ignoring_the_extra_ones() {
    let rows = entries(format!(
        "{HEADER}staff,alice,https://h/a.jpg,Alice,extra,more\n"
    ));
    assert_eq!(valid(&rows[0]).person_name.as_deref(), Some("Alice"));
}

#[test]
fn rejects_an_id_that_is_empty_after_trimming() {
    let bad = only_invalid("staff,   ,https://h/a.jpg\n");
    assert_eq!((bad.line, bad.column), (2, Some("person_id")));
    assert_eq!(bad.reason, "person_id is empty");
}

#[test]
fn rejects_a_121_character_id_and_accepts_120_cjk_characters() {
    let bad = only_invalid(&format!("{},alice,https://h/a.jpg\n", "c".repeat(121)));
    assert_eq!(bad.column, Some("category_id"));
    assert!(bad.reason.contains("121 characters"), "{}", bad.reason);
    let rows = entries(format!(
        "{HEADER}staff,{},https://h/a.jpg\n",
        "名".repeat(120)
    ));
    assert_eq!(valid(&rows[0]).person_id.chars().count(), 120);
}

#[test]
fn rejects_a_system_library_category_in_any_case() {
    for category in ["celebrity", "Politician", "SENSITIVE"] {
        let bad = only_invalid(&format!("{category},alice,https://h/a.jpg\n"));
        assert_eq!((bad.line, bad.column), (2, Some("category_id")));
        assert!(bad.reason.contains("system library"), "{}", bad.reason);
        assert_eq!(bad.category_id, category);
    }
}

#[test]
fn rejects_bad_urls_naming_the_image_url_column() {
    let cases = [
        ("example.com/a.jpg", "not an absolute URL"),
        ("ftp://example.com/a.jpg", "scheme `ftp`"),
        ("http://", "no host"),
        ("http:///a.jpg", "no host"),
        ("http://exa mple.com/a.jpg", "a space at character 11"),
    ];
    for (url, expected) in cases {
        let bad = only_invalid(&format!("staff,alice,{url}\n"));
        assert_eq!((bad.line, bad.column), (2, Some("image_url")), "{url}");
        assert!(bad.reason.contains(expected), "{url}: {}", bad.reason);
        assert_eq!(bad.image_url, url);
    }
}

#[test]
fn trims_ids_url_and_name() {
    let rows = entries(format!(
        "{HEADER} staff , alice ,\t https://h/a.jpg , Alice Smith \n"
    ));
    assert_eq!(
        valid(&rows[0]),
        &Row {
            line: 2,
            category_id: "staff".into(),
            person_id: "alice".into(),
            person_name: Some("Alice Smith".into()),
            image: crate::image::Image::at("https://h/a.jpg"),
        }
    );
}

#[test]
fn reads_an_empty_or_absent_person_name_as_none() {
    let rows = entries(format!(
        "{HEADER}staff,alice,https://h/a.jpg,  \nstaff,bob,https://h/b.jpg\n"
    ));
    assert_eq!(valid(&rows[0]).person_name, None);
    assert_eq!(valid(&rows[1]).person_name, None);
    let rows = entries("category_id,person_id,image_url\nstaff,alice,https://h/a.jpg\n");
    assert_eq!(valid(&rows[0]).person_name, None);
}

#[test]
fn ignores_unknown_columns() {
    let rows =
        entries("source,category_id,person_id,image_url,age\nhr,staff,alice,https://h/a.jpg,40\n");
    let row = valid(&rows[0]);
    assert_eq!(
        (row.category_id.as_str(), row.image.source.as_str()),
        ("staff", "https://h/a.jpg")
    );
}

#[test]
fn skips_blank_lines_and_keeps_counting_them() {
    let text = format!("\n{HEADER}\n   \n,,,\nstaff,alice,https://h/a.jpg\n\n");
    let rows = entries(text);
    assert_eq!(rows.len(), 1);
    assert_eq!(valid(&rows[0]).line, 6);
}

#[test]
fn reports_an_unclosed_quote_at_the_line_it_opens() {
    let text = format!("{HEADER}staff,alice,https://h/a.jpg,\"Alice\nstaff,bob,https://h/b.jpg\n");
    let mut reader = Reader::from_reader(Path::new("faces.csv"), Cursor::new(text)).unwrap();
    assert!(matches!(reader.next(), Some(Ok(Entry::Valid(_)))));
    let error = reader.next().unwrap().unwrap_err();
    assert!(
        matches!(error, ManifestError::UnclosedQuote { line: 2, .. }),
        "{error:?}"
    );
    assert_names_file_and_line(&error, 2);
    assert!(reader.next().is_none());
}

#[test]
fn accepts_a_closed_quoted_line_break_in_the_last_row() {
    let rows = entries(format!("{HEADER}staff,alice,https://h/a.jpg,\"Al\nice\""));
    assert_eq!(valid(&rows[0]).person_name.as_deref(), Some("Al\nice"));
}

/// Yields its bytes, then fails, as a disk or network share might.
struct FailingAfter(Cursor<Vec<u8>>);

impl Read for FailingAfter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf)? {
            0 => Err(io::Error::other("device went away")),
            n => Ok(n),
        }
    }
}

#[test]
fn reports_a_read_failure_and_then_ends() {
    let bytes = format!("{HEADER}staff,alice,https://h/a.jpg\nstaff,bo").into_bytes();
    let mut reader =
        Reader::from_reader(Path::new("faces.csv"), FailingAfter(Cursor::new(bytes))).unwrap();
    assert!(matches!(reader.next(), Some(Ok(Entry::Valid(_)))));
    let error = reader.next().unwrap().unwrap_err();
    assert!(matches!(error, ManifestError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("device went away"), "{error}");
    assert_names_file_and_line(&error, 3);
    assert!(reader.next().is_none());
}

/// Hands out its bytes one at a time, so every record ends on a chunk boundary.
struct Trickle(Cursor<Vec<u8>>);

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(1);
        self.0.read(&mut buf[..len])
    }
}

#[test]
fn counts_lines_right_across_blank_lines_and_line_end_styles() {
    let text = "\r\n\ncategory_id,person_id,image_url\r\n\r\n\r\nstaff,a,http://h/a\n\n\
                staff,b,\"http://h/\r\nb\"\r\nstaff,c,http://h/c\r\n\r\nstaff,d,\"http://h/\nd\"";
    let lines = |entries: Vec<Entry>| -> Vec<u64> {
        entries
            .iter()
            .map(|entry| match entry {
                Entry::Valid(row) => row.line,
                Entry::Invalid(invalid) => invalid.line,
            })
            .collect()
    };
    assert_eq!(lines(entries(text)), [6, 8, 10, 12]);
    let trickled = Trickle(Cursor::new(text.as_bytes().to_vec()));
    let reader = Reader::from_reader(Path::new("faces.csv"), trickled).unwrap();
    assert_eq!(
        lines(reader.collect::<Result<_, _>>().unwrap()),
        [6, 8, 10, 12]
    );
}

#[test]
fn reading_ahead_gives_the_same_entries_and_the_same_error_in_the_same_order() {
    let mut text = String::from("category_id,person_id,image_url\n");
    for i in 0..(3 * super::READ_AHEAD_BATCH + 7) {
        let url = if i % 500 == 0 {
            "relative.jpg"
        } else {
            "https://x.example.com/a.jpg"
        };
        text.push_str(&format!("lib,p{i},{url}\n"));
    }
    text.push_str("lib,p,\"https://x.example.com/unclosed\n");
    let direct: Vec<_> =
        Reader::from_reader(Path::new("m.csv"), std::io::Cursor::new(text.clone()))
            .unwrap()
            .map(|e| e.map_err(|e| e.to_string()))
            .collect();
    let ahead: Vec<_> = Reader::from_reader(Path::new("m.csv"), std::io::Cursor::new(text))
        .unwrap()
        .read_ahead()
        .map(|e| e.map_err(|e| e.to_string()))
        .collect();
    assert!(direct.len() > 3 * super::READ_AHEAD_BATCH + 7);
    assert!(direct.last().unwrap().is_err());
    assert_eq!(direct, ahead);
}

#[test]
fn an_image_sha256_column_is_the_images_identity_and_must_be_a_sha256() {
    let hash = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    let text = format!(
        "category_id,person_id,image_url,image_sha256\n\
         lib,p1,https://img.example/a.jpg,{hash}\n\
         lib,p2,https://img.example/b.jpg,\n\
         lib,p3,https://img.example/c.jpg,abc123\n"
    );
    let entries = entries(text);
    let row = valid(&entries[0]);
    let expected = format!("sha256:{}", hash.to_ascii_lowercase());
    assert_eq!(row.image.key.as_deref(), Some(expected.as_str()));
    assert_eq!(row.image_id().as_str(), expected);
    assert_eq!(
        declared_sha256(row.image.key.as_deref()),
        Some(&expected[7..])
    );
    // The same bytes at another address are the same image.
    let moved = Row {
        image: crate::image::Image::new("https://elsewhere.example/x.jpg", row.image.key.clone()),
        ..row.clone()
    };
    assert_eq!(moved.image_id(), row.image_id());
    // An empty cell: the URL is the identity, as without the column.
    assert_eq!(valid(&entries[1]).image.key, None);
    let Entry::Invalid(bad) = &entries[2] else {
        panic!("{:?}", entries[2])
    };
    assert_eq!(bad.column, Some("image_sha256"));
    assert!(bad.reason.contains("is not a SHA-256"), "{}", bad.reason);
    assert_eq!(declared_sha256(Some("sha256:abc")), None);
    assert_eq!(declared_sha256(Some("my-key")), None);
}

#[test]
fn image_sha256_with_image_key_or_a_second_photo_column_is_a_row_error() {
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let both = entries(format!(
        "category_id,person_id,image_url,image_key,image_sha256\nlib,p1,https://i.example/a.jpg,k1,{hash}\n"
    ));
    let Entry::Invalid(bad) = &both[0] else {
        panic!("{both:?}")
    };
    assert!(bad.reason.contains("give one of them"), "{}", bad.reason);
    let two = entries(format!(
        "category_id,person_id,image_url,image_url2,image_sha256\nlib,p1,https://i.example/a.jpg,https://i.example/b.jpg,{hash}\n"
    ));
    assert_eq!(two.len(), 2, "{two:?}");
    assert_eq!(
        valid(&two[0]).image.key.as_deref(),
        Some(&*format!("sha256:{hash}"))
    );
    let Entry::Invalid(second) = &two[1] else {
        panic!("{two:?}")
    };
    assert!(
        second.reason.contains("names the photo in image_url only"),
        "{}",
        second.reason
    );
}

/// A folder `staff/alice/a.jpg` (a JPEG by its first bytes).
fn folder_of_one_photo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let person = dir.path().join("staff").join("alice");
    std::fs::create_dir_all(&person).unwrap();
    std::fs::write(person.join("a.jpg"), [0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).unwrap();
    dir
}

fn read_all(path: &Path, options: &ReadOptions) -> Vec<Entry> {
    Reader::open(path, options)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn two_readings_with_different_layouts_in_one_process_each_read_by_their_own() {
    let dir = folder_of_one_photo();
    let by_default = read_all(dir.path(), &ReadOptions::default());
    let mut swapped = ReadOptions::default();
    swapped.layout = "{person_id}/{category_id}/*".parse().unwrap();
    let by_swapped = read_all(dir.path(), &swapped);
    // Not uploaded, so invalid rows; their ids say how the folder was read.
    let ids = |entries: &[Entry]| match &entries[0] {
        Entry::Invalid(row) => (row.category_id.clone(), row.person_id.clone()),
        Entry::Valid(row) => (row.category_id.clone(), row.person_id.clone()),
    };
    assert_eq!(ids(&by_default), ("staff".into(), "alice".into()));
    assert_eq!(ids(&by_swapped), ("alice".into(), "staff".into()));
}

#[test]
fn a_folder_is_walked_once_per_command_options_and_their_clones() {
    let dir = folder_of_one_photo();
    let options = ReadOptions::default();
    assert_eq!(read_all(dir.path(), &options).len(), 1);
    let bob = dir.path().join("staff").join("bob");
    std::fs::create_dir_all(&bob).unwrap();
    std::fs::write(bob.join("b.jpg"), [0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).unwrap();
    // The same command reads the same photos however often it reads; another one walks anew.
    assert_eq!(read_all(dir.path(), &options.clone()).len(), 1);
    assert_eq!(read_all(dir.path(), &ReadOptions::default()).len(), 2);
}

#[test]
fn uploads_one_command_learned_are_not_seen_by_another_reading() {
    let dir = folder_of_one_photo();
    let photo = std::path::absolute(dir.path().join("staff/alice/a.jpg")).unwrap();
    let uploaded = ReadOptions::default();
    let mut files = LocalFiles::default();
    files
        .resolved
        .insert(photo, Ok("oss://b/p/a.jpg".to_string()));
    uploaded.set_uploaded(files);
    let row = read_all(dir.path(), &uploaded);
    assert_eq!(valid(&row[0]).image.source, "oss://b/p/a.jpg");
    let Entry::Invalid(other) = &read_all(dir.path(), &ReadOptions::default())[0] else {
        panic!("a local file without an upload is an invalid row");
    };
    assert!(other.reason.contains("is a local file"), "{}", other.reason);
}
