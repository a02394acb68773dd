//! Which fault (if any) a request gets: a scripted queue per action (per method for OSS) first,
//! then independent draws at the configured rates from an RNG seeded by `seed` and a request
//! counter, so the same seed and the same request order give the same faults. The API's faults
//! and OSS's are two mixes ([`Mix`]) drawn from streams of their own.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::config::{Fault, FaultRates, OssFault, OssFaultRates};

/// Separates the fault, latency, OSS fault and id streams drawn from one seed.
const FAULT_STREAM: u64 = 0x6661_756c_7473_0001;
const LATENCY_STREAM: u64 = 0x6c61_7465_6e63_7902;
const OSS_FAULT_STREAM: u64 = 0x6f73_7366_6c74_0003;

/// A set of fault rates: which faults, at which rates, in draw order, from which stream.
pub(crate) trait Mix {
    type Fault: Copy;
    const STREAM: u64;
    fn each(&self) -> Vec<(Self::Fault, f64)>;
}

impl Mix for FaultRates {
    type Fault = Fault;
    const STREAM: u64 = FAULT_STREAM;
    fn each(&self) -> Vec<(Fault, f64)> {
        self.named().to_vec()
    }
}

impl Mix for OssFaultRates {
    type Fault = OssFault;
    const STREAM: u64 = OSS_FAULT_STREAM;
    fn each(&self) -> Vec<(OssFault, f64)> {
        self.named().to_vec()
    }
}

/// SplitMix64's finalizer: a bijection that spreads nearby inputs far apart.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rng(seed: u64, stream: u64, n: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(mix(seed ^ stream).wrapping_add(mix(n)))
}

/// The `n`-th draw: every kind is tried independently at its rate; the first in draw order
/// (`html_before`, `reset_before`, `error_before`, `stall`, `reset_after`, `error_after`,
/// `malformed_after`) that hits wins.
pub(crate) fn draw<M: Mix>(rates: &M, seed: u64, n: u64) -> Option<M::Fault> {
    let mut rng = rng(seed, M::STREAM, n);
    let mut chosen = None;
    for (fault, rate) in rates.each() {
        // Always draw, so one rate's change does not shift the others' outcomes.
        let hit = rng.random::<f64>() < rate;
        if hit && chosen.is_none() {
            chosen = Some(fault);
        }
    }
    chosen
}

/// The `n`-th request's delay: uniform in `latency ± jitter`, never negative.
pub(crate) fn latency(seed: u64, n: u64, latency_ms: u64, jitter_ms: u64) -> Duration {
    if jitter_ms == 0 {
        return Duration::from_millis(latency_ms);
    }
    let offset = rng(seed, LATENCY_STREAM, n).random_range(0..=2 * jitter_ms);
    Duration::from_millis((latency_ms + offset).saturating_sub(jitter_ms))
}

/// The mutable side: scripts, current rates, and the counters that make draws reproducible.
pub(crate) struct FaultPlan<M: Mix = FaultRates> {
    pub rates: M,
    scripts: HashMap<String, VecDeque<M::Fault>>,
    draws: u64,
    malformed: u64,
}

impl<M: Mix> FaultPlan<M> {
    pub fn new(rates: M) -> Self {
        FaultPlan {
            rates,
            scripts: HashMap::new(),
            draws: 0,
            malformed: 0,
        }
    }

    /// Queues faults for the next calls of `action`, after any already queued.
    pub fn script(&mut self, action: &str, faults: Vec<M::Fault>) {
        self.scripts
            .entry(action.to_string())
            .or_default()
            .extend(faults);
    }

    /// The fault for the next admitted call of `action`. Every admitted call advances the draw
    /// counter, scripted or not, so scripts do not shift the random faults that follow.
    pub fn next(&mut self, action: &str, seed: u64) -> Option<M::Fault> {
        let n = self.draws;
        self.draws += 1;
        if let Some(fault) = self.scripts.get_mut(action).and_then(VecDeque::pop_front) {
            return Some(fault);
        }
        draw(&self.rates, seed, n)
    }

    /// Which malformed body comes next (they cycle).
    pub fn next_malformed_turn(&mut self) -> u64 {
        let turn = self.malformed;
        self.malformed += 1;
        turn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy_rates() -> FaultRates {
        FaultRates {
            error_before: 0.1,
            error_after: 0.1,
            reset_before: 0.05,
            reset_after: 0.05,
            stall: 0.02,
            malformed_after: 0.05,
            html_before: 0.05,
            late: 0.02,
        }
    }

    fn sequence(seed: u64) -> Vec<Option<Fault>> {
        let mut plan = FaultPlan::new(busy_rates());
        (0..2000)
            .map(|_| plan.next("RegisterCustomFace", seed))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_and_another_seed_other_ones() {
        assert_eq!(sequence(7), sequence(7));
        assert_ne!(sequence(7), sequence(8));
    }

    #[test]
    fn drawn_fault_frequencies_follow_the_rates() {
        let faults = sequence(42);
        let count = |f: Fault| faults.iter().filter(|x| **x == Some(f)).count();
        // error_before is 10% but only reached when html_before and reset_before miss (~90%).
        let errors = count(Fault::ErrorBefore);
        assert!((120..240).contains(&errors), "{errors}");
        assert!(count(Fault::Stall) > 0 && count(Fault::MalformedAfter) > 0);
        assert_eq!(count(Fault::Throttle), 0, "throttle is script-only");
    }

    #[test]
    fn zero_rates_never_fault_and_full_rates_always_do() {
        let mut none = FaultPlan::new(FaultRates::default());
        assert!((0..500).all(|_| none.next("X", 1).is_none()));
        let mut all = FaultPlan::new(FaultRates {
            error_after: 1.0,
            ..FaultRates::default()
        });
        assert!((0..500).all(|_| all.next("X", 1) == Some(Fault::ErrorAfter)));
    }

    #[test]
    fn scripted_faults_come_first_in_order_and_only_for_their_action() {
        let mut plan = FaultPlan::new(FaultRates::default());
        plan.script("A", vec![Fault::ResetAfter, Fault::Throttle]);
        assert_eq!(plan.next("B", 1), None);
        assert_eq!(plan.next("A", 1), Some(Fault::ResetAfter));
        assert_eq!(plan.next("A", 1), Some(Fault::Throttle));
        assert_eq!(plan.next("A", 1), None);
    }

    #[test]
    fn oss_faults_draw_from_their_own_stream_at_their_rates() {
        let mut plan = FaultPlan::new(OssFaultRates {
            error: 0.2,
            ..OssFaultRates::default()
        });
        let faults: Vec<Option<OssFault>> = (0..1000).map(|_| plan.next("GET", 9)).collect();
        let errors = faults
            .iter()
            .filter(|f| **f == Some(OssFault::Error))
            .count();
        assert!((140..260).contains(&errors), "{errors}");
        assert!(
            faults
                .iter()
                .all(|f| matches!(f, None | Some(OssFault::Error)))
        );
        plan.script("PUT", vec![OssFault::Reset]);
        assert_eq!(plan.next("PUT", 9), Some(OssFault::Reset));
    }

    #[test]
    fn latency_stays_within_the_jitter_band_and_is_reproducible() {
        let delays: Vec<Duration> = (0..500).map(|n| latency(3, n, 40, 20)).collect();
        assert!(delays.iter().all(|d| (20..=60).contains(&d.as_millis())));
        assert!(
            delays.iter().any(|d| d.as_millis() < 30) && delays.iter().any(|d| d.as_millis() > 50)
        );
        assert_eq!(
            delays,
            (0..500).map(|n| latency(3, n, 40, 20)).collect::<Vec<_>>()
        );
        assert_eq!(latency(3, 0, 5, 20), latency(3, 0, 5, 20));
        assert_eq!(latency(1, 9, 0, 0), Duration::ZERO);
    }
}
