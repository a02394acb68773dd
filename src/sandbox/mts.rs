//! The MTS custom-face libraries (api-notes §1): categories → persons → faces, ids compared
//! case-insensitively, at most N faces per person, and the four actions that read and change them.
//!
//! A person disappears with its last face and a category with its last person, mirroring how
//! the first registration creates both implicitly.

use serde_json::{Map, Value, json};

use super::ids::IdGen;
use super::ordered::Ordered;
use super::params::{Params, is_web_url, optional_chars};
use super::response::ApiError;
use super::snapshot::{CategorySnapshot, FaceSnapshot, MtsSnapshot, PersonSnapshot};

const MAX_ID_CHARS: usize = 120;
const MAX_TEXT_CHARS: usize = 512;
const SYSTEM_LIBRARIES: [&str; 3] = ["celebrity", "politician", "sensitive"];
/// The keyword of `UnregisterCustomFace` for "every person" / "every face" (exact case).
const ALL: &str = "ALL";

/// Not-found answers: 404 with these codes.
pub const CATEGORY_NOT_FOUND: &str = "InvalidParameter.CategoryNotFound";
pub const PERSON_NOT_FOUND: &str = "InvalidParameter.PersonNotFound";
pub const FACE_NOT_FOUND: &str = "InvalidParameter.FaceNotFound";

#[derive(Default)]
pub(crate) struct MtsState {
    categories: Ordered<Category>,
}

struct Category {
    id: String,
    name: Option<String>,
    description: Option<String>,
    persons: Ordered<Person>,
}

struct Person {
    id: String,
    name: Option<String>,
    description: Option<String>,
    faces: Ordered<Face>,
}

struct Face {
    face_id: String,
    image_url: String,
}

/// How ids are compared: `Alice` and `alice` are one person.
fn key(id: &str) -> String {
    id.to_lowercase()
}

fn not_found(code: &'static str, what: &str, id: &str) -> ApiError {
    ApiError::new(
        404,
        code,
        format!("The specified {what} \"{id}\" does not exist."),
    )
}

/// A trimmed caller-chosen id, or `None` when absent.
fn optional_id<'p>(params: &'p Params, name: &str) -> Result<Option<&'p str>, ApiError> {
    let code = if name == "CategoryId" {
        "InvalidParameter.CategoryId"
    } else {
        "InvalidParameter.PersonId"
    };
    let Some(raw) = params.get(name) else {
        return Ok(None);
    };
    let id = raw.trim();
    if id.is_empty() {
        return Err(ApiError::invalid(
            code,
            format!("{name} must not be empty."),
        ));
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(ApiError::invalid(
            code,
            format!("{name} must be at most {MAX_ID_CHARS} characters."),
        ));
    }
    if name == "CategoryId" && SYSTEM_LIBRARIES.iter().any(|s| s.eq_ignore_ascii_case(id)) {
        return Err(ApiError::invalid(
            code,
            format!("CategoryId \"{id}\" is a system library and cannot be used."),
        ));
    }
    Ok(Some(id))
}

fn required_id<'p>(params: &'p Params, name: &str) -> Result<&'p str, ApiError> {
    optional_id(params, name)?.ok_or_else(|| ApiError::missing(name))
}

fn check_image_url(params: &Params) -> Result<&str, ApiError> {
    let url = params
        .get("ImageUrl")
        .ok_or_else(|| ApiError::missing("ImageUrl"))?;
    let invalid = |message: &str| ApiError::invalid("InvalidParameter.ImageUrl", message);
    if !is_web_url(url) {
        return Err(invalid("ImageUrl must be an absolute http or https URL."));
    }
    let lower = url.to_lowercase();
    if lower.contains("noface") || lower.contains("twofaces") {
        return Err(invalid("ImageUrl: exactly one frontal face required."));
    }
    Ok(url)
}

impl MtsState {
    /// `RegisterCustomFace`: one new face, creating category and person on first use.
    pub fn register(
        &mut self,
        params: &Params,
        max_faces: usize,
        ids: &mut IdGen,
    ) -> Result<Map<String, Value>, ApiError> {
        let category_id = required_id(params, "CategoryId")?;
        let person_id = required_id(params, "PersonId")?;
        let image_url = check_image_url(params)?;
        let person_name = optional_chars(
            params,
            "PersonName",
            MAX_TEXT_CHARS,
            "InvalidParameter.PersonName",
        )?;
        let faces_now = self
            .categories
            .get(&key(category_id))
            .and_then(|c| c.persons.get(&key(person_id)))
            .map_or(0, |p| p.faces.len());
        if faces_now >= max_faces {
            return Err(ApiError::invalid(
                "InvalidParameter.FaceLimitExceeded",
                format!(
                    "Person \"{person_id}\" already has {faces_now} faces; the limit is {max_faces} faces per person."
                ),
            ));
        }
        let face_id = ids.next_id();
        let person = self.person_or_insert(category_id, person_id);
        if let Some(name) = person_name {
            person.name = Some(name.to_string());
        }
        person.faces.push(
            &face_id,
            Face {
                face_id: face_id.clone(),
                image_url: image_url.to_string(),
            },
        );
        let mut fields = Map::new();
        fields.insert("FaceId".into(), Value::String(face_id));
        Ok(fields)
    }

    fn person_or_insert(&mut self, category_id: &str, person_id: &str) -> &mut Person {
        let category = self
            .categories
            .get_or_insert_with(&key(category_id), || Category {
                id: category_id.to_string(),
                name: None,
                description: None,
                persons: Ordered::default(),
            });
        category
            .persons
            .get_or_insert_with(&key(person_id), || Person {
                id: person_id.to_string(),
                name: None,
                description: None,
                faces: Ordered::default(),
            })
    }

    /// `ListCustomPersons`: the whole tree, optionally narrowed; empty wrappers are left out.
    pub fn list(&self, params: &Params) -> Result<Map<String, Value>, ApiError> {
        let category_filter = optional_id(params, "CategoryId")?.map(key);
        let person_filter = optional_id(params, "PersonId")?.map(key);
        let mut categories = Vec::new();
        for category in self.categories.values() {
            if category_filter
                .as_ref()
                .is_some_and(|k| *k != key(&category.id))
            {
                continue;
            }
            let persons: Vec<Value> = category
                .persons
                .values()
                .filter(|p| person_filter.as_ref().is_none_or(|k| *k == key(&p.id)))
                .map(person_json)
                .collect();
            if persons.is_empty() && person_filter.is_some() {
                continue;
            }
            let mut object = Map::new();
            object.insert("CategoryId".into(), json!(category.id));
            insert_some(&mut object, "CategoryName", &category.name);
            insert_some(&mut object, "CategoryDescription", &category.description);
            insert_wrapped(&mut object, "Persons", "Person", persons);
            categories.push(Value::Object(object));
        }
        let mut fields = Map::new();
        insert_wrapped(&mut fields, "Categories", "Category", categories);
        Ok(fields)
    }

    /// `UnregisterCustomFace`: one face, every face of a person (`FaceId=ALL`), or a whole
    /// category (`PersonId=ALL`).
    pub fn unregister(&mut self, params: &Params) -> Result<Map<String, Value>, ApiError> {
        let category_id = required_id(params, "CategoryId")?;
        let person_id = required_id(params, "PersonId")?;
        let face_id = params
            .non_empty("FaceId")
            .ok_or_else(|| ApiError::missing("FaceId"))?;
        let category_key = key(category_id);
        let category = self
            .categories
            .get_mut(&category_key)
            .ok_or_else(|| not_found(CATEGORY_NOT_FOUND, "CategoryId", category_id))?;
        if person_id == ALL {
            self.categories.remove(&category_key);
            return Ok(Map::new());
        }
        let person_key = key(person_id);
        let person = category
            .persons
            .get_mut(&person_key)
            .ok_or_else(|| not_found(PERSON_NOT_FOUND, "PersonId", person_id))?;
        if face_id == ALL {
            person.faces.clear();
        } else if person.faces.remove(face_id).is_none() {
            return Err(not_found(FACE_NOT_FOUND, "FaceId", face_id));
        }
        self.drop_if_empty(&category_key, &person_key);
        Ok(Map::new())
    }

    fn drop_if_empty(&mut self, category_key: &str, person_key: &str) {
        let Some(category) = self.categories.get_mut(category_key) else {
            return;
        };
        if category
            .persons
            .get(person_key)
            .is_some_and(|p| p.faces.is_empty())
        {
            category.persons.remove(person_key);
        }
        if category.persons.is_empty() {
            self.categories.remove(category_key);
        }
    }

    /// `TagCustomPerson`: names and descriptions of an existing category and, if given, person.
    pub fn tag(&mut self, params: &Params) -> Result<Map<String, Value>, ApiError> {
        let category_id = required_id(params, "CategoryId")?;
        let person_id = optional_id(params, "PersonId")?;
        let text = |name: &str, code| {
            optional_chars(params, name, MAX_TEXT_CHARS, code).map(|v| v.map(str::to_string))
        };
        let category_name = text("CategoryName", "InvalidParameter.CategoryName")?;
        let category_description = text(
            "CategoryDescription",
            "InvalidParameter.CategoryDescription",
        )?;
        let person_name = text("PersonName", "InvalidParameter.PersonName")?;
        let person_description = text("PersonDescription", "InvalidParameter.PersonDescription")?;
        let category = self
            .categories
            .get_mut(&key(category_id))
            .ok_or_else(|| not_found(CATEGORY_NOT_FOUND, "CategoryId", category_id))?;
        if let Some(person_id) = person_id {
            let person = category
                .persons
                .get_mut(&key(person_id))
                .ok_or_else(|| not_found(PERSON_NOT_FOUND, "PersonId", person_id))?;
            person.name = person_name.or(person.name.take());
            person.description = person_description.or(person.description.take());
        }
        category.name = category_name.or(category.name.take());
        category.description = category_description.or(category.description.take());
        Ok(Map::new())
    }

    /// Registers a face without any check (drift for `verify` tests).
    pub fn insert_face(
        &mut self,
        category_id: &str,
        person_id: &str,
        image_url: &str,
        face_id: String,
    ) {
        let person = self.person_or_insert(category_id.trim(), person_id.trim());
        person.faces.push(
            &face_id,
            Face {
                face_id: face_id.clone(),
                image_url: image_url.to_string(),
            },
        );
    }

    /// Removes a face wherever it is; false when no person has it.
    pub fn remove_face(&mut self, face_id: &str) -> bool {
        let found = self.categories.values().find_map(|c| {
            c.persons
                .values()
                .find(|p| p.faces.get(face_id).is_some())
                .map(|p| (key(&c.id), key(&p.id)))
        });
        let Some((category_key, person_key)) = found else {
            return false;
        };
        if let Some(person) = self
            .categories
            .get_mut(&category_key)
            .and_then(|c| c.persons.get_mut(&person_key))
        {
            person.faces.remove(face_id);
        }
        self.drop_if_empty(&category_key, &person_key);
        true
    }

    pub fn snapshot(&self) -> MtsSnapshot {
        let categories = self
            .categories
            .values()
            .map(|c| CategorySnapshot {
                category_id: c.id.clone(),
                category_name: c.name.clone(),
                category_description: c.description.clone(),
                persons: c.persons.values().map(person_snapshot).collect(),
            })
            .collect();
        MtsSnapshot { categories }
    }
}

fn person_snapshot(p: &Person) -> PersonSnapshot {
    PersonSnapshot {
        person_id: p.id.clone(),
        person_name: p.name.clone(),
        person_description: p.description.clone(),
        faces: p
            .faces
            .values()
            .map(|f| FaceSnapshot {
                face_id: f.face_id.clone(),
                image_url: f.image_url.clone(),
            })
            .collect(),
    }
}

fn person_json(person: &Person) -> Value {
    let mut object = Map::new();
    object.insert("PersonId".into(), json!(person.id));
    insert_some(&mut object, "PersonName", &person.name);
    insert_some(&mut object, "PersonDescription", &person.description);
    let faces = person
        .faces
        .values()
        .map(|f| json!({"FaceId": f.face_id, "ImageUrl": f.image_url}))
        .collect();
    insert_wrapped(&mut object, "Faces", "Face", faces);
    Value::Object(object)
}

fn insert_some(object: &mut Map<String, Value>, name: &str, value: &Option<String>) {
    if let Some(value) = value {
        object.insert(name.into(), json!(value));
    }
}

/// `{"Outer": {"Inner": [...]}}`, or nothing at all when the array is empty.
fn insert_wrapped(object: &mut Map<String, Value>, outer: &str, inner: &str, items: Vec<Value>) {
    if !items.is_empty() {
        object.insert(outer.into(), json!({ inner: items }));
    }
}

#[cfg(test)]
#[path = "mts_tests.rs"]
mod tests;
