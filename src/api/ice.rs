//! Typed ICE recognition-library calls (api-notes §2): libraries, entities, samples; ids are the server's.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::mts::required;
use super::response::{list, number, object, text};
use super::{Ack, ApiError, Client, Service};

/// The recognition algorithm every ICE call names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Landmark,
    Object,
    Logo,
    Face,
    Label,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Landmark,
        Algorithm::Object,
        Algorithm::Logo,
        Algorithm::Face,
        Algorithm::Label,
    ];

    /// The wire value: `landmark`, `object`, `logo`, `face`, `label`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Landmark => "landmark",
            Algorithm::Object => "object",
            Algorithm::Logo => "logo",
            Algorithm::Face => "face",
            Algorithm::Label => "label",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An algorithm name that is not one of the five.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown algorithm '{0}': expected one of landmark, object, logo, face, label")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Algorithm, UnknownAlgorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownAlgorithm(s.to_string()))
    }
}

/// One page of a list call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page_number: u32,
    pub page_size: u32,
    pub total_count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lib {
    pub lib_id: String,
    pub lib_name: Option<String>,
    pub lib_description: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entity {
    pub entity_id: String,
    pub entity_name: Option<String>,
    pub entity_info: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub sample_id: String,
    pub entity_id: Option<String>,
    pub lib_id: Option<String>,
    pub image_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedLib {
    pub lib_id: String,
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedEntity {
    pub entity_id: String,
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedSample {
    pub sample_id: String,
    pub request_id: Option<String>,
}

fn push_opt<'a>(params: &mut Vec<(&'a str, &'a str)>, key: &'a str, value: Option<&'a str>) {
    if let Some(v) = value {
        params.push((key, v));
    }
}

impl Client {
    async fn ice(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, ApiError> {
        self.call(Service::Ice, action, params).await
    }

    /// CreateRecognitionLib: not idempotent; the server picks the LibId.
    pub async fn create_recognition_lib(
        &self,
        algorithm: Algorithm,
        lib_name: &str,
        lib_description: Option<&str>,
    ) -> Result<CreatedLib, ApiError> {
        let mut params = vec![("Algorithm", algorithm.as_str()), ("LibName", lib_name)];
        push_opt(&mut params, "LibDescription", lib_description);
        let v = self.ice("CreateRecognitionLib", &params).await?;
        let obj = object(&v);
        let lib_id = required(obj, "LibId", "CreateRecognitionLib")?;
        Ok(CreatedLib {
            lib_id,
            request_id: text(obj, "RequestId"),
        })
    }

    /// CreateRecognitionEntity: not idempotent; the server picks the EntityId.
    pub async fn create_recognition_entity(
        &self,
        algorithm: Algorithm,
        lib_id: &str,
        entity_name: &str,
        entity_info: Option<&str>,
    ) -> Result<CreatedEntity, ApiError> {
        let mut params = vec![
            ("Algorithm", algorithm.as_str()),
            ("LibId", lib_id),
            ("EntityName", entity_name),
        ];
        push_opt(&mut params, "EntityInfo", entity_info);
        let v = self.ice("CreateRecognitionEntity", &params).await?;
        let obj = object(&v);
        let entity_id = required(obj, "EntityId", "CreateRecognitionEntity")?;
        Ok(CreatedEntity {
            entity_id,
            request_id: text(obj, "RequestId"),
        })
    }

    /// CreateRecognitionSample: not idempotent; the server picks the SampleId.
    pub async fn create_recognition_sample(
        &self,
        algorithm: Algorithm,
        lib_id: &str,
        entity_id: &str,
        image_url: &str,
        label_prompt: Option<&str>,
    ) -> Result<CreatedSample, ApiError> {
        let mut params = vec![
            ("Algorithm", algorithm.as_str()),
            ("LibId", lib_id),
            ("EntityId", entity_id),
            ("ImageUrl", image_url),
        ];
        push_opt(&mut params, "LabelPrompt", label_prompt);
        let v = self.ice("CreateRecognitionSample", &params).await?;
        let obj = object(&v);
        let sample_id = required(obj, "SampleId", "CreateRecognitionSample")?;
        Ok(CreatedSample {
            sample_id,
            request_id: text(obj, "RequestId"),
        })
    }

    /// ListRecognitionLibs; `lib_ids` is an optional comma-separated filter.
    pub async fn list_recognition_libs(
        &self,
        algorithm: Algorithm,
        lib_ids: Option<&str>,
        page: u32,
        size: u32,
    ) -> Result<Page<Lib>, ApiError> {
        let (page_s, size_s) = (page.to_string(), size.to_string());
        let mut params = vec![("Algorithm", algorithm.as_str())];
        push_opt(&mut params, "LibId", lib_ids);
        params.extend([
            ("PageNumber", page_s.as_str()),
            ("PageSize", size_s.as_str()),
        ]);
        let v = self.ice("ListRecognitionLibs", &params).await?;
        parse_page(object(&v), ("Libs", "Lib"), page, size, parse_lib)
    }

    /// ListRecognitionEntities of one library.
    pub async fn list_recognition_entities(
        &self,
        algorithm: Algorithm,
        lib_id: &str,
        page: u32,
        size: u32,
    ) -> Result<Page<Entity>, ApiError> {
        let (page_s, size_s) = (page.to_string(), size.to_string());
        let params = [
            ("Algorithm", algorithm.as_str()),
            ("LibId", lib_id),
            ("PageNumber", page_s.as_str()),
            ("PageSize", size_s.as_str()),
        ];
        let v = self.ice("ListRecognitionEntities", &params).await?;
        parse_page(object(&v), ("Entities", "Entity"), page, size, parse_entity)
    }

    /// ListRecognitionSamples of one entity (`entity_id = "ANY"` with `entity_name` filters by name).
    pub async fn list_recognition_samples(
        &self,
        algorithm: Algorithm,
        lib_id: &str,
        entity_id: &str,
        entity_name: Option<&str>,
        page: u32,
        size: u32,
    ) -> Result<Page<Sample>, ApiError> {
        let (page_s, size_s) = (page.to_string(), size.to_string());
        let mut params = vec![
            ("Algorithm", algorithm.as_str()),
            ("LibId", lib_id),
            ("EntityId", entity_id),
        ];
        push_opt(&mut params, "EntityName", entity_name);
        params.extend([
            ("PageNumber", page_s.as_str()),
            ("PageSize", size_s.as_str()),
        ]);
        let v = self.ice("ListRecognitionSamples", &params).await?;
        parse_page(object(&v), ("Samples", "Sample"), page, size, parse_sample)
    }

    /// DeleteRecognitionLib: its entities and samples go with it.
    pub async fn delete_recognition_lib(
        &self,
        algorithm: Algorithm,
        lib_id: &str,
    ) -> Result<Ack, ApiError> {
        let params = [("Algorithm", algorithm.as_str()), ("LibId", lib_id)];
        Ok(Ack::from_answer(
            &self.ice("DeleteRecognitionLib", &params).await?,
        ))
    }

    pub async fn delete_recognition_entity(
        &self,
        algorithm: Algorithm,
        lib_id: &str,
        entity_id: &str,
    ) -> Result<Ack, ApiError> {
        let params = [
            ("Algorithm", algorithm.as_str()),
            ("LibId", lib_id),
            ("EntityId", entity_id),
        ];
        Ok(Ack::from_answer(
            &self.ice("DeleteRecognitionEntity", &params).await?,
        ))
    }

    pub async fn delete_recognition_sample(
        &self,
        algorithm: Algorithm,
        lib_id: &str,
        entity_id: &str,
        sample_id: &str,
    ) -> Result<Ack, ApiError> {
        let params = [
            ("Algorithm", algorithm.as_str()),
            ("LibId", lib_id),
            ("EntityId", entity_id),
            ("SampleId", sample_id),
        ];
        Ok(Ack::from_answer(
            &self.ice("DeleteRecognitionSample", &params).await?,
        ))
    }
}

type ItemParser<T> = fn(&Map<String, Value>, &str) -> Result<T, ApiError>;

/// A page; missing paging fields fall back on what was asked for and what came back.
fn parse_page<T>(
    obj: &Map<String, Value>,
    (wrapper, item): (&str, &str),
    page: u32,
    size: u32,
    parse_item: ItemParser<T>,
) -> Result<Page<T>, ApiError> {
    let items = list(obj, wrapper, item)
        .into_iter()
        .map(|i| parse_item(i, wrapper))
        .collect::<Result<Vec<T>, ApiError>>()?;
    let as_u32 = |key| number(obj, key).and_then(|n| u32::try_from(n).ok());
    Ok(Page {
        page_number: as_u32("PageNumber").unwrap_or(page),
        page_size: as_u32("PageSize").unwrap_or(size),
        total_count: number(obj, "TotalCount").unwrap_or(items.len() as u64),
        items,
    })
}

fn parse_lib(o: &Map<String, Value>, what: &str) -> Result<Lib, ApiError> {
    Ok(Lib {
        lib_id: required(o, "LibId", what)?,
        lib_name: text(o, "LibName"),
        lib_description: text(o, "LibDescription"),
    })
}

fn parse_entity(o: &Map<String, Value>, what: &str) -> Result<Entity, ApiError> {
    Ok(Entity {
        entity_id: required(o, "EntityId", what)?,
        entity_name: text(o, "EntityName"),
        entity_info: text(o, "EntityInfo"),
    })
}

fn parse_sample(o: &Map<String, Value>, what: &str) -> Result<Sample, ApiError> {
    Ok(Sample {
        sample_id: required(o, "SampleId", what)?,
        entity_id: text(o, "EntityId"),
        lib_id: text(o, "LibId"),
        image_url: text(o, "ImageUrl").map(|url| crate::image::shown(&url).into_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorClass;

    fn obj(json: &str) -> Map<String, Value> {
        serde_json::from_str::<Value>(json)
            .unwrap()
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn algorithm_round_trips_through_text_in_any_case() {
        for a in Algorithm::ALL {
            assert_eq!(a.to_string().parse::<Algorithm>().unwrap(), a);
            assert_eq!(
                a.to_string().to_uppercase().parse::<Algorithm>().unwrap(),
                a
            );
        }
        let err = "faces".parse::<Algorithm>().unwrap_err().to_string();
        assert!(err.contains("landmark, object, logo, face, label"), "{err}");
    }

    #[test]
    fn lib_page_is_read_through_its_wrapper_with_paging() {
        let o = obj(
            r#"{"Libs":{"Lib":[{"LibId":"L1","LibName":"n"}]},"PageNumber":2,"PageSize":"10","TotalCount":11}"#,
        );
        let p = parse_page(&o, ("Libs", "Lib"), 1, 50, parse_lib).unwrap();
        assert_eq!((p.page_number, p.page_size, p.total_count), (2, 10, 11));
        assert_eq!(p.items[0].lib_id, "L1");
        assert_eq!(p.items[0].lib_description, None);
    }

    #[test]
    fn absent_wrappers_and_paging_give_an_empty_page_as_asked() {
        for json in [
            r#"{}"#,
            r#"{"Entities":null}"#,
            r#"{"Entities":{}}"#,
            r#"{"Entities":{"Entity":[]}}"#,
        ] {
            let p = parse_page(&obj(json), ("Entities", "Entity"), 3, 20, parse_entity).unwrap();
            assert_eq!(
                (p.items.len(), p.page_number, p.page_size, p.total_count),
                (0, 3, 20, 0),
                "{json}"
            );
        }
    }

    #[test]
    fn samples_keep_their_entity_lib_and_url() {
        let o = obj(
            r#"{"Samples":{"Sample":[{"SampleId":"S","EntityId":"E","LibId":"L","ImageUrl":"u"}]}}"#,
        );
        let p = parse_page(&o, ("Samples", "Sample"), 1, 50, parse_sample).unwrap();
        assert_eq!(p.items[0].entity_id.as_deref(), Some("E"));
        assert_eq!(p.total_count, 1);
    }

    #[test]
    fn a_listed_item_without_its_id_makes_the_page_malformed() {
        let o = obj(r#"{"Samples":{"Sample":[{"EntityId":"E"}]}}"#);
        let e = parse_page(&o, ("Samples", "Sample"), 1, 50, parse_sample).unwrap_err();
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown);
    }
}
