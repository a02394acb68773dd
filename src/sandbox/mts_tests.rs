//! Unit tests of the MTS custom-face state.

use super::*;

fn params(pairs: &[(&str, &str)]) -> Params {
    Params::from_pairs(pairs)
}

/// A generator nobody else uses, so ids never collide between calls.
fn fresh_ids() -> IdGen {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    IdGen::new(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn register(
    state: &mut MtsState,
    category: &str,
    person: &str,
    url: &str,
) -> Result<String, ApiError> {
    let fields = state.register(
        &params(&[
            ("CategoryId", category),
            ("PersonId", person),
            ("ImageUrl", url),
        ]),
        10,
        &mut fresh_ids(),
    )?;
    Ok(fields["FaceId"].as_str().unwrap().to_string())
}

fn code<T>(result: Result<T, ApiError>) -> &'static str {
    result.map_or_else(|e| e.code, |_| "ok")
}

#[test]
fn ids_differing_only_in_case_are_one_person_shown_with_the_first_spelling() {
    let mut state = MtsState::default();
    register(&mut state, "Staff", "Alice", "http://img/1.jpg").unwrap();
    register(&mut state, "STAFF", "alice", "http://img/2.jpg").unwrap();
    register(&mut state, " staff ", "ALICE ", "http://img/3.jpg").unwrap();
    let snapshot = state.snapshot();
    assert_eq!(snapshot.categories.len(), 1);
    assert_eq!(snapshot.categories[0].category_id, "Staff");
    assert_eq!(snapshot.categories[0].persons.len(), 1);
    assert_eq!(snapshot.categories[0].persons[0].person_id, "Alice");
    assert_eq!(snapshot.categories[0].persons[0].faces.len(), 3);
}

#[test]
fn ids_in_any_script_count_characters_not_bytes() {
    let mut state = MtsState::default();
    let long_chinese = "张".repeat(120);
    assert_eq!(
        code(register(&mut state, &long_chinese, "p", "http://img/1.jpg")),
        "ok"
    );
    let too_long = "张".repeat(121);
    assert_eq!(
        code(register(&mut state, &too_long, "p", "http://img/1.jpg")),
        "InvalidParameter.CategoryId"
    );
    assert_eq!(
        code(register(
            &mut state,
            "c",
            &"x".repeat(121),
            "http://img/1.jpg"
        )),
        "InvalidParameter.PersonId"
    );
    assert_eq!(
        code(register(&mut state, "  ", "p", "http://img/1.jpg")),
        "InvalidParameter.CategoryId"
    );
}

#[test]
fn missing_ids_and_url_are_missing_parameters() {
    let mut state = MtsState::default();
    let result = state.register(
        &params(&[("PersonId", "p"), ("ImageUrl", "http://img/1.jpg")]),
        10,
        &mut IdGen::new(1),
    );
    assert_eq!(code(result), "MissingParameter");
    let result = state.register(
        &params(&[("CategoryId", "c"), ("PersonId", "p")]),
        10,
        &mut IdGen::new(1),
    );
    assert_eq!(code(result), "MissingParameter");
}

#[test]
fn eleventh_face_for_a_person_is_refused() {
    let mut state = MtsState::default();
    for i in 0..10 {
        register(&mut state, "c", "p", &format!("http://img/{i}.jpg")).unwrap();
    }
    let err = register(&mut state, "c", "P", "http://img/10.jpg").unwrap_err();
    assert_eq!(
        (err.status, err.code),
        (400, "InvalidParameter.FaceLimitExceeded")
    );
    assert!(err.message.contains("10"), "{}", err.message);
    assert_eq!(state.snapshot().categories[0].persons[0].faces.len(), 10);
    assert_eq!(
        code(register(&mut state, "c", "other", "http://img/10.jpg")),
        "ok"
    );
}

#[test]
fn images_without_exactly_one_face_are_refused() {
    let mut state = MtsState::default();
    for url in ["http://img/noface.jpg", "https://img/TwoFaces/1.jpg"] {
        let err = register(&mut state, "c", "p", url).unwrap_err();
        assert_eq!(err.code, "InvalidParameter.ImageUrl");
        assert!(err.message.contains("exactly one frontal face required"));
    }
    assert_eq!(
        code(register(&mut state, "c", "p", "file:///a.jpg")),
        "InvalidParameter.ImageUrl"
    );
    assert!(state.snapshot().categories.is_empty());
}

#[test]
fn system_library_ids_are_refused_in_any_case() {
    let mut state = MtsState::default();
    for id in ["celebrity", "Politician", "SENSITIVE"] {
        assert_eq!(
            code(register(&mut state, id, "p", "http://img/1.jpg")),
            "InvalidParameter.CategoryId"
        );
    }
    assert_eq!(
        code(register(&mut state, "celebrities", "p", "http://img/1.jpg")),
        "ok"
    );
}

#[test]
fn list_wrappers_are_omitted_when_empty() {
    let mut state = MtsState::default();
    let empty = state.list(&params(&[])).unwrap();
    assert!(empty.get("Categories").is_none());
    register(&mut state, "c", "p", "http://img/1.jpg?x=1&y=2").unwrap();
    let full = state.list(&params(&[])).unwrap();
    let face = &full["Categories"]["Category"][0]["Persons"]["Person"][0]["Faces"]["Face"][0];
    assert_eq!(
        face["ImageUrl"], "http://img/1.jpg?x=1&y=2",
        "echoed exactly"
    );
    let filtered = state
        .list(&params(&[("CategoryId", "C"), ("PersonId", "nobody")]))
        .unwrap();
    assert!(filtered.get("Categories").is_none());
    let by_person = state.list(&params(&[("PersonId", "P")])).unwrap();
    assert_eq!(
        by_person["Categories"]["Category"][0]["Persons"]["Person"][0]["PersonId"],
        "p"
    );
}

#[test]
fn unregister_removes_one_face_all_faces_or_a_whole_category() {
    let mut state = MtsState::default();
    let first = register(&mut state, "c", "p", "http://img/1.jpg").unwrap();
    register(&mut state, "c", "p", "http://img/2.jpg").unwrap();
    register(&mut state, "c", "q", "http://img/3.jpg").unwrap();
    register(&mut state, "d", "r", "http://img/4.jpg").unwrap();
    let unregister = |state: &mut MtsState, c: &str, p: &str, f: &str| {
        code(state.unregister(&params(&[
            ("CategoryId", c),
            ("PersonId", p),
            ("FaceId", f),
        ])))
    };
    assert_eq!(unregister(&mut state, "C", "P", &first), "ok");
    assert_eq!(unregister(&mut state, "c", "p", &first), FACE_NOT_FOUND);
    assert_eq!(unregister(&mut state, "c", "p", "ALL"), "ok");
    assert_eq!(
        unregister(&mut state, "c", "p", "ALL"),
        PERSON_NOT_FOUND,
        "the person left with its last face"
    );
    assert_eq!(unregister(&mut state, "c", "ALL", "x"), "ok");
    assert_eq!(unregister(&mut state, "c", "q", "ALL"), CATEGORY_NOT_FOUND);
    let left = state.snapshot();
    assert_eq!(left.categories.len(), 1);
    assert_eq!(left.categories[0].category_id, "d");
    let err = state
        .unregister(&params(&[
            ("CategoryId", "zz"),
            ("PersonId", "p"),
            ("FaceId", "f"),
        ]))
        .unwrap_err();
    assert_eq!(err.status, 404);
    assert_eq!(
        code(state.unregister(&params(&[("CategoryId", "d"), ("PersonId", "r")]))),
        "MissingParameter"
    );
}

#[test]
fn tagging_sets_names_of_existing_entries_and_creates_nothing() {
    let mut state = MtsState::default();
    register(&mut state, "c", "p", "http://img/1.jpg").unwrap();
    let tag = |state: &mut MtsState, pairs: &[(&str, &str)]| code(state.tag(&params(pairs)));
    assert_eq!(
        tag(
            &mut state,
            &[
                ("CategoryId", "C"),
                ("CategoryName", "Staff"),
                ("PersonId", "P"),
                ("PersonName", "Pat")
            ]
        ),
        "ok"
    );
    assert_eq!(
        tag(
            &mut state,
            &[
                ("CategoryId", "c"),
                ("PersonId", "p"),
                ("PersonDescription", "desk 4")
            ]
        ),
        "ok"
    );
    assert_eq!(
        tag(&mut state, &[("CategoryId", "new"), ("CategoryName", "x")]),
        CATEGORY_NOT_FOUND
    );
    assert_eq!(
        tag(&mut state, &[("CategoryId", "c"), ("PersonId", "new")]),
        PERSON_NOT_FOUND
    );
    let long = "n".repeat(513);
    assert_eq!(
        tag(&mut state, &[("CategoryId", "c"), ("PersonName", &long)]),
        "InvalidParameter.PersonName"
    );
    let snapshot = state.snapshot();
    let person = &snapshot.categories[0].persons[0];
    assert_eq!(
        snapshot.categories[0].category_name.as_deref(),
        Some("Staff")
    );
    assert_eq!(
        (
            person.person_name.as_deref(),
            person.person_description.as_deref()
        ),
        (Some("Pat"), Some("desk 4"))
    );
    assert_eq!(snapshot.categories.len(), 1);
}

#[test]
fn admin_helpers_add_and_remove_faces_behind_the_clients_back() {
    let mut state = MtsState::default();
    state.insert_face("c", "p", "http://img/1.jpg", "drift-1".into());
    assert!(state.remove_face("drift-1"));
    assert!(!state.remove_face("drift-1"));
    assert!(state.snapshot().categories.is_empty());
}
