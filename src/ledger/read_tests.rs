use super::*;
use std::borrow::Cow;

fn scan_bytes(bytes: &[u8]) -> Result<(Scanned, Vec<String>), LedgerError> {
    let mut seen = Vec::new();
    let scanned = scan_from(Path::new("t.jsonl"), bytes, |entry| match entry {
        Entry::Image(i) => seen.push(format!("{}:{}", i.status.as_str(), i.image_url)),
        Entry::Run(r) => seen.push(format!("{:?}", r.kind)),
        Entry::Object(o) | Entry::Person(o) | Entry::Upload(o) | Entry::Checked(o) => {
            seen.push(format!("{:?}", o.kind))
        }
    })?;
    Ok((scanned, seen))
}

#[test]
fn every_complete_line_is_seen_in_order_and_a_torn_tail_is_measured() {
    let bytes = b"{\"v\":1,\"kind\":\"run_start\",\"ts\":\"t\",\"run\":\"r\"}\n\
{\"v\":1,\"kind\":\"image\",\"ts\":\"t\",\"run\":\"r\",\"status\":\"registered\",\"category_id\":\"c\",\"person_id\":\"p\",\"image_url\":\"u\\u0041\",\"face_id\":\"f\"}\n\
{\"v\":1,\"kind\":\"ima";
    let (scanned, seen) = scan_bytes(bytes).unwrap();
    assert_eq!(seen, ["Some(RunStart)", "registered:uA"]);
    assert_eq!(scanned.lines, 2);
    assert_eq!(scanned.torn_tail, 18);
}

#[test]
fn a_damaged_line_in_the_middle_is_an_error_and_a_newer_version_is_refused() {
    let bad = b"{\"v\":1,\"kind\":\"image\",oops}\n{\"v\":1}\n";
    assert!(matches!(
        scan_bytes(bad),
        Err(LedgerError::Corrupt { line: 1, .. })
    ));
    let newer = b"{\"v\":7,\"kind\":\"image\"}\n";
    assert!(matches!(
        scan_bytes(newer),
        Err(LedgerError::TooNew { version: 7, .. })
    ));
    let unknown_status = b"{\"v\":1,\"kind\":\"image\",\"status\":\"gone\",\"category_id\":\"c\",\"person_id\":\"p\",\"image_url\":\"u\"}\n";
    assert!(scan_bytes(unknown_status).is_err());
}

#[test]
fn a_line_that_is_not_utf8_is_corruption_at_its_column() {
    let bad = b"{\"v\":1,\"kind\":\"image\",\"x\":\"\xff\"}\n{\"v\":1}\n";
    match scan_bytes(bad) {
        Err(LedgerError::Corrupt {
            line: 1,
            column: 28,
            problem,
            ..
        }) => assert!(problem.contains("UTF-8"), "{problem}"),
        other => panic!("expected Corrupt, got {:?}", other.map(|s| s.0)),
    }
}

#[test]
fn the_utf8_error_column_counts_characters_not_bytes() {
    for (text, column) in [
        (&b"\xff"[..], 1),
        (b"ab\xff", 3),
        ("é€x".as_bytes(), 4),
        (b"\xc3\xa9\xe2\x82", 2),
    ] {
        let mut bytes = text.to_vec();
        if std::str::from_utf8(&bytes).is_ok() {
            bytes.push(0xff);
        }
        let error = std::str::from_utf8(&bytes).unwrap_err();
        assert_eq!(utf8_error_column(&bytes, &error), column, "{bytes:?}");
    }
}

#[test]
fn a_copy_without_its_person_or_an_image_without_its_status_is_corruption() {
    let person = b"{\"v\":1,\"kind\":\"copy\",\"category_id\":\"c\"}\n";
    match scan_bytes(person) {
        Err(LedgerError::Corrupt {
            line: 1,
            column: 1,
            problem,
            ..
        }) => assert!(problem.contains("person_id"), "{problem}"),
        other => panic!("expected Corrupt, got {:?}", other.map(|s| s.0)),
    }
    let image = b"{\"v\":1,\"kind\":\"image\",\"category_id\":\"c\",\"person_id\":\"p\",\"image_url\":\"u\"}\n";
    match scan_bytes(image) {
        Err(LedgerError::Corrupt { problem, .. }) => {
            assert!(problem.contains("and status"), "{problem}")
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|s| s.0)),
    }
    let later = b"{\"v\":1,\"kind\":\"from_a_later_version\"}\n{\"v\":1,\"kind\":\"run_end\"}\n";
    assert_eq!(scan_bytes(later).unwrap().1, ["Some(RunEnd)"]);
}

#[test]
fn blocks_are_dealt_in_turn_and_taken_back_in_the_same_turn_until_an_error() {
    let (inputs, dealt): (Vec<_>, Vec<_>) = (0..2)
        .map(|_| std::sync::mpsc::sync_channel::<Chunk>(8))
        .unzip();
    let path = Path::new("t.jsonl");
    let scanned = read_blocks(path, &b"a\nb\nc\ntorn"[..], 1, inputs).unwrap();
    assert_eq!((scanned.lines, scanned.torn_tail), (3, 4));
    let firsts = |n: usize| -> Vec<u64> { dealt[n].try_iter().map(|c| c.first_line).collect() };
    assert_eq!((firsts(0), firsts(1)), (vec![1, 3], vec![2]));

    let (senders, outputs): (Vec<_>, Vec<_>) = (0..2)
        .map(|_| std::sync::mpsc::sync_channel::<Result<u32, LedgerError>>(8))
        .unzip();
    for (n, value) in [
        (0, Ok(1)),
        (1, Ok(2)),
        (0, Ok(3)),
        (1, Err(too_long(path, 4))),
        (0, Ok(5)),
    ] {
        senders[n].send(value).unwrap();
    }
    let mut taken = Vec::new();
    let failed = take_in_order(&outputs, &mut |n| taken.push(n));
    assert_eq!(taken, [1, 2, 3]);
    assert!(matches!(failed, Some(LedgerError::Corrupt { line: 4, .. })));
    drop(senders);
    let mut rest = Vec::new();
    assert!(take_in_order(&outputs, &mut |n| rest.push(n)).is_none());
    assert_eq!(rest, [5]);
}

#[test]
fn a_line_over_the_cap_is_corruption_not_a_torn_tail() {
    let mut bytes = b"{\"v\":1,\"kind\":\"image\",\"x\":\"".to_vec();
    bytes.resize(MAX_LINE_BYTES as usize + 10, b'a');
    match scan_bytes(&bytes) {
        Err(LedgerError::Corrupt {
            line: 1, problem, ..
        }) => {
            assert!(problem.contains("longer than"), "{problem}")
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|s| s.0)),
    }
}

/// A ledger of `n` lines of every kind (and blank and CRLF lines), then a torn tail.
fn mixed_ledger(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let line = match i % 7 {
            0 => format!("{{\"v\":1,\"kind\":\"run_start\",\"ts\":\"t\",\"run\":\"r{i}\"}}\n"),
            1 | 4 => format!(
                "{{\"v\":1,\"kind\":\"image\",\"status\":\"pending\",\"category_id\":\"c\",\"person_id\":\"p{i}\",\"image_url\":\"https://h/{i}\\u00e9.jpg\"}}\n"
            ),
            2 => format!(
                "{{\"v\":1,\"kind\":\"image\",\"status\":\"registered\",\"category_id\":\"c\",\"person_id\":\"p{i}\",\"image_url\":\"https://h/{i}.jpg\",\"face_id\":\"f{i}\"}}\r\n"
            ),
            3 => "\n".to_string(),
            5 => format!(
                "{{\"v\":1,\"kind\":\"settled\",\"category_id\":\"c\",\"person_id\":\"p{i}\"}}\n"
            ),
            _ => format!("{{\"v\":1,\"kind\":\"a_kind_from_later\",\"n\":{i}}}\n"),
        };
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"{\"v\":1,\"kind\":\"ima");
    out
}

fn describe(entry: Entry<'_, '_>) -> String {
    match entry {
        Entry::Image(i) => format!("{}:{}:{}", i.status.as_str(), i.person_id, i.image_url),
        Entry::Run(r) => format!("{:?}:{}", r.kind, r.run()),
        Entry::Object(o) | Entry::Person(o) | Entry::Upload(o) | Entry::Checked(o) => {
            format!("{:?}", o.kind)
        }
    }
}

fn scan_parallel_bytes(
    bytes: &[u8],
    workers: usize,
    block: usize,
) -> Result<(Scanned, Vec<String>), LedgerError> {
    let mut seen = Vec::new();
    let scanned = scan_parallel_from_as::<Wide, Vec<String>>(
        Path::new("t.jsonl"),
        bytes,
        workers,
        block,
        |folded, entry| folded.push(describe(entry)),
        |folded| seen.extend(folded),
    )?;
    Ok((scanned, seen))
}

#[test]
fn blocks_of_any_size_over_any_number_of_workers_scan_as_one_thread_does() {
    let bytes = mixed_ledger(400);
    let mut expected = Vec::new();
    let one = scan_from(Path::new("t.jsonl"), &bytes[..], |e| {
        expected.push(describe(e))
    })
    .unwrap();
    assert_eq!(one.lines, 400);
    assert_eq!(one.torn_tail, 18);
    assert_eq!(
        expected.len(),
        286,
        "blank and later-kind lines are not entries"
    );
    for block in [1, 7, 100, 4096, 1 << 20] {
        for workers in [1, 2, 3] {
            let (scanned, seen) = scan_parallel_bytes(&bytes, workers, block).unwrap();
            assert_eq!(
                (scanned.lines, scanned.torn_tail),
                (400, 18),
                "{block} {workers}"
            );
            assert_eq!(seen, expected, "block {block}, {workers} workers");
        }
        // The one-thread scan in blocks of that size, too.
        let mut chunks = Chunks::new(Path::new("t.jsonl"), &bytes[..], block);
        let mut lines = 0;
        while let Some(chunk) = chunks.next_chunk().unwrap() {
            assert_eq!(chunk.first_line, lines + 1);
            assert_eq!(chunk.bytes.last(), Some(&b'\n'));
            lines += memchr::memchr_iter(b'\n', &chunk.bytes).count() as u64;
        }
        assert_eq!(
            (chunks.scanned().lines, chunks.scanned().torn_tail),
            (400, 18)
        );
    }
}

#[test]
fn the_first_damaged_line_in_ledger_order_is_the_error_whichever_worker_meets_it() {
    let mut lines: Vec<Vec<u8>> = mixed_ledger(300)
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    lines[249] = b"{\"v\":1,\"kind\":\"image\",oops}\n".to_vec();
    lines[149] = b"{\"v\":1, \"kind\":\"image\",\"status\":7}\n".to_vec();
    let bytes = lines.concat();
    let Err(LedgerError::Corrupt { line, column, .. }) = scan_bytes(&bytes) else {
        panic!("the damaged line is not seen");
    };
    assert_eq!((line, column), (150, 33));
    for block in [1, 64, 5000] {
        for workers in [1, 2, 3] {
            match scan_parallel_bytes(&bytes, workers, block) {
                Err(LedgerError::Corrupt {
                    line: 150,
                    column: 33,
                    ..
                }) => {}
                other => panic!(
                    "block {block}, {workers} workers: {:?}",
                    other.map(|s| s.0.lines)
                ),
            }
        }
    }
}

#[test]
fn a_whole_line_over_the_cap_is_corruption_at_its_number_in_any_block() {
    let mut bytes = mixed_ledger(3);
    bytes.truncate(bytes.len() - 18);
    let mut long = b"{\"v\":1,\"kind\":\"image\",\"x\":\"".to_vec();
    long.resize(MAX_LINE_BYTES as usize + 1, b'a');
    long.push(b'\n');
    let long_at = bytes.len();
    bytes.extend_from_slice(&long);
    bytes.extend_from_slice(&mixed_ledger(2));
    for result in [
        scan_bytes(&bytes),
        scan_parallel_bytes(&bytes, 2, 4096),
        scan_parallel_bytes(&bytes, 2, 1 << 21),
    ] {
        match result {
            Err(LedgerError::Corrupt {
                line: 4, problem, ..
            }) => {
                assert!(problem.contains("longer than"), "{problem}")
            }
            other => panic!(
                "expected Corrupt at line 4, got {:?}",
                other.map(|s| s.0.lines)
            ),
        }
    }
    // One byte shorter, the line is only damaged JSON: the cap is on its length.
    let mut at_cap = bytes.clone();
    at_cap.remove(long_at + 40);
    match scan_bytes(&at_cap) {
        Err(LedgerError::Corrupt {
            line: 4, problem, ..
        }) => {
            assert!(!problem.contains("longer than"), "{problem}")
        }
        other => panic!(
            "expected damaged JSON at line 4, got {:?}",
            other.map(|s| s.0.lines)
        ),
    }
}

/// Yields its bytes a few at a time, then fails (a disk error part-way through).
struct FailingAfter(Vec<u8>, usize);

impl Read for FailingAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.1 >= self.0.len() {
            return Err(std::io::Error::other("input/output error"));
        }
        let n = buf.len().min(7).min(self.0.len() - self.1);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 += n;
        Ok(n)
    }
}

#[test]
fn a_damaged_line_read_before_a_disk_error_is_the_error_reported() {
    let bytes =
        b"{\"v\":1,\"kind\":\"run_end\"}\n{\"v\":1,\"kind\":\"image\",oops}\n{\"v\"".to_vec();
    let one = scan_from(Path::new("t.jsonl"), FailingAfter(bytes.clone(), 0), |_| {});
    assert!(
        matches!(
            one,
            Err(LedgerError::Corrupt {
                line: 2,
                column: 23,
                ..
            })
        ),
        "{one:?}"
    );
    let threads = scan_parallel_from_as::<Wide, ()>(
        Path::new("t.jsonl"),
        FailingAfter(bytes.clone(), 0),
        2,
        4096,
        |_, _| {},
        |()| {},
    );
    assert!(
        matches!(
            threads,
            Err(LedgerError::Corrupt {
                line: 2,
                column: 23,
                ..
            })
        ),
        "{threads:?}"
    );
    // Without the damaged line, the disk error itself is reported, never a short success.
    let good = b"{\"v\":1,\"kind\":\"run_end\"}\n".repeat(3);
    let read = scan_from(Path::new("t.jsonl"), FailingAfter(good, 0), |_| {});
    assert!(matches!(read, Err(LedgerError::Read { .. })), "{read:?}");
}

#[test]
fn lines_before_an_over_long_one_are_decoded_first_whatever_the_block_size() {
    let mut bytes = b"{\"v\":1,\"kind\":\"image\",oops}\n".to_vec();
    bytes.resize(bytes.len() + 3 * MAX_LINE_BYTES as usize, b'a');
    bytes.push(b'\n');
    for block in [4096, 1 << 21, 1 << 23] {
        let result = scan_parallel_bytes(&bytes, 2, block);
        assert!(
            matches!(
                result,
                Err(LedgerError::Corrupt {
                    line: 1,
                    column: 23,
                    ..
                })
            ),
            "block {block}: {:?}",
            result.map(|s| s.0.lines)
        );
    }
}

#[test]
fn strings_are_borrowed_from_the_line_unless_they_hold_escapes() {
    let line = br#"{"v":1,"kind":"image","image_url":"https://x/a.jpg","person_id":"a\u0041"}"#;
    let view: View = serde_json::from_slice(line).unwrap();
    assert!(matches!(
        view.image_url,
        Some(Cow::Borrowed("https://x/a.jpg"))
    ));
    assert!(matches!(view.person_id, Some(Cow::Owned(ref s)) if s == "aA"));
    let narrow: ReplayView = serde_json::from_slice(line).unwrap();
    assert!(matches!(narrow.image_url, Some(Cow::Borrowed(_))));
    assert_eq!(narrow.person_id.as_deref(), Some("aA"));
    let null: View = serde_json::from_slice(br#"{"v":1,"face_id":null}"#).unwrap();
    assert!(null.face_id.is_none());
}

#[test]
fn a_ledger_that_is_not_a_regular_file_is_refused() {
    assert!(matches!(
        scan(Path::new("/dev/zero"), false, |_| {}),
        Err(LedgerError::NotAFile { .. })
    ));
}

#[test]
fn created_and_deleted_records_reach_the_reader_as_objects() {
    let bytes = b"{\"v\":1,\"kind\":\"created\",\"ts\":\"t\",\"run\":\"r\",\"target\":\"ice\",\"algorithm\":\"face\",\"object\":\"lib\",\"name\":\"n\",\"lib_id\":\"L\"}\n";
    let (_, seen) = scan_bytes(bytes).unwrap();
    assert_eq!(seen, ["Some(Created)"]);
}
