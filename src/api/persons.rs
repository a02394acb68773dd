//! `ListCustomPersons` answers read where they lie: the answer's bytes are kept as received and
//! walked person by person, each string borrowed from them, instead of being parsed into a JSON
//! tree and then copied into typed lists. A whole library (a million faces) is one answer; this
//! way it costs its own bytes, not several times them.
//!
//! The shape is read as [`super::response::list`] and [`super::response::text`] read it:
//! `Categories.Category[].Persons.Person[].Faces.Face[]`, a wrapper that is missing, null or an
//! empty object is an empty list, a wrapper may be the array itself, a lone object is one item,
//! items that are not objects are skipped; a field is a non-empty string or a number.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ApiError;

const ACTION: &str = "ListCustomPersons";

/// One face as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaceRef<'a> {
    pub face_id: Cow<'a, str>,
    pub image_url: Option<Cow<'a, str>>,
}

/// One person as listed, with the category it is listed in.
#[derive(Debug)]
pub struct PersonRef<'w, 'a> {
    pub category: &'w CategoryHead,
    /// The category's place in [`PersonsBody::categories`].
    pub category_at: usize,
    pub person_id: Cow<'a, str>,
    pub person_name: Option<Cow<'a, str>>,
    pub person_description: Option<Cow<'a, str>>,
    pub faces: &'w [FaceRef<'a>],
}

/// A category's own fields (there are few categories in an answer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CategoryHead {
    pub category_id: String,
    pub category_name: Option<String>,
    pub category_description: Option<String>,
}

/// A `ListCustomPersons` answer, checked once, walked as often as needed.
#[derive(Clone, Debug, Default)]
pub struct PersonsBody {
    body: Bytes,
    categories: Vec<CategoryHead>,
    request_id: Option<String>,
}

impl PersonsBody {
    /// Checks the whole answer (JSON, an object, every required id present) and reads its
    /// categories; `status` is the HTTP status, for the error.
    pub fn parse(status: u16, body: Bytes) -> Result<PersonsBody, ApiError> {
        let mut heads = Walk::new(None, |_: PersonRef<'_, '_>| {});
        run(&body, &mut heads, status)?;
        let (categories, request_id) = (heads.found, heads.request_id);
        // The persons too, so that a later walk cannot fail.
        run(&body, &mut Walk::new(Some(&categories), |_| {}), status)?;
        Ok(PersonsBody {
            body,
            categories,
            request_id,
        })
    }

    pub fn categories(&self) -> &[CategoryHead] {
        &self.categories
    }

    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Every person, in the answer's order.
    pub fn walk(&self, each: impl FnMut(PersonRef<'_, '_>)) {
        // `parse` read these same bytes the same way: this cannot fail.
        let _ = run(
            &self.body,
            &mut Walk::new(Some(&self.categories), each),
            200,
        );
    }
}

fn run<'a, F: FnMut(PersonRef<'_, '_>)>(
    body: &'a [u8],
    walk: &mut Walk<'_, 'a, F>,
    status: u16,
) -> Result<(), ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = Root(&mut *walk)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match (result, walk.missing.take()) {
        (_, Some(field)) => Err(ApiError::malformed(
            Some(status),
            format!("{ACTION} answered without {field}"),
        )),
        (Ok(()), None) => Ok(()),
        (Err(_), None) => Err(ApiError::malformed(
            Some(status),
            format!(
                "HTTP {status} answer is not a JSON object: {}",
                super::response::snippet(body)
            ),
        )),
    }
}

/// Reads an answer as it arrives, in one pass, handing each person to `each` as soon as it is
/// read, so that no more than one person of it is held: for a whole library's listing, which
/// is one answer of a million faces. `status` is the HTTP status, for the error.
///
/// The outcome is [`PersonsBody::parse`]'s for the same bytes: the same persons in the same
/// order when it succeeds (a person read before its category's id waits for the id), the same
/// error when it fails. Persons already handed out before a failure are to be discarded by the
/// caller. Each person's category carries its id only (`CategoryName` and
/// `CategoryDescription` may come after the persons).
pub fn stream(
    reader: impl std::io::Read,
    each: impl FnMut(PersonRef<'_, '_>),
) -> Result<(), Unread> {
    let mut reader = Prefix::new(reader);
    let mut walk = Walk::new(None, each);
    walk.stream = true;
    let result = {
        let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(
            64 << 10,
            &mut reader,
        ));
        Root(&mut walk).deserialize(&mut de).and_then(|()| de.end())
    };
    // As `parse` reads it: the categories and the JSON first (their error stops the read), a
    // person's or a face's missing id after them.
    let missing = walk.missing.take().or(match result {
        Ok(()) => walk.person_missing,
        Err(_) => None,
    });
    match (result, missing) {
        (_, Some(field)) => Err(Unread::Without(field)),
        (Ok(()), None) => Ok(()),
        (Err(_), None) => {
            // The read stopped at the fault: the snippet's bytes after it are read now.
            reader.fill_prefix();
            Err(Unread::NotJson(super::response::snippet(&reader.prefix)))
        }
    }
}

/// Why [`stream`] could not read an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Unread {
    /// A required id is missing.
    Without(&'static str),
    /// Not a JSON object; how the answer begins.
    NotJson(String),
}

impl Unread {
    /// The error [`PersonsBody::parse`] gives for the same answer with HTTP `status`.
    pub fn error(self, status: u16) -> ApiError {
        let message = match self {
            Unread::Without(field) => format!("{ACTION} answered without {field}"),
            Unread::NotJson(snippet) => {
                format!("HTTP {status} answer is not a JSON object: {snippet}")
            }
        };
        ApiError::malformed(Some(status), message)
    }
}

/// A reader that keeps the first bytes read through it: enough for
/// [`super::response::snippet`] to say the same of them as of the whole answer.
struct Prefix<R> {
    inner: R,
    prefix: Vec<u8>,
}

/// Bytes [`Prefix`] keeps: four per character of the snippet and two characters more, so the
/// snippet's characters and whether more follow are those of the whole answer.
const PREFIX_BYTES: usize = 4 * (super::response::SNIPPET_CHARS + 2);

impl<R> Prefix<R> {
    fn new(inner: R) -> Self {
        Prefix {
            inner,
            prefix: Vec::new(),
        }
    }
}

impl<R: std::io::Read> Prefix<R> {
    /// Reads on until the prefix is whole or the answer ends (or cannot be read further).
    fn fill_prefix(&mut self) {
        let mut buf = [0u8; 256];
        // Each turn adds bytes to the prefix or stops: at most PREFIX_BYTES turns.
        for _ in 0..PREFIX_BYTES {
            if self.prefix.len() >= PREFIX_BYTES {
                break;
            }
            match std::io::Read::read(self, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

impl<R: std::io::Read> std::io::Read for Prefix<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let room = PREFIX_BYTES.saturating_sub(self.prefix.len()).min(n);
        self.prefix.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}

/// A person [`stream`] read before its category's id: handed out once the id is read.
struct Waiting<'a> {
    person_id: Cow<'a, str>,
    person_name: Option<Cow<'a, str>>,
    person_description: Option<Cow<'a, str>>,
    faces: Vec<FaceRef<'a>>,
}

/// Where a walk is, and what it hands out.
struct Walk<'h, 'a, F> {
    /// The categories found by the first pass; `None` during it (persons are skipped then,
    /// unless `stream`).
    heads: Option<&'h [CategoryHead]>,
    /// One pass ([`stream`]): persons are read with the categories, each handed out with the
    /// id of the category it is in (`open`).
    stream: bool,
    /// In a stream, the category being read, once its id is read.
    open: Option<CategoryHead>,
    /// In a stream, the persons of the category being read that came before its id.
    waiting: Vec<Waiting<'a>>,
    /// In a stream, the first person's or face's missing id: reported only if the rest of
    /// the answer reads, as `parse` (categories first, persons after) reports it; nobody is
    /// handed out after it.
    person_missing: Option<&'static str>,
    found: Vec<CategoryHead>,
    request_id: Option<String>,
    /// Index of the category being read.
    category: usize,
    faces: Vec<FaceRef<'a>>,
    /// A required field that was absent (the walk stops there).
    missing: Option<&'static str>,
    each: F,
}

impl<'h, 'a, F: FnMut(PersonRef<'_, '_>)> Walk<'h, 'a, F> {
    fn new(heads: Option<&'h [CategoryHead]>, each: F) -> Self {
        Walk {
            heads,
            stream: false,
            open: None,
            waiting: Vec::new(),
            person_missing: None,
            found: Vec::new(),
            request_id: None,
            category: 0,
            faces: Vec::new(),
            missing: None,
            each,
        }
    }

    fn fail<E: de::Error>(&mut self, field: &'static str) -> E {
        self.missing = Some(field);
        E::custom(field)
    }

    /// A category read: its head kept (in the first pass), and the persons that follow are
    /// the next category's.
    fn end_category<E: de::Error>(&mut self, fields: ItemFields<'a>) -> Result<(), E> {
        let Some(id) = fields.id else {
            return Err(self.fail("CategoryId"));
        };
        let head = || CategoryHead {
            category_id: id.into_owned(),
            category_name: fields.name.map(Cow::into_owned),
            category_description: fields.description.map(Cow::into_owned),
        };
        if self.stream {
            // Its persons still waiting for its id (read after them) go out with it now.
            let head = head();
            let waiting = std::mem::take(&mut self.waiting);
            hand_out(&mut self.each, &head, self.category, waiting);
            self.open = None;
        } else if self.heads.is_none() {
            self.found.push(head());
        }
        self.category += 1;
        Ok(())
    }

    /// In a stream, a category's id read: the category is open, and the persons read before
    /// the id go out first, in their order.
    fn open_category(&mut self, id: Option<&str>) {
        self.open = id.map(|id| CategoryHead {
            category_id: id.to_string(),
            ..CategoryHead::default()
        });
        if let Some(category) = &self.open {
            let waiting = std::mem::take(&mut self.waiting);
            hand_out(&mut self.each, category, self.category, waiting);
        }
    }

    /// In a stream, a person read: handed out with its open category, or kept until the
    /// category's id is read. A missing id is kept to report once the rest reads, and nobody
    /// is handed out after it.
    fn end_streamed_person(&mut self, fields: ItemFields<'a>) {
        if self.person_missing.is_none() && fields.id.is_none() {
            self.person_missing = Some("PersonId");
        }
        match (fields.id, &self.open) {
            (Some(_), _) if self.person_missing.is_some() => {}
            (Some(person_id), Some(category)) => (self.each)(PersonRef {
                category,
                category_at: self.category,
                person_id,
                person_name: fields.name,
                person_description: fields.description,
                faces: &self.faces,
            }),
            (Some(person_id), None) => self.waiting.push(Waiting {
                person_id,
                person_name: fields.name,
                person_description: fields.description,
                faces: std::mem::take(&mut self.faces),
            }),
            (None, _) => {}
        }
        self.faces.clear();
    }

    /// A person read: handed out with its category and the faces read with it.
    fn end_person<E: de::Error>(&mut self, fields: ItemFields<'a>) -> Result<(), E> {
        if self.stream {
            self.end_streamed_person(fields);
            return Ok(());
        }
        let Some(person_id) = fields.id else {
            return Err(self.fail("PersonId"));
        };
        let heads = self.heads.unwrap_or_default();
        // Persons are read in the second pass only, which knows every category.
        if let Some(category) = heads.get(self.category) {
            (self.each)(PersonRef {
                category,
                category_at: self.category,
                person_id,
                person_name: fields.name,
                person_description: fields.description,
                faces: &self.faces,
            });
        }
        self.faces.clear();
        Ok(())
    }

    /// A face read: kept for the person it is listed under.
    fn end_face<E: de::Error>(&mut self, fields: ItemFields<'a>) -> Result<(), E> {
        let Some(face_id) = fields.id else {
            if self.stream {
                // Reported once the rest reads, as a person's (see `end_streamed_person`).
                self.person_missing.get_or_insert("FaceId");
                return Ok(());
            }
            return Err(self.fail("FaceId"));
        };
        self.faces.push(FaceRef {
            face_id,
            image_url: fields.image_url,
        });
        Ok(())
    }
}

/// Hands out persons read before their category's id, in their order, with the category.
fn hand_out<F: FnMut(PersonRef<'_, '_>)>(
    each: &mut F,
    category: &CategoryHead,
    category_at: usize,
    waiting: Vec<Waiting<'_>>,
) {
    for person in waiting {
        each(PersonRef {
            category,
            category_at,
            person_id: person.person_id,
            person_name: person.person_name,
            person_description: person.person_description,
            faces: &person.faces,
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Category,
    Person,
    Face,
}

impl Level {
    fn item(self) -> Key {
        match self {
            Level::Category => Key::Category,
            Level::Person => Key::Person,
            Level::Face => Key::Face,
        }
    }
}

/// The keys this reader looks at; every other key is skipped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    RequestId,
    Categories,
    Category,
    CategoryId,
    CategoryName,
    CategoryDescription,
    Persons,
    Person,
    PersonId,
    PersonName,
    PersonDescription,
    Faces,
    Face,
    FaceId,
    ImageUrl,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "RequestId" => Key::RequestId,
                    "Categories" => Key::Categories,
                    "Category" => Key::Category,
                    "CategoryId" => Key::CategoryId,
                    "CategoryName" => Key::CategoryName,
                    "CategoryDescription" => Key::CategoryDescription,
                    "Persons" => Key::Persons,
                    "Person" => Key::Person,
                    "PersonId" => Key::PersonId,
                    "PersonName" => Key::PersonName,
                    "PersonDescription" => Key::PersonDescription,
                    "Faces" => Key::Faces,
                    "Face" => Key::Face,
                    "FaceId" => Key::FaceId,
                    "ImageUrl" => Key::ImageUrl,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A field as `response::text` reads it: a non-empty string (borrowed when it has no
/// escapes) or a number; anything else is absent.
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text((!s.is_empty()).then_some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text((!s.is_empty()).then(|| Cow::Owned(s.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(n.to_string()))))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(n.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Text<'de>, E> {
                Ok(Text(
                    serde_json::Number::from_f64(n).map(|n| Cow::Owned(n.to_string())),
                ))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Implements the visits of values that hold no items (null, booleans, numbers, strings).
macro_rules! nothing_in_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

struct Root<'w, 'h, 'a, F>(&'w mut Walk<'h, 'a, F>);

impl<'de, F: FnMut(PersonRef<'_, '_>)> DeserializeSeed<'de> for Root<'_, '_, 'de, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(PersonRef<'_, '_>)> Visitor<'de> for Root<'_, '_, 'de, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::RequestId => {
                    self.0.request_id = map.next_value::<Text>()?.0.map(Cow::into_owned);
                }
                Key::Categories => map.next_value_seed(Wrapper(&mut *self.0, Level::Category))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `Categories`, `Persons` or `Faces`: an object holding the item list, or the list itself.
struct Wrapper<'w, 'h, 'a, F>(&'w mut Walk<'h, 'a, F>, Level);

impl<'de, F: FnMut(PersonRef<'_, '_>)> DeserializeSeed<'de> for Wrapper<'_, '_, 'de, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(PersonRef<'_, '_>)> Visitor<'de> for Wrapper<'_, '_, 'de, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list wrapper")
    }
    nothing_in_scalars!();
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Items(self.0, self.1).visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Wrapper(walk, level) = self;
        while let Some(key) = map.next_key::<Key>()? {
            if key == level.item() {
                map.next_value_seed(Items(&mut *walk, level))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// `Category`, `Person` or `Face`: an array of items, or one lone item.
struct Items<'w, 'h, 'a, F>(&'w mut Walk<'h, 'a, F>, Level);

impl<'de, F: FnMut(PersonRef<'_, '_>)> DeserializeSeed<'de> for Items<'_, '_, 'de, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(PersonRef<'_, '_>)> Visitor<'de> for Items<'_, '_, 'de, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of items")
    }
    nothing_in_scalars!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Items(walk, level) = self;
        while seq
            .next_element_seed(Item(&mut *walk, level, false))?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        item(self.0, self.1, map, true)
    }
}

/// One element of an item array: an object is an item, anything else is skipped.
struct Item<'w, 'h, 'a, F>(&'w mut Walk<'h, 'a, F>, Level, bool);

impl<'de, F: FnMut(PersonRef<'_, '_>)> DeserializeSeed<'de> for Item<'_, '_, 'de, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(PersonRef<'_, '_>)> Visitor<'de> for Item<'_, '_, 'de, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an item")
    }
    nothing_in_scalars!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        item(self.0, self.1, map, self.2)
    }
}

/// Reads one item object. A lone empty object is no item (as `response::list` reads it);
/// an empty object in an array is an item without its id.
fn item<'de, F: FnMut(PersonRef<'_, '_>), A: MapAccess<'de>>(
    walk: &mut Walk<'_, 'de, F>,
    level: Level,
    map: A,
    lone: bool,
) -> Result<(), A::Error> {
    if level == Level::Person {
        walk.faces.clear();
    }
    if level == Level::Category && walk.stream {
        walk.open = None;
        walk.waiting.clear();
    }
    let fields = item_fields(walk, level, map)?;
    if lone && !fields.any {
        return Ok(());
    }
    match level {
        Level::Category => walk.end_category(fields),
        Level::Person => walk.end_person(fields),
        Level::Face => walk.end_face(fields),
    }
}

/// What an item object held of the fields its level has.
#[derive(Debug, Default)]
struct ItemFields<'a> {
    /// The object had any key at all.
    any: bool,
    id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    description: Option<Cow<'a, str>>,
    image_url: Option<Cow<'a, str>>,
}

/// Which of an item's fields a key is, at the item's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Id,
    Name,
    Description,
    ImageUrl,
    /// A category's persons.
    Persons,
    /// A person's faces.
    Faces,
    /// Not a field of this level's items.
    Other,
}

impl Field {
    /// The field `key` names in an item at `level`.
    fn of(level: Level, key: Key) -> Field {
        match (level, key) {
            (Level::Category, Key::CategoryId)
            | (Level::Person, Key::PersonId)
            | (Level::Face, Key::FaceId) => Field::Id,
            (Level::Category, Key::CategoryName) | (Level::Person, Key::PersonName) => Field::Name,
            (Level::Category, Key::CategoryDescription)
            | (Level::Person, Key::PersonDescription) => Field::Description,
            (Level::Face, Key::ImageUrl) => Field::ImageUrl,
            (Level::Category, Key::Persons) => Field::Persons,
            (Level::Person, Key::Faces) => Field::Faces,
            _ => Field::Other,
        }
    }
}

/// Reads an item object's fields; a category's persons (second pass only) and a person's faces
/// are walked where they are met.
fn item_fields<'de, F: FnMut(PersonRef<'_, '_>), A: MapAccess<'de>>(
    walk: &mut Walk<'_, 'de, F>,
    level: Level,
    mut map: A,
) -> Result<ItemFields<'de>, A::Error> {
    let mut fields = ItemFields::default();
    while let Some(key) = map.next_key::<Key>()? {
        fields.any = true;
        match Field::of(level, key) {
            Field::Id => {
                fields.id = map.next_value::<Text>()?.0;
                if level == Level::Category && walk.stream {
                    walk.open_category(fields.id.as_deref());
                }
            }
            Field::Name => fields.name = map.next_value::<Text>()?.0,
            Field::Description => fields.description = map.next_value::<Text>()?.0,
            Field::ImageUrl => {
                fields.image_url = map.next_value::<Text>()?.0.map(crate::image::shown_cow)
            }
            Field::Persons if walk.heads.is_some() || walk.stream => {
                map.next_value_seed(Wrapper(&mut *walk, Level::Person))?;
            }
            Field::Faces => {
                // A repeated key: the last one counts, as in a JSON object.
                walk.faces.clear();
                map.next_value_seed(Wrapper(&mut *walk, Level::Face))?;
            }
            Field::Persons | Field::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(fields)
}

#[cfg(test)]
#[path = "persons_tests.rs"]
mod tests;
