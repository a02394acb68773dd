//! Unit tests of the ICE recognition-library state.

use super::*;

struct Fixture {
    state: IceState,
    ids: IdGen,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            state: IceState::default(),
            ids: IdGen::new(9),
        }
    }

    fn lib(&mut self, algorithm: &str, name: &str) -> String {
        let fields = self.state.create_lib(
            &Params::from_pairs(&[("Algorithm", algorithm), ("LibName", name)]),
            &mut self.ids,
        );
        fields.unwrap()["LibId"].as_str().unwrap().to_string()
    }

    fn entity(&mut self, algorithm: &str, lib: &str, name: &str) -> String {
        let params = Params::from_pairs(&[
            ("Algorithm", algorithm),
            ("LibId", lib),
            ("EntityName", name),
        ]);
        self.state.create_entity(&params, &mut self.ids).unwrap()["EntityId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn sample(
        &mut self,
        algorithm: &str,
        lib: &str,
        entity: &str,
        url: &str,
    ) -> Result<String, ApiError> {
        let params = Params::from_pairs(&[
            ("Algorithm", algorithm),
            ("LibId", lib),
            ("EntityId", entity),
            ("ImageUrl", url),
        ]);
        Ok(
            self.state.create_sample(&params, &mut self.ids)?["SampleId"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    }
}

fn message(result: Fields) -> String {
    let err = result.unwrap_err();
    assert_eq!((err.status, err.code), (400, "InvalidParameter"));
    err.message
}

#[test]
fn every_call_needs_a_known_algorithm() {
    let mut f = Fixture::new();
    for bad in [None, Some("Face"), Some("scene")] {
        let mut pairs = vec![("LibName", "x")];
        pairs.extend(bad.map(|a| ("Algorithm", a)));
        assert!(
            message(f.state.create_lib(&Params::from_pairs(&pairs), &mut f.ids))
                .contains("Algorithm")
        );
    }
    let params = Params::from_pairs(&[("PageNumber", "1"), ("PageSize", "10")]);
    assert!(message(f.state.list_libs(&params)).contains("Algorithm"));
}

#[test]
fn names_and_infos_are_limited_in_utf8_bytes_and_info_must_be_json() {
    let mut f = Fixture::new();
    let create = |f: &mut Fixture, name: &str, description: &str| {
        let params = Params::from_pairs(&[
            ("Algorithm", "logo"),
            ("LibName", name),
            ("LibDescription", description),
        ]);
        f.state.create_lib(&params, &mut f.ids)
    };
    assert!(create(&mut f, &"a".repeat(64), &"d".repeat(128)).is_ok());
    assert!(
        message(create(&mut f, &"张".repeat(22), "")).contains("LibName"),
        "66 bytes"
    );
    assert!(message(create(&mut f, "", "")).contains("LibName"));
    assert!(message(create(&mut f, "ok", &"d".repeat(129))).contains("LibDescription"));
    let lib = f.lib("logo", "brands");
    let entity = |f: &mut Fixture, info: &str| {
        let params = Params::from_pairs(&[
            ("Algorithm", "logo"),
            ("LibId", &lib),
            ("EntityName", "e"),
            ("EntityInfo", info),
        ]);
        f.state.create_entity(&params, &mut f.ids)
    };
    assert!(entity(&mut f, r#"{"k":"v"}"#).is_ok());
    assert!(message(entity(&mut f, "{not json")).contains("JSON"));
    assert!(message(entity(&mut f, &format!("\"{}\"", "x".repeat(255)))).contains("EntityInfo"));
}

#[test]
fn libs_are_scoped_per_algorithm_and_unknown_ids_name_themselves() {
    let mut f = Fixture::new();
    let lib = f.lib("face", "staff");
    let params = Params::from_pairs(&[
        ("Algorithm", "logo"),
        ("LibId", &lib),
        ("PageNumber", "1"),
        ("PageSize", "5"),
    ]);
    assert!(message(f.state.list_entities(&params)).contains(&lib));
    let params = Params::from_pairs(&[
        ("Algorithm", "face"),
        ("LibId", &lib),
        ("EntityId", "nope"),
        ("ImageUrl", "http://i/1.jpg"),
    ]);
    assert!(message(f.state.create_sample(&params, &mut f.ids)).contains("nope"));
    let libs = f.state.list_libs(&Params::from_pairs(&[
        ("Algorithm", "logo"),
        ("PageNumber", "1"),
        ("PageSize", "5"),
    ]));
    assert_eq!(libs.unwrap()["TotalCount"], 0);
}

#[test]
fn paging_is_checked_and_slices_in_creation_order() {
    let mut f = Fixture::new();
    let ids: Vec<String> = (0..7)
        .map(|i| f.lib("object", &format!("lib{i}")))
        .collect();
    let list = |f: &Fixture, number: &str, size: &str| {
        f.state.list_libs(&Params::from_pairs(&[
            ("Algorithm", "object"),
            ("PageNumber", number),
            ("PageSize", size),
        ]))
    };
    let second = list(&f, "2", "3").unwrap();
    let shown: Vec<&str> = second["Libs"]["Lib"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["LibId"].as_str().unwrap())
        .collect();
    assert_eq!(shown, [ids[3].as_str(), ids[4].as_str(), ids[5].as_str()]);
    assert_eq!(
        (
            second["PageNumber"].clone(),
            second["PageSize"].clone(),
            second["TotalCount"].clone()
        ),
        (json!(2), json!(3), json!(7))
    );
    assert_eq!(
        list(&f, "9", "50").unwrap()["Libs"]["Lib"],
        json!([]),
        "past the end: an empty page"
    );
    for (number, size) in [("0", "10"), ("1", "0"), ("1", "51"), ("x", "10"), ("1", "")] {
        assert!(
            message(list(&f, number, size)).contains("Page"),
            "{number}/{size}"
        );
    }
    let filter = format!("{}, {}", ids[6], ids[1]);
    let filtered = f.state.list_libs(&Params::from_pairs(&[
        ("Algorithm", "object"),
        ("LibId", &filter),
        ("PageNumber", "1"),
        ("PageSize", "50"),
    ]));
    assert_eq!(filtered.unwrap()["TotalCount"], 2);
}

#[test]
fn samples_list_by_entity_or_by_entity_name_with_any() {
    let mut f = Fixture::new();
    let lib = f.lib("face", "staff");
    let (alice, bob) = (
        f.entity("face", &lib, "alice"),
        f.entity("face", &lib, "bob"),
    );
    let a1 = f.sample("face", &lib, &alice, "http://i/a1.jpg").unwrap();
    let b1 = f.sample("face", &lib, &bob, "http://i/b1.jpg").unwrap();
    let a2 = f.sample("face", &lib, &alice, "http://i/a2.jpg").unwrap();
    assert!(
        message(Err(f
            .sample("face", &lib, &alice, "http://i/noface.jpg")
            .unwrap_err()))
        .contains("exactly one frontal face")
    );
    let list = |f: &Fixture, entity: &str, name: Option<&str>| {
        let mut pairs = vec![
            ("Algorithm", "face"),
            ("LibId", lib.as_str()),
            ("EntityId", entity),
            ("PageNumber", "1"),
            ("PageSize", "50"),
        ];
        pairs.extend(name.map(|n| ("EntityName", n)));
        let fields = f.state.list_samples(&Params::from_pairs(&pairs)).unwrap();
        fields["Samples"]["Sample"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["SampleId"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(list(&f, "ANY", None), [a1.clone(), b1.clone(), a2.clone()]);
    assert_eq!(list(&f, "ANY", Some("alice")), [a1.clone(), a2.clone()]);
    assert_eq!(list(&f, &bob, None), [b1]);
}

#[test]
fn deletes_cascade_to_entities_and_samples() {
    let mut f = Fixture::new();
    let lib = f.lib("landmark", "places");
    let tower = f.entity("landmark", &lib, "tower");
    let sample = f
        .sample("landmark", &lib, &tower, "http://i/t.jpg")
        .unwrap();
    let delete_sample = Params::from_pairs(&[
        ("Algorithm", "landmark"),
        ("LibId", &lib),
        ("EntityId", &tower),
        ("SampleId", &sample),
    ]);
    assert!(f.state.delete_sample(&delete_sample).is_ok());
    assert!(message(f.state.delete_sample(&delete_sample)).contains(&sample));
    f.sample("landmark", &lib, &tower, "http://i/t2.jpg")
        .unwrap();
    let delete_entity = Params::from_pairs(&[
        ("Algorithm", "landmark"),
        ("LibId", &lib),
        ("EntityId", &tower),
    ]);
    assert!(f.state.delete_entity(&delete_entity).is_ok());
    assert!(f.state.snapshot().libs[0].entities.is_empty());
    let delete_lib = Params::from_pairs(&[("Algorithm", "landmark"), ("LibId", &lib)]);
    assert!(f.state.delete_lib(&delete_lib).is_ok());
    assert!(f.state.snapshot().libs.is_empty());
    assert!(message(f.state.delete_lib(&delete_lib)).contains(&lib));
}

#[test]
fn label_samples_may_carry_a_prompt_instead_of_an_image() {
    let mut f = Fixture::new();
    let lib = f.lib("label", "tags");
    let entity = f.entity("label", &lib, "sunset");
    let params = Params::from_pairs(&[
        ("Algorithm", "label"),
        ("LibId", &lib),
        ("EntityId", &entity),
        ("LabelPrompt", "orange sky"),
    ]);
    assert!(f.state.create_sample(&params, &mut f.ids).is_ok());
    let sample = &f.state.snapshot().libs[0].entities[0].samples[0];
    assert_eq!(
        (sample.image_url.as_deref(), sample.label_prompt.as_deref()),
        (None, Some("orange sky"))
    );
    let logo = f.lib("logo", "brands");
    let brand = f.entity("logo", &logo, "acme");
    let params = Params::from_pairs(&[
        ("Algorithm", "logo"),
        ("LibId", &logo),
        ("EntityId", &brand),
        ("LabelPrompt", "x"),
    ]);
    assert!(message(f.state.create_sample(&params, &mut f.ids)).contains("ImageUrl"));
}
