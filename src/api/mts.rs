//! Typed MTS custom-face calls (api-notes §1): register, list, unregister, tag.

use serde_json::{Map, Value};

use std::borrow::Cow;

use super::persons::{PersonRef, PersonsBody};
use super::response::{object, text};
use super::{Ack, ApiError, Client, ErrorClass, Service};

/// System face libraries: registering into one silently uses the system library instead.
const SYSTEM_CATEGORIES: [&str; 3] = ["celebrity", "politician", "sensitive"];

/// One face image for one person (RegisterCustomFace).
#[derive(Clone, Copy, Debug)]
pub struct RegisterFace<'a> {
    pub category_id: &'a str,
    pub person_id: &'a str,
    pub image_url: &'a str,
    pub person_name: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterFaceResponse {
    pub face_id: String,
    pub request_id: Option<String>,
}

/// The whole registered tree (ListCustomPersons).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomPersons {
    pub categories: Vec<Category>,
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Category {
    pub category_id: String,
    pub category_name: Option<String>,
    pub category_description: Option<String>,
    pub persons: Vec<Person>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Person {
    pub person_id: String,
    pub person_name: Option<String>,
    pub person_description: Option<String>,
    pub faces: Vec<Face>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Face {
    pub face_id: String,
    pub image_url: Option<String>,
}

/// A deliberately wide unregistration: the service's `ALL` values, sent only when asked for.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// `FaceId=ALL`: every face of one person.
    AllFacesOfPerson {
        category_id: &'a str,
        person_id: &'a str,
    },
    /// `PersonId=ALL`, `FaceId=ALL`: every face of the category, and the category itself.
    AllPersonsOfCategory { category_id: &'a str },
}

/// Names or describes a library or a person (TagCustomPerson); `None` fields are not sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct TagPerson<'a> {
    pub category_id: Option<&'a str>,
    pub category_name: Option<&'a str>,
    pub category_description: Option<&'a str>,
    pub person_id: Option<&'a str>,
    pub person_name: Option<&'a str>,
    pub person_description: Option<&'a str>,
}

fn is_all(value: &str) -> bool {
    value.eq_ignore_ascii_case("ALL")
}

fn refused(code: &str, message: String) -> ApiError {
    ApiError::with_class(ErrorClass::RowRejected, None, code, message)
}

/// A 2xx without the field that says what was created: it may exist now, nobody knows its id.
pub(crate) fn required(
    obj: &Map<String, Value>,
    key: &str,
    action: &str,
) -> Result<String, ApiError> {
    text(obj, key).ok_or_else(|| {
        ApiError::malformed(Some(200), format!("{action} answered without {key}"))
            .with_request_id(text(obj, "RequestId"))
    })
}

impl Client {
    /// RegisterCustomFace: not idempotent, every success is a new FaceId.
    pub async fn register_custom_face(
        &self,
        face: &RegisterFace<'_>,
    ) -> Result<RegisterFaceResponse, ApiError> {
        if SYSTEM_CATEGORIES
            .iter()
            .any(|s| face.category_id.eq_ignore_ascii_case(s))
        {
            return Err(refused(
                "ReservedCategory",
                format!(
                    "category '{}' is a system library; choose another CategoryId",
                    face.category_id
                ),
            ));
        }
        let mut params = vec![
            ("CategoryId", face.category_id),
            ("PersonId", face.person_id),
            ("ImageUrl", face.image_url),
        ];
        if let Some(name) = face.person_name {
            params.push(("PersonName", name));
        }
        let v = self
            .call(Service::Mts, "RegisterCustomFace", &params)
            .await?;
        let obj = object(&v);
        Ok(RegisterFaceResponse {
            face_id: required(obj, "FaceId", "RegisterCustomFace")?,
            request_id: text(obj, "RequestId"),
        })
    }

    /// ListCustomPersons: the whole tree, optionally narrowed to a category and a person.
    pub async fn list_custom_persons(
        &self,
        category_id: Option<&str>,
        person_id: Option<&str>,
    ) -> Result<CustomPersons, ApiError> {
        Ok(tree(
            &self
                .list_custom_persons_body(category_id, person_id)
                .await?,
        ))
    }

    /// ListCustomPersons, the answer kept as received and walked person by person: for a
    /// whole library, which can be a million faces in one answer.
    pub async fn list_custom_persons_body(
        &self,
        category_id: Option<&str>,
        person_id: Option<&str>,
    ) -> Result<PersonsBody, ApiError> {
        let mut params = Vec::with_capacity(2);
        if let Some(c) = category_id {
            params.push(("CategoryId", c));
        }
        if let Some(p) = person_id {
            params.push(("PersonId", p));
        }
        let (status, body) = self
            .call_body(Service::Mts, "ListCustomPersons", &params)
            .await?;
        PersonsBody::parse(status, body)
    }

    /// ListCustomPersons read as it arrives, on a thread of its own: each person goes to
    /// `each` (with `state`) as soon as it is read, so the answer is never held whole; `state`
    /// comes back once the answer was read to its end. The errors are
    /// [`Client::list_custom_persons_body`]'s; persons handed out before one are the caller's
    /// to discard with the `state` they went into.
    pub async fn list_custom_persons_walk<S: Send + 'static>(
        &self,
        category_id: Option<&str>,
        person_id: Option<&str>,
        state: S,
        mut each: impl FnMut(&mut S, PersonRef<'_, '_>) + Send + 'static,
    ) -> Result<S, ApiError> {
        let mut params = Vec::with_capacity(2);
        if let Some(c) = category_id {
            params.push(("CategoryId", c));
        }
        if let Some(p) = person_id {
            params.push(("PersonId", p));
        }
        let (chunks, arriving) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let reader = tokio::task::spawn_blocking(move || {
            let mut state = state;
            let read = super::persons::stream(Arriving::new(arriving), |p| each(&mut state, p));
            read.map(|()| state)
        });
        let sent = self
            .call_streamed(Service::Mts, "ListCustomPersons", &params, chunks)
            .await;
        let read = reader.await;
        let status = sent?;
        match read {
            Ok(read) => read.map_err(|unread| unread.error(status)),
            Err(e) => Err(ApiError::malformed(
                Some(status),
                format!("the reader of the ListCustomPersons answer stopped: {e}"),
            )),
        }
    }

    /// UnregisterCustomFace for one face. `ALL` in `person_id` or `face_id` is refused locally
    /// (nothing is sent): use `unregister_all` for those scopes.
    pub async fn unregister_face(
        &self,
        category_id: &str,
        person_id: &str,
        face_id: &str,
    ) -> Result<Ack, ApiError> {
        if is_all(person_id) || is_all(face_id) {
            return Err(refused(
                "RefusedAllScope",
                format!(
                    "refusing to unregister person '{person_id}' face '{face_id}': ALL would remove \
                     more than one face; use an explicit Scope"
                ),
            ));
        }
        self.unregister(category_id, person_id, face_id).await
    }

    /// UnregisterCustomFace with the service's `ALL` values, for a scope a person asked for.
    pub async fn unregister_all(&self, scope: Scope<'_>) -> Result<Ack, ApiError> {
        match scope {
            Scope::AllFacesOfPerson {
                category_id,
                person_id,
            } => {
                if is_all(person_id) {
                    return Err(refused(
                        "RefusedAllScope",
                        "a person called ALL would remove the whole category; use \
                         Scope::AllPersonsOfCategory for that"
                            .to_string(),
                    ));
                }
                self.unregister(category_id, person_id, "ALL").await
            }
            Scope::AllPersonsOfCategory { category_id } => {
                self.unregister(category_id, "ALL", "ALL").await
            }
        }
    }

    async fn unregister(&self, category: &str, person: &str, face: &str) -> Result<Ack, ApiError> {
        let params = [
            ("CategoryId", category),
            ("PersonId", person),
            ("FaceId", face),
        ];
        let v = self
            .call(Service::Mts, "UnregisterCustomFace", &params)
            .await?;
        Ok(Ack::from_answer(&v))
    }

    /// TagCustomPerson: only the fields that are `Some` are sent.
    pub async fn tag_custom_person(&self, tag: &TagPerson<'_>) -> Result<Ack, ApiError> {
        let fields = [
            ("CategoryId", tag.category_id),
            ("CategoryName", tag.category_name),
            ("CategoryDescription", tag.category_description),
            ("PersonId", tag.person_id),
            ("PersonName", tag.person_name),
            ("PersonDescription", tag.person_description),
        ];
        let params: Vec<(&str, &str)> = fields
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        let v = self.call(Service::Mts, "TagCustomPerson", &params).await?;
        Ok(Ack::from_answer(&v))
    }
}

/// Chunks of an answer on their way to its reader: a few, so the reader keeps up with the
/// connection without the answer piling up in between.
const CHUNKS_IN_FLIGHT: usize = 16;

/// An answer's body as its chunks arrive from the connection, read on a blocking thread.
struct Arriving {
    chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl Arriving {
    fn new(chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> Self {
        Arriving {
            chunks,
            current: bytes::Bytes::new(),
        }
    }
}

impl std::io::Read for Arriving {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Each turn takes the next chunk; the loop ends when one has bytes or none is left.
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The answer as a tree of owned lists (for a person's or a small listing).
pub(crate) fn tree(body: &PersonsBody) -> CustomPersons {
    let mut categories: Vec<Category> = body
        .categories()
        .iter()
        .map(|c| Category {
            category_id: c.category_id.clone(),
            category_name: c.category_name.clone(),
            category_description: c.category_description.clone(),
            persons: Vec::new(),
        })
        .collect();
    body.walk(|p| {
        let Some(category) = categories.get_mut(p.category_at) else {
            return;
        };
        category.persons.push(Person {
            person_id: p.person_id.into_owned(),
            person_name: p.person_name.map(Cow::into_owned),
            person_description: p.person_description.map(Cow::into_owned),
            faces: p
                .faces
                .iter()
                .map(|f| Face {
                    face_id: f.face_id.to_string(),
                    image_url: f.image_url.as_deref().map(str::to_string),
                })
                .collect(),
        });
    });
    CustomPersons {
        categories,
        request_id: body.request_id().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<CustomPersons, ApiError> {
        let body = PersonsBody::parse(200, bytes::Bytes::copy_from_slice(json.as_bytes()))?;
        Ok(tree(&body))
    }

    #[test]
    fn full_tree_is_read_through_the_xml_wrappers() {
        let tree = parse(
            r#"{"RequestId":"r","Categories":{"Category":[{"CategoryId":"lib","CategoryName":"L",
               "Persons":{"Person":[{"PersonId":"alice","PersonName":"Alice",
               "Faces":{"Face":[{"FaceId":"f1","ImageUrl":"https://x/1.jpg"},{"FaceId":"f2"}]}}]}}]}}"#,
        )
        .unwrap();
        assert_eq!(tree.request_id.as_deref(), Some("r"));
        let person = &tree.categories[0].persons[0];
        assert_eq!(
            (person.person_id.as_str(), person.person_name.as_deref()),
            ("alice", Some("Alice"))
        );
        assert_eq!(
            person.faces[0].image_url.as_deref(),
            Some("https://x/1.jpg")
        );
        assert_eq!(
            person.faces[1],
            Face {
                face_id: "f2".into(),
                image_url: None
            }
        );
        assert_eq!(tree.categories[0].category_description, None);
    }

    #[test]
    fn missing_or_empty_wrappers_mean_empty_lists() {
        for json in [
            r#"{"RequestId":"r"}"#,
            r#"{"Categories":null}"#,
            r#"{"Categories":{}}"#,
            r#"{"Categories":{"Category":[]}}"#,
        ] {
            assert!(parse(json).unwrap().categories.is_empty(), "{json}");
        }
        let tree = parse(
            r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":{}},{"CategoryId":"d"}]}}"#,
        )
        .unwrap();
        assert!(tree.categories.iter().all(|c| c.persons.is_empty()));
        let tree = parse(r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":{"Person":[{"PersonId":"p","Faces":null}]}}]}}"#).unwrap();
        assert!(tree.categories[0].persons[0].faces.is_empty());
    }

    #[test]
    fn a_face_without_an_id_makes_the_answer_malformed() {
        let e = parse(r#"{"Categories":{"Category":[{"CategoryId":"c","Persons":{"Person":[{"PersonId":"p","Faces":{"Face":[{"ImageUrl":"u"}]}}]}}]}}"#)
            .unwrap_err();
        assert_eq!(
            (e.code(), e.class()),
            ("MalformedResponse", ErrorClass::OutcomeUnknown)
        );
    }

    #[test]
    fn a_register_answer_without_face_id_is_malformed_with_its_request_id() {
        let v: Value = serde_json::from_str(r#"{"RequestId":"r9"}"#).unwrap();
        let e = required(v.as_object().unwrap(), "FaceId", "RegisterCustomFace").unwrap_err();
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown);
        assert_eq!(e.request_id(), Some("r9"));
        assert!(e.message().contains("FaceId"));
    }

    #[test]
    fn all_is_recognised_in_any_case() {
        assert!(is_all("ALL") && is_all("all") && is_all("aLl"));
        assert!(!is_all("ALLY") && !is_all(""));
    }
}
