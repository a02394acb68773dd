//! Everything behind the sandbox's one lock: the emulated services, nonces, rate windows, fault
//! plan, id generator and counters, and the dispatch of an admitted action to its service.

use serde_json::{Map, Value};

use super::action::Action;
use super::auth::NonceCache;
use super::config::{Fault, SandboxConfig};
use super::faults::FaultPlan;
use super::ice::IceState;
use super::ids::IdGen;
use super::mts::MtsState;
use super::params::Params;
use super::ratelimit::RateLimiter;
use super::response::ApiError;
use super::snapshot::{StateSnapshot, Stats};

pub(crate) struct State {
    pub mts: MtsState,
    pub ice: IceState,
    pub nonces: NonceCache,
    pub limiter: RateLimiter,
    pub plan: FaultPlan,
    pub stats: Stats,
    pub ids: IdGen,
    pub mts_qps: u32,
    pub ice_qps: u32,
    /// Per action, when the requests accepted in the last `peak_window` arrived.
    recent: std::collections::HashMap<&'static str, std::collections::VecDeque<std::time::Instant>>,
    peak_window: std::time::Duration,
}

impl State {
    pub fn new(config: &SandboxConfig) -> Self {
        State {
            mts: MtsState::default(),
            ice: IceState::default(),
            nonces: NonceCache::default(),
            limiter: RateLimiter::default(),
            plan: FaultPlan::new(config.faults),
            stats: Stats::default(),
            ids: IdGen::new(config.seed),
            mts_qps: config.mts_qps,
            ice_qps: config.ice_qps,
            recent: Default::default(),
            peak_window: config.peak_window,
        }
    }

    /// Requests per second allowed for `action` (0 = unlimited).
    pub fn limit(&self, action: Action) -> u32 {
        match action.service() {
            super::action::Service::Mts => self.mts_qps,
            super::action::Service::Ice => self.ice_qps,
        }
    }

    pub fn count_fault(&mut self, fault: Fault) {
        bump(&mut self.stats.faults, fault.name());
    }

    pub fn count_accepted(&mut self, action: Action, now: std::time::Instant) {
        bump(&mut self.stats.by_action, action.name());
        let window = self.peak_window;
        let recent = self.recent.entry(action.name()).or_default();
        while recent
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= window)
        {
            recent.pop_front();
        }
        recent.push_back(now);
        let peak = self
            .stats
            .peak_per_second
            .entry(action.name().to_string())
            .or_default();
        *peak = (*peak).max(recent.len() as u64);
    }

    /// Runs `action`; counts it as applied when it changed the state.
    pub fn apply(
        &mut self,
        action: Action,
        params: &Params,
        max_faces: usize,
    ) -> Result<Map<String, Value>, ApiError> {
        let ids = &mut self.ids;
        let result = match action {
            Action::RegisterCustomFace => self.mts.register(params, max_faces, ids),
            Action::ListCustomPersons => self.mts.list(params),
            Action::UnregisterCustomFace => self.mts.unregister(params),
            Action::TagCustomPerson => self.mts.tag(params),
            Action::CreateRecognitionLib => self.ice.create_lib(params, ids),
            Action::CreateRecognitionEntity => self.ice.create_entity(params, ids),
            Action::CreateRecognitionSample => self.ice.create_sample(params, ids),
            Action::ListRecognitionLibs => self.ice.list_libs(params),
            Action::ListRecognitionEntities => self.ice.list_entities(params),
            Action::ListRecognitionSamples => self.ice.list_samples(params),
            Action::DeleteRecognitionLib => self.ice.delete_lib(params),
            Action::DeleteRecognitionEntity => self.ice.delete_entity(params),
            Action::DeleteRecognitionSample => self.ice.delete_sample(params),
        };
        if result.is_ok() && action.changes_state() {
            self.stats.applied += 1;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let window = self
                .stats
                .applied_by_action
                .entry(action.name().to_string())
                .or_default();
            if window.count == 0 {
                window.first_ms = now_ms;
            }
            window.count += 1;
            window.last_ms = now_ms;
        }
        result
    }

    pub fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            mts: self.mts.snapshot(),
            ice: self.ice.snapshot(),
            stats: self.stats.clone(),
            oss: Default::default(),
        }
    }
}

fn bump(counts: &mut std::collections::BTreeMap<String, u64>, name: &str) {
    match counts.get_mut(name) {
        Some(count) => *count += 1,
        None => {
            counts.insert(name.to_string(), 1);
        }
    }
}
