use super::*;

#[test]
fn numbering_past_u32_max_stops_and_is_reported_instead_of_wrapping() {
    let mut ordinal = Ordinal {
        next: u32::MAX - 1,
        overflowed: false,
    };
    assert_eq!(ordinal.next(), Some(u32::MAX - 1));
    assert!(ordinal.check(std::path::Path::new("l")).is_ok());
    assert_eq!(ordinal.next(), None, "no wrap to 0");
    assert_eq!(ordinal.next(), None);
    let error = ordinal.check(std::path::Path::new("l")).unwrap_err();
    assert!(error.to_string().contains("more than"), "{error}");
}

#[test]
fn formula_starters_are_neutralised_and_other_cells_are_untouched() {
    for bad in ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx"] {
        assert_eq!(neutralise(bad), format!("'{bad}"));
    }
    for good in ["alice", "", "1-2", "https://x/=y"] {
        assert_eq!(neutralise(good), good);
    }
}

#[test]
fn a_packed_row_reads_back_exactly_absent_empty_and_long_fields_alike() {
    let long = "é".repeat(300);
    let fields = [
        Some("lib"),
        Some(""),
        None,
        Some(long.as_str()),
        Some("f1"),
        Some("t"),
        None,
        Some("e"),
        None,
    ];
    let mut packed = Vec::new();
    pack(&mut packed, fields);
    pack(&mut packed, [None; FIELDS]);
    let row = unpack(&packed);
    assert_eq!(
        (
            row.category_id,
            row.person_id,
            row.person_name,
            row.image_url
        ),
        ("lib", "", None, long.as_str())
    );
    assert_eq!(
        (row.lib_id, row.entity_id, row.sample_id),
        (None, Some("e"), None)
    );
    let first_len = packed.len() - FIELDS;
    assert_eq!(unpack(&packed[first_len..]), RowRef::default());
}

#[test]
fn a_time_reads_back_as_written_whether_packed_as_digits_or_as_text() {
    for text in [
        "2026-11-22T00:00:00.000Z",
        "1999-12-31T23:59:59.999Z",
        "0000-00-00T00:00:00.000Z",
        "9999-99-99T99:99:99.999Z",
        "2026-11-22T00:00:00Z",
        "2026-11-22T00:00:00.000+",
        "2026-11-22 00:00:00.000Z",
        "2026-1a-22T00:00:00.000Z",
        "２026-11-22T00:00:00.000Z",
        "",
    ] {
        let mut packed = vec![7];
        Stamp::pack(&mut packed, text);
        packed.push(42);
        let (stamp, rest) = Stamp::unpack(&packed[1..]);
        assert_eq!((stamp.as_str(), rest), (text, &[42u8][..]), "{text}");
        let digits = Stamp::digits(text).is_some();
        assert_eq!(
            packed.len(),
            if digits { 11 } else { text.len() + 4 },
            "{text}"
        );
    }
}

#[test]
fn rows_sort_by_folded_library_and_person_then_url_and_ties_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("l.jsonl");
    let mut bytes = Vec::new();
    let mut record = |person: &str, url: &str, key: Option<&str>, status, face: &str| {
        let mut r = crate::ledger::ImageRecord::new("r", status, "Lib", person, url);
        if let Some(key) = key {
            r = r.with_identity(&crate::image::ImageId::new(key, None));
        }
        r.face_id = Some(face.into());
        crate::ledger::encode(&crate::ledger::Record::Image(r), &mut bytes);
    };
    record("bob", "https://x/2", None, Status::Registered, "b2");
    record(
        "Alice",
        "https://x/1",
        Some("k2"),
        Status::Registered,
        "a-k2",
    );
    record(
        "alice",
        "https://x/1",
        Some("k1"),
        Status::Registered,
        "a-k1",
    );
    record("carol", "https://x/3", None, Status::Registered, "c3");
    record("carol", "https://x/3", None, Status::Removed, "c3");
    record(
        "Alice",
        "https://x/1",
        Some("k2"),
        Status::Registered,
        "a-k2-again",
    );
    std::fs::write(&ledger, &bytes).unwrap();
    let config = ExportConfig {
        ledger,
        format: Format::Csv,
        output: None,
    };
    let rows = collect(&config).unwrap();
    let faces: Vec<_> = rows.iter().map(|r| r.face_id.unwrap_or_default()).collect();
    // Alice's two images share a URL: the one registered first comes first, with the
    // id of its last record; carol's last record is not `registered`.
    assert_eq!(faces, ["a-k2-again", "a-k1", "b2"]);
    assert!(!rows.ice);
}

#[test]
fn ice_columns_appear_only_when_some_row_has_them() {
    let mts = Row {
        category_id: "c".into(),
        face_id: Some("f".into()),
        ..Row::default()
    };
    let csv = String::from_utf8(to_csv(std::slice::from_ref(&mts))).unwrap();
    assert!(!csv.contains("sample_id"));
    let ice = Row {
        sample_id: Some("s".into()),
        ..mts.clone()
    };
    let csv = String::from_utf8(to_csv(&[mts, ice])).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("lib_id,entity_id,sample_id")
    );
}
