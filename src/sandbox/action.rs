//! The actions the sandbox knows, which service each belongs to, and the `Action`/`Version` check.

use super::params::Params;
use super::response::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Mts,
    Ice,
}

impl Service {
    pub fn version(self) -> &'static str {
        match self {
            Service::Mts => "2014-06-18",
            Service::Ice => "2020-11-09",
        }
    }

    /// The `HostId` of error bodies.
    pub fn host_id(self) -> &'static str {
        match self {
            Service::Mts => "mts.cn-shanghai.aliyuncs.com",
            Service::Ice => "ice.cn-shanghai.aliyuncs.com",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    RegisterCustomFace,
    ListCustomPersons,
    UnregisterCustomFace,
    TagCustomPerson,
    CreateRecognitionLib,
    CreateRecognitionEntity,
    CreateRecognitionSample,
    ListRecognitionLibs,
    ListRecognitionEntities,
    ListRecognitionSamples,
    DeleteRecognitionLib,
    DeleteRecognitionEntity,
    DeleteRecognitionSample,
}

impl Action {
    const ALL: [Action; 13] = [
        Action::RegisterCustomFace,
        Action::ListCustomPersons,
        Action::UnregisterCustomFace,
        Action::TagCustomPerson,
        Action::CreateRecognitionLib,
        Action::CreateRecognitionEntity,
        Action::CreateRecognitionSample,
        Action::ListRecognitionLibs,
        Action::ListRecognitionEntities,
        Action::ListRecognitionSamples,
        Action::DeleteRecognitionLib,
        Action::DeleteRecognitionEntity,
        Action::DeleteRecognitionSample,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::RegisterCustomFace => "RegisterCustomFace",
            Action::ListCustomPersons => "ListCustomPersons",
            Action::UnregisterCustomFace => "UnregisterCustomFace",
            Action::TagCustomPerson => "TagCustomPerson",
            Action::CreateRecognitionLib => "CreateRecognitionLib",
            Action::CreateRecognitionEntity => "CreateRecognitionEntity",
            Action::CreateRecognitionSample => "CreateRecognitionSample",
            Action::ListRecognitionLibs => "ListRecognitionLibs",
            Action::ListRecognitionEntities => "ListRecognitionEntities",
            Action::ListRecognitionSamples => "ListRecognitionSamples",
            Action::DeleteRecognitionLib => "DeleteRecognitionLib",
            Action::DeleteRecognitionEntity => "DeleteRecognitionEntity",
            Action::DeleteRecognitionSample => "DeleteRecognitionSample",
        }
    }

    pub fn service(self) -> Service {
        match self {
            Action::RegisterCustomFace
            | Action::ListCustomPersons
            | Action::UnregisterCustomFace
            | Action::TagCustomPerson => Service::Mts,
            _ => Service::Ice,
        }
    }

    /// Whether a success changes the state (what `Stats::applied` counts).
    pub fn changes_state(self) -> bool {
        !matches!(
            self,
            Action::ListCustomPersons
                | Action::ListRecognitionLibs
                | Action::ListRecognitionEntities
                | Action::ListRecognitionSamples
        )
    }

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The requested action, if known and asked for with its service's `Version`.
    pub fn resolve(params: &Params) -> Result<Action, ApiError> {
        let name = params
            .non_empty("Action")
            .ok_or_else(|| ApiError::missing("Action"))?;
        let action = Action::parse(name).ok_or_else(|| {
            ApiError::new(
                404,
                "InvalidAction.NotFound",
                format!("Specified api \"{name}\" is not found, please check your url and method."),
            )
        })?;
        let version = params
            .non_empty("Version")
            .ok_or_else(|| ApiError::missing("Version"))?;
        if version != action.service().version() {
            return Err(ApiError::invalid(
                "InvalidVersion",
                format!("Specified parameter Version \"{version}\" is not valid for {name}."),
            ));
        }
        Ok(action)
    }
}

/// The `HostId` for an answer to `params`, guessed from the action or the version.
pub(crate) fn host_id(params: &Params) -> &'static str {
    let service = match params.get("Action").and_then(Action::parse) {
        Some(action) => action.service(),
        None if params.get("Version") == Some(Service::Ice.version()) => Service::Ice,
        None => Service::Mts,
    };
    service.host_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(pairs: &[(&str, &str)]) -> Result<Action, &'static str> {
        Action::resolve(&Params::from_pairs(pairs)).map_err(|e| e.code)
    }

    #[test]
    fn actions_need_their_own_services_version() {
        let ok = resolve(&[("Action", "RegisterCustomFace"), ("Version", "2014-06-18")]);
        assert_eq!(ok, Ok(Action::RegisterCustomFace));
        let ice = resolve(&[("Action", "ListRecognitionLibs"), ("Version", "2020-11-09")]);
        assert_eq!(ice, Ok(Action::ListRecognitionLibs));
        assert_eq!(
            resolve(&[("Action", "RegisterCustomFace"), ("Version", "2020-11-09")]),
            Err("InvalidVersion")
        );
        assert_eq!(
            resolve(&[("Action", "RegisterCustomFace")]),
            Err("MissingParameter")
        );
    }

    #[test]
    fn unknown_actions_are_not_found() {
        let err = Action::resolve(&Params::from_pairs(&[
            ("Action", "SubmitJobs"),
            ("Version", "2014-06-18"),
        ]))
        .unwrap_err();
        assert_eq!((err.status, err.code), (404, "InvalidAction.NotFound"));
        assert_eq!(
            resolve(&[("Version", "2014-06-18")]),
            Err("MissingParameter")
        );
    }

    #[test]
    fn every_action_round_trips_through_its_name() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.name()), Some(action));
        }
    }
}
