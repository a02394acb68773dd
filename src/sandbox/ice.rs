//! The ICE custom recognition libraries (api-notes §2): libs (scoped per Algorithm) → entities →
//! samples, with server-generated ids, byte-length limits, paging, and cascading deletes.
//! Every refusal is 400 `InvalidParameter`, the one client error ICE documents.

use serde_json::{Map, Value, json};

use super::ids::IdGen;
use super::ordered::Ordered;
use super::params::{Params, is_web_url};
use super::response::ApiError;
use super::snapshot::{EntitySnapshot, IceSnapshot, LibSnapshot, SampleSnapshot};

const ALGORITHMS: [&str; 5] = ["landmark", "object", "logo", "face", "label"];
const MAX_PAGE_SIZE: usize = 50;
/// `EntityId=ANY` in `ListRecognitionSamples`: every entity, optionally filtered by EntityName.
const ANY: &str = "ANY";

#[derive(Default)]
pub(crate) struct IceState {
    libs: Ordered<Lib>,
    samples_created: u64,
}

struct Lib {
    algorithm: &'static str,
    lib_id: String,
    name: String,
    description: Option<String>,
    entities: Ordered<Entity>,
}

struct Entity {
    entity_id: String,
    name: String,
    info: Option<String>,
    samples: Ordered<Sample>,
}

struct Sample {
    /// Creation rank across the lib, so samples of several entities list in creation order.
    rank: u64,
    sample_id: String,
    image_url: Option<String>,
    label_prompt: Option<String>,
}

type Fields = Result<Map<String, Value>, ApiError>;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid("InvalidParameter", message)
}

fn required<'p>(params: &'p Params, name: &str) -> Result<&'p str, ApiError> {
    params
        .non_empty(name)
        .ok_or_else(|| invalid(format!("{name} is mandatory for this action.")))
}

fn algorithm(params: &Params) -> Result<&'static str, ApiError> {
    let given = params.get("Algorithm").unwrap_or_default();
    ALGORITHMS.into_iter().find(|a| *a == given).ok_or_else(|| {
        invalid(format!(
            "Algorithm must be one of {}, not \"{given}\".",
            ALGORITHMS.join(", ")
        ))
    })
}

/// A text of `min..=max` UTF-8 bytes; `None` when absent and `min` is 0.
fn text<'p>(
    params: &'p Params,
    name: &str,
    min: usize,
    max: usize,
) -> Result<Option<&'p str>, ApiError> {
    match params.get(name) {
        None if min == 0 => Ok(None),
        None => Err(invalid(format!("{name} is mandatory for this action."))),
        Some(v) if v.len() < min || v.len() > max => Err(invalid(format!(
            "{name} must be {min} to {max} bytes of UTF-8, not {}.",
            v.len()
        ))),
        Some(v) => Ok(Some(v)),
    }
}

/// `(PageNumber, PageSize)`: both required, number ≥ 1, size 1–50.
fn paging(params: &Params) -> Result<(usize, usize), ApiError> {
    let number = required(params, "PageNumber")?
        .parse::<usize>()
        .ok()
        .filter(|n| *n >= 1);
    let number = number.ok_or_else(|| invalid("PageNumber must be an integer of at least 1."))?;
    let size = required(params, "PageSize")?.parse::<usize>().ok();
    let size = size
        .filter(|s| (1..=MAX_PAGE_SIZE).contains(s))
        .ok_or_else(|| {
            invalid(format!(
                "PageSize must be an integer from 1 to {MAX_PAGE_SIZE}."
            ))
        })?;
    Ok((number, size))
}

/// One page of `items` with the paging fields, the array wrapped as `{outer: {inner: [...]}}`.
fn page(
    items: Vec<Value>,
    (number, size): (usize, usize),
    outer: &str,
    inner: &str,
) -> Map<String, Value> {
    let total = items.len();
    let shown: Vec<Value> = items
        .into_iter()
        .skip((number - 1).saturating_mul(size))
        .take(size)
        .collect();
    let mut fields = Map::new();
    fields.insert(outer.into(), json!({ inner: shown }));
    fields.insert("PageNumber".into(), json!(number));
    fields.insert("PageSize".into(), json!(size));
    fields.insert("TotalCount".into(), json!(total));
    fields
}

fn one(name: &str, id: String) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(name.into(), Value::String(id));
    fields
}

fn put(object: &mut Map<String, Value>, name: &str, value: &Option<String>) {
    if let Some(value) = value {
        object.insert(name.into(), json!(value));
    }
}

impl IceState {
    fn lib(&self, params: &Params) -> Result<&Lib, ApiError> {
        let algorithm = algorithm(params)?;
        let lib_id = required(params, "LibId")?;
        self.libs
            .get(lib_id)
            .filter(|lib| lib.algorithm == algorithm)
            .ok_or_else(|| {
                invalid(format!(
                    "LibId \"{lib_id}\" does not exist for Algorithm {algorithm}."
                ))
            })
    }

    fn lib_mut(&mut self, params: &Params) -> Result<&mut Lib, ApiError> {
        self.lib(params)?;
        Ok(self
            .libs
            .get_mut(params.get("LibId").unwrap_or_default())
            .expect("checked just above"))
    }

    pub fn create_lib(&mut self, params: &Params, ids: &mut IdGen) -> Fields {
        let algorithm = algorithm(params)?;
        let name = text(params, "LibName", 1, 64)?.unwrap_or_default();
        let description = text(params, "LibDescription", 0, 128)?;
        let lib_id = ids.next_id();
        let lib = Lib {
            algorithm,
            lib_id: lib_id.clone(),
            name: name.to_string(),
            description: description.map(str::to_string),
            entities: Ordered::default(),
        };
        self.libs.push(&lib_id, lib);
        Ok(one("LibId", lib_id))
    }

    pub fn create_entity(&mut self, params: &Params, ids: &mut IdGen) -> Fields {
        let lib = self.lib_mut(params)?;
        let name = text(params, "EntityName", 1, 64)?.unwrap_or_default();
        let info = text(params, "EntityInfo", 0, 256)?;
        if let Some(info) = info
            && serde_json::from_str::<serde::de::IgnoredAny>(info).is_err()
        {
            return Err(invalid("EntityInfo must be JSON text."));
        }
        let entity_id = ids.next_id();
        let entity = Entity {
            entity_id: entity_id.clone(),
            name: name.to_string(),
            info: info.map(str::to_string),
            samples: Ordered::default(),
        };
        lib.entities.push(&entity_id, entity);
        Ok(one("EntityId", entity_id))
    }

    pub fn create_sample(&mut self, params: &Params, ids: &mut IdGen) -> Fields {
        let rank = self.samples_created;
        let lib = self.lib_mut(params)?;
        let entity_id = required(params, "EntityId")?;
        let entity = lib.entities.get_mut(entity_id).ok_or_else(|| {
            invalid(format!(
                "EntityId \"{entity_id}\" does not exist in this lib."
            ))
        })?;
        let image_url = params.non_empty("ImageUrl");
        let label_prompt = params.non_empty("LabelPrompt");
        match image_url {
            None if lib.algorithm == "label" && label_prompt.is_some() => {}
            None => return Err(invalid("ImageUrl is mandatory for this action.")),
            Some(url) if !is_web_url(url) => {
                return Err(invalid("ImageUrl must be an absolute http or https URL."));
            }
            Some(url)
                if lib.algorithm == "face"
                    && (url.contains("noface") || url.contains("twofaces")) =>
            {
                return Err(invalid("ImageUrl: exactly one frontal face required."));
            }
            Some(_) => {}
        }
        let sample_id = ids.next_id();
        let sample = Sample {
            rank,
            sample_id: sample_id.clone(),
            image_url: image_url.map(str::to_string),
            label_prompt: label_prompt.map(str::to_string),
        };
        entity.samples.push(&sample_id, sample);
        self.samples_created += 1;
        Ok(one("SampleId", sample_id))
    }

    pub fn list_libs(&self, params: &Params) -> Fields {
        let algorithm = algorithm(params)?;
        let paging = paging(params)?;
        let wanted: Option<Vec<&str>> = params.non_empty("LibId").map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .collect()
        });
        let libs = self
            .libs
            .values()
            .filter(|lib| lib.algorithm == algorithm)
            .filter(|lib| {
                wanted
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&lib.lib_id.as_str()))
            })
            .map(|lib| {
                let mut object = Map::new();
                object.insert("LibId".into(), json!(lib.lib_id));
                object.insert("LibName".into(), json!(lib.name));
                put(&mut object, "LibDescription", &lib.description);
                Value::Object(object)
            })
            .collect();
        Ok(page(libs, paging, "Libs", "Lib"))
    }

    pub fn list_entities(&self, params: &Params) -> Fields {
        let lib = self.lib(params)?;
        let paging = paging(params)?;
        let entities = lib
            .entities
            .values()
            .map(|entity| {
                let mut object = Map::new();
                object.insert("EntityId".into(), json!(entity.entity_id));
                object.insert("EntityName".into(), json!(entity.name));
                put(&mut object, "EntityInfo", &entity.info);
                Value::Object(object)
            })
            .collect();
        Ok(page(entities, paging, "Entities", "Entity"))
    }

    pub fn list_samples(&self, params: &Params) -> Fields {
        let lib = self.lib(params)?;
        let entity_id = required(params, "EntityId")?;
        let paging = paging(params)?;
        let entities: Vec<&Entity> = if entity_id == ANY {
            let name = params.non_empty("EntityName");
            lib.entities
                .values()
                .filter(|e| name.is_none_or(|n| n == e.name))
                .collect()
        } else {
            let entity = lib.entities.get(entity_id);
            vec![entity.ok_or_else(|| {
                invalid(format!(
                    "EntityId \"{entity_id}\" does not exist in this lib."
                ))
            })?]
        };
        let mut samples: Vec<(&Entity, &Sample)> = entities
            .iter()
            .flat_map(|e| e.samples.values().map(move |s| (*e, s)))
            .collect();
        samples.sort_by_key(|(_, s)| s.rank);
        let samples = samples
            .into_iter()
            .map(|(entity, sample)| {
                let mut object = Map::new();
                object.insert("SampleId".into(), json!(sample.sample_id));
                object.insert("EntityId".into(), json!(entity.entity_id));
                object.insert("LibId".into(), json!(lib.lib_id));
                put(&mut object, "ImageUrl", &sample.image_url);
                put(&mut object, "LabelPrompt", &sample.label_prompt);
                Value::Object(object)
            })
            .collect();
        Ok(page(samples, paging, "Samples", "Sample"))
    }

    pub fn delete_lib(&mut self, params: &Params) -> Fields {
        let lib_id = self.lib(params)?.lib_id.clone();
        self.libs.remove(&lib_id);
        Ok(Map::new())
    }

    pub fn delete_entity(&mut self, params: &Params) -> Fields {
        let lib = self.lib_mut(params)?;
        let entity_id = required(params, "EntityId")?;
        lib.entities.remove(entity_id).ok_or_else(|| {
            invalid(format!(
                "EntityId \"{entity_id}\" does not exist in this lib."
            ))
        })?;
        Ok(Map::new())
    }

    pub fn delete_sample(&mut self, params: &Params) -> Fields {
        let lib = self.lib_mut(params)?;
        let entity_id = required(params, "EntityId")?;
        let sample_id = required(params, "SampleId")?;
        let entity = lib.entities.get_mut(entity_id).ok_or_else(|| {
            invalid(format!(
                "EntityId \"{entity_id}\" does not exist in this lib."
            ))
        })?;
        entity.samples.remove(sample_id).ok_or_else(|| {
            invalid(format!(
                "SampleId \"{sample_id}\" does not exist in this entity."
            ))
        })?;
        Ok(Map::new())
    }

    pub fn snapshot(&self) -> IceSnapshot {
        let libs = self
            .libs
            .values()
            .map(|lib| LibSnapshot {
                algorithm: lib.algorithm.to_string(),
                lib_id: lib.lib_id.clone(),
                lib_name: lib.name.clone(),
                lib_description: lib.description.clone(),
                entities: lib.entities.values().map(entity_snapshot).collect(),
            })
            .collect();
        IceSnapshot { libs }
    }
}

fn entity_snapshot(entity: &Entity) -> EntitySnapshot {
    EntitySnapshot {
        entity_id: entity.entity_id.clone(),
        entity_name: entity.name.clone(),
        entity_info: entity.info.clone(),
        samples: entity
            .samples
            .values()
            .map(|s| SampleSnapshot {
                sample_id: s.sample_id.clone(),
                image_url: s.image_url.clone(),
                label_prompt: s.label_prompt.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
#[path = "ice_tests.rs"]
mod tests;
