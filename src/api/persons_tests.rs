use serde_json::{Map, Value};

use super::*;
use crate::api::response::{list, text};

/// The tree reading this module replaces, kept as the reference it must agree with.
fn by_tree(
    obj: &Map<String, Value>,
) -> Result<Vec<(String, String, Vec<FaceRef<'static>>)>, String> {
    let mut out = Vec::new();
    for c in list(obj, "Categories", "Category") {
        let category = text(c, "CategoryId").ok_or("CategoryId")?;
        let mut persons = Vec::new();
        for p in list(c, "Persons", "Person") {
            let mut faces = Vec::new();
            for f in list(p, "Faces", "Face") {
                faces.push(FaceRef {
                    face_id: text(f, "FaceId").ok_or("FaceId")?.into(),
                    image_url: text(f, "ImageUrl").map(Cow::Owned),
                });
            }
            persons.push((
                category.clone(),
                text(p, "PersonId").ok_or("PersonId")?,
                faces,
            ));
        }
        out.extend(persons);
    }
    Ok(out)
}

fn by_walk(json: &str) -> Result<Vec<(String, String, Vec<FaceRef<'static>>)>, String> {
    let body = PersonsBody::parse(200, Bytes::copy_from_slice(json.as_bytes()))
        .map_err(|e| e.message().to_string())?;
    let mut out = Vec::new();
    body.walk(|p| {
        let faces = p
            .faces
            .iter()
            .map(|f| FaceRef {
                face_id: Cow::Owned(f.face_id.to_string()),
                image_url: f.image_url.as_deref().map(|u| Cow::Owned(u.to_string())),
            })
            .collect();
        out.push((
            p.category.category_id.clone(),
            p.person_id.to_string(),
            faces,
        ));
    });
    Ok(out)
}

#[test]
fn every_shape_reads_as_the_json_tree_reads_it() {
    let shapes = [
        r#"{}"#,
        r#"{"Categories":null}"#,
        r#"{"Categories":{}}"#,
        r#"{"Categories":"x"}"#,
        r#"{"Categories":{"Category":{}}}"#,
        r#"{"Categories":{"Category":{"CategoryId":"c"}}}"#,
        r#"{"Categories":[{"CategoryId":"c","Persons":[{"PersonId":"p"}]}]}"#,
        r#"{"Categories":{"Category":[1,"x",null,{"CategoryId":7,"Persons":{"Person":{"PersonId":"p","Faces":{"Face":{"FaceId":12,"ImageUrl":""}}}}}]}}"#,
        r#"{"Categories":{"Category":[{"Persons":{"Person":[{"Faces":{"Face":[{"ImageUrl":"u","FaceId":"f"}]},"PersonId":"p\u0041"}]},"CategoryId":"late"}]}}"#,
        r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":{"Person":[{"PersonId":"p","Faces":{"Face":[{"FaceId":"a"}]},"Faces":{"Face":[{"FaceId":"b","ImageUrl":"https://x/\"q\""}]}}]}},{"CategoryId":"d","Persons":{"Person":[]}}]}}"#,
        r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":{"Person":[{"PersonId":"p","Faces":[{"FaceId":"a","ImageUrl":{"x":1}},[],{"FaceId":1.5}]}]}}]}}"#,
        r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":{"Person":[{"PersonId":"p","Faces":{"Face":[{}]}}]}}]}}"#,
        r#"{"Categories":{"Category":[{"CategoryId":"","Persons":{}}]}}"#,
        r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":{"Person":[{"PersonName":"n"}]}}]}}"#,
    ];
    for json in shapes {
        let v: Value = serde_json::from_str(json).unwrap();
        let want = by_tree(v.as_object().unwrap());
        let got = by_walk(json);
        match (&want, &got) {
            (Ok(w), Ok(g)) => assert_eq!(w, g, "{json}"),
            (Err(field), Err(message)) => {
                assert!(message.ends_with(field), "{json}: {message}")
            }
            _ => panic!("{json}: the tree says {want:?}, the walk {got:?}"),
        }
    }
}

/// [`stream`] over `json`, fed a few bytes at a time: the persons (as `by_walk` gives
/// them) or the error's message.
fn by_stream(json: &str) -> Result<Vec<(String, String, Vec<FaceRef<'static>>)>, String> {
    /// Hands out at most 3 bytes a read, as chunks arrive.
    struct Trickle<'b>(&'b [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(3);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut out = Vec::new();
    stream(Trickle(json.as_bytes()), |p| {
        let faces = p
            .faces
            .iter()
            .map(|f| FaceRef {
                face_id: Cow::Owned(f.face_id.to_string()),
                image_url: f.image_url.as_deref().map(|u| Cow::Owned(u.to_string())),
            })
            .collect();
        out.push((
            p.category.category_id.clone(),
            p.person_id.to_string(),
            faces,
        ));
    })
    .map_err(|unread| unread.error(200).message().to_string())?;
    Ok(out)
}

#[test]
fn a_stream_reads_what_the_whole_answer_reads_and_fails_as_it_fails() {
    let long = format!(
        r#"{{"Categories":[{{"CategoryId":"c"}}], "x": "{}" "#,
        "é".repeat(300)
    );
    let answers = [
        r#"{}"#,
        r#"{"Categories":null}"#,
        r#"{"Categories":"x"}"#,
        r#"{"Categories":{"Category":{}}}"#,
        r#"{"Categories":[{"CategoryId":"c","Persons":[{"PersonId":"p"}]}]}"#,
        r#"{"Categories":{"Category":[1,"x",null,{"CategoryId":7,"Persons":{"Person":{"PersonId":"p","Faces":{"Face":{"FaceId":12,"ImageUrl":""}}}}}]}}"#,
        r#"{"Categories":{"Category":[{"Persons":{"Person":[{"Faces":{"Face":[{"ImageUrl":"u","FaceId":"f"}]},"PersonId":"p\u0041"}]},"CategoryId":"late"}]}}"#,
        r#"{"Categories":{"Category":[{"CategoryId":"a","Persons":[{"PersonId":"1"}]},{"Persons":[{"PersonId":"2"}],"CategoryId":"b","Persons":[{"PersonId":"3"}]},{"CategoryId":"c","Persons":[{"PersonId":"4"}]}]}}"#,
        r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":{"Person":[{"PersonId":"p","Faces":{"Face":[{"FaceId":"a"}]},"Faces":{"Face":[{"FaceId":"b","ImageUrl":"https://x/\"q\""}]}}]}},{"CategoryId":"d","Persons":{"Person":[]}}]}}"#,
        r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":{"Person":[{"PersonId":"p","Faces":{"Face":[{}]}}]}}]}}"#,
        r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":{"Person":[{"PersonName":"n"}]}}]}}"#,
        // A person's missing id, then a category's: the category's is reported.
        r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":[{"PersonName":"n"}]},{"Persons":[]}]}}"#,
        // A face's missing id, then a person's: the face's comes first.
        r#"{"Categories":[{"CategoryId":"c","Persons":[{"PersonId":"p","Faces":[{"ImageUrl":"u"}]},{"PersonName":"n"}]}]}"#,
        // A person's missing id, then JSON that does not read: that is reported.
        r#"{"Categories":[{"CategoryId":"c","Persons":[{"PersonName":"n"}]}] x"#,
        r#"{"Categories":[{"CategoryId":"c","Persons":[{"PersonId":"p"}]}]}  "#,
        "",
        "[1]",
        "<xml/>",
        r#"{"Categories":"#,
        r#"{} x"#,
        &long,
    ];
    for json in answers {
        assert_eq!(by_stream(json), by_walk(json), "{json}");
    }
}

#[test]
fn a_key_is_a_field_only_at_the_level_that_has_it() {
    use Level::{Category, Face, Person};
    for (level, key, field) in [
        (Category, Key::CategoryId, Field::Id),
        (Person, Key::PersonId, Field::Id),
        (Face, Key::FaceId, Field::Id),
        (Category, Key::CategoryName, Field::Name),
        (Person, Key::PersonDescription, Field::Description),
        (Face, Key::ImageUrl, Field::ImageUrl),
        (Category, Key::Persons, Field::Persons),
        (Person, Key::Faces, Field::Faces),
        (Person, Key::CategoryId, Field::Other),
        (Face, Key::PersonName, Field::Other),
        (Category, Key::ImageUrl, Field::Other),
        (Face, Key::Faces, Field::Other),
        (Person, Key::Persons, Field::Other),
    ] {
        assert_eq!(Field::of(level, key), field);
    }
}

#[test]
fn items_end_as_a_head_a_person_handed_out_or_a_face_kept_and_need_their_id() {
    let fields = |id: Option<&'static str>| ItemFields {
        any: true,
        id: id.map(Cow::Borrowed),
        name: Some(Cow::Borrowed("n")),
        description: None,
        image_url: Some(Cow::Borrowed("u")),
    };
    let mut first = Walk::new(None, |_: PersonRef<'_, '_>| {});
    first
        .end_category::<serde_json::Error>(fields(Some("c")))
        .unwrap();
    assert_eq!(first.category, 1);
    assert_eq!(first.found[0].category_id, "c");
    assert_eq!(first.found[0].category_name.as_deref(), Some("n"));
    assert!(
        first
            .end_category::<serde_json::Error>(fields(None))
            .is_err()
    );
    assert_eq!(first.missing, Some("CategoryId"));

    let heads = [CategoryHead::default(), first.found[0].clone()];
    let mut seen = Vec::new();
    let mut second = Walk::new(Some(&heads), |p: PersonRef<'_, '_>| {
        let faces: Vec<_> = p
            .faces
            .iter()
            .map(|f| {
                (
                    f.face_id.to_string(),
                    f.image_url.as_deref().map(str::to_string),
                )
            })
            .collect();
        seen.push((p.category_at, p.person_id.to_string(), faces))
    });
    second.category = 1;
    second
        .end_face::<serde_json::Error>(fields(Some("f")))
        .unwrap();
    second
        .end_person::<serde_json::Error>(fields(Some("p")))
        .unwrap();
    assert!(second.faces.is_empty());
    assert!(second.end_face::<serde_json::Error>(fields(None)).is_err());
    assert_eq!(second.missing, Some("FaceId"));
    drop(second);
    let face = ("f".to_string(), Some("u".to_string()));
    assert_eq!(seen, [(1, "p".to_string(), vec![face])]);
}

#[test]
fn an_answer_that_is_not_an_object_is_malformed() {
    for body in ["", "[1]", "<xml/>", r#"{"Categories":"#, r#"{} x"#] {
        let e = PersonsBody::parse(200, Bytes::copy_from_slice(body.as_bytes())).unwrap_err();
        assert_eq!(e.code(), "MalformedResponse", "{body}");
        assert!(e.message().contains("not a JSON object"), "{body}");
    }
}

#[test]
fn strings_without_escapes_are_borrowed_from_the_answer() {
    let json = r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":{"Person":[{"PersonId":"p","Faces":{"Face":[{"FaceId":"f","ImageUrl":"https://x/1.jpg"}]}}]}}]}}"#;
    let body = PersonsBody::parse(200, Bytes::copy_from_slice(json.as_bytes())).unwrap();
    let mut borrowed = 0;
    body.walk(|p| {
        borrowed += usize::from(matches!(p.person_id, Cow::Borrowed(_)));
        borrowed += p
            .faces
            .iter()
            .filter(|f| matches!(f.image_url, Some(Cow::Borrowed(_))))
            .count();
    });
    assert_eq!(borrowed, 2);
}
