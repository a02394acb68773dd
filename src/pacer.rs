//! Pacing: a permit before every request (retries and look-ups included), so that no sliding
//! one-second window sees more than the budget, slowing down on throttling and recovering gradually.
//! A throttling answer that comes alone at the full pace widens the window's margin instead (the
//! two clocks disagreed at a window's edge); only a storm of them slows the pace.
//!
//! An exact sliding window on tokio's clock: the pacer remembers when its last `budget` permits
//! went out, and a permit goes out no earlier than one window after the permit `N` places before
//! it (`N` the permits a window may hold now). Within that bound permits follow an even schedule
//! (in small groups, one timer wake-up for each: four every 40 ms at 100/s), so the server sees
//! a steady stream rather than a burst at the top of each window. Waiters queue on a fair async mutex: only the one at the
//! head sleeps on a timer, and it wakes alone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock;

/// The span `N` permits must leave between them: the server's one second plus a margin for
/// arrival jitter, so a request that travels 5 ms faster than the one `N` places before it still
/// lands outside that one's window. 5 ms costs 0.5 % of the budget, leaving 0.5 % for late timers.
const WINDOW: Duration = Duration::from_millis(1005);
/// Multiplicative slow-down on a throttling answer, and the floor as a fraction of the budget.
const BACKOFF_FACTOR: f64 = 0.7;
const MIN_FRACTION: f64 = 0.1;
/// Permits go out in groups, one timer wake-up for each: `allowance / GROUP_RATE` permits (one
/// to `MAX_GROUP`), so that from 25/s to 100/s the pacer wakes 25 to 50 times a second instead
/// of once per request (at 100/s four at once every 40 ms, at 50/s pairs); above 100/s it wakes
/// `allowance / 4` times. Each wake-up, and each answer that comes alone, costs a context
/// switch: fewer of them is the larger part of a paced request's CPU. `MAX_GROUP` keeps a
/// higher budget from bursting.
const GROUP_RATE: f64 = 25.0;
const MAX_GROUP: f64 = 4.0;
/// Answers to requests sent before a slow-down still arrive for about a round trip: within this
/// long of the last slow-down (or during a pause, when nothing is sent) they slow down no further.
const SLOW_DOWN_SPACING: Duration = Duration::from_secs(1);
/// An isolated throttling answer at the full pace (none in this long before it) most likely
/// means the server's clock and ours disagree at a window's edge by more than the margin (a
/// request delayed on its way): the margin widens by `WIDEN`, up to `MAX_WIDENED` in all, instead
/// of the pace dropping by a third. A second answer within this long is a storm, and slows down.
const STORM_SPACING: Duration = Duration::from_secs(10);
const WIDEN: Duration = Duration::from_millis(5);
const MAX_WIDENED: Duration = Duration::from_millis(20);
/// Recovery: for every this long without throttling, step up by `RECOVERY_STEP` of the budget.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(2);
const RECOVERY_STEP: f64 = 0.1;
/// The pause after a throttling answer without a hint, and the longest pause a hint can ask for.
const DEFAULT_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Permits for one stream of requests. Several `Pacer`s may share one window (see [`PacerSet`]);
/// each counts the permits it handed out.
pub struct Pacer {
    window: Arc<Window>,
    granted: AtomicU64,
}

/// The sliding window and its throttling state, shared by every pacer drawing on one budget.
struct Window {
    /// Permits per window at most; 0 = unlimited.
    budget: u32,
    /// The queue of waiters, first come first served; its holder is the one that sleeps.
    gate: tokio::sync::Mutex<()>,
    /// Wakes the sleeping holder when a throttling answer moves its slot.
    moved: Notify,
    state: Mutex<State>,
}

struct State {
    /// Permits per window now: the budget, or less after throttling (need not be whole).
    allowance: f64,
    /// When the last `budget` permits went out, oldest first (allocated once, never grows).
    sent: VecDeque<Instant>,
    /// The slot of the last permit on the even schedule.
    last_slot: Option<Instant>,
    paused_until: Option<Instant>,
    last_slow_down: Option<Instant>,
    /// The last throttling answer or recovery step.
    calm_since: Instant,
    /// How much isolated throttling answers widened the margin (see [`STORM_SPACING`]), and
    /// when it last did.
    widened: Duration,
    last_widened: Option<Instant>,
}

impl Pacer {
    /// `qps` permits in any sliding second; 0 means unlimited (`acquire` returns at once).
    pub fn new(qps: u32) -> Pacer {
        Pacer::sharing(Arc::new(Window::new(qps)))
    }

    fn sharing(window: Arc<Window>) -> Pacer {
        Pacer {
            window,
            granted: AtomicU64::new(0),
        }
    }

    pub fn unlimited(&self) -> bool {
        self.window.budget == 0
    }

    /// Waits for the permit to start one request.
    pub async fn acquire(&self) {
        self.take(None).await;
    }

    /// Waits for a permit, or for `cancel`: false when cancelled first, and then no permit is
    /// taken. A pause after throttling is cut short too.
    pub async fn acquire_or_cancel(&self, cancel: &CancellationToken) -> bool {
        self.take(Some(cancel)).await
    }

    /// The service said "too fast" to a request that left at `sent`: slow down (or widen the
    /// margin), and pause everyone for the hint (or a moment).
    pub fn throttled(&self, retry_after: Option<Duration>, sent: Instant) {
        let window = &*self.window;
        if window.budget == 0 {
            return;
        }
        let now = clock::instant();
        let pause = retry_after.unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE);
        window.lock().throttled(window.budget, now, pause, sent);
        window.moved.notify_waiters();
    }

    /// Counts the window up to `since` as full — another process may have used all of it (a
    /// run killed just before this one started) — so the first permit goes out one window
    /// after `since`, and the schedule goes on evenly from there.
    pub fn assume_full_window(&self, since: Instant) {
        let window = &*self.window;
        if window.budget == 0 {
            return;
        }
        {
            let mut state = window.lock();
            state.paused_until = state.paused_until.max(Some(since + state.window()));
        }
        window.moved.notify_waiters();
    }

    /// The pace allowed now in requests per second (0 when unlimited), for the progress display.
    pub fn current_rate(&self) -> f64 {
        let window = &*self.window;
        if window.budget == 0 {
            return 0.0;
        }
        let mut state = window.lock();
        state.recover(window.budget, clock::instant());
        state.allowance / state.window().as_secs_f64()
    }

    /// Permits this pacer has handed out (for "requests per action" in the summary).
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    async fn take(&self, cancel: Option<&CancellationToken>) -> bool {
        if cancel.is_some_and(CancellationToken::is_cancelled) {
            return false;
        }
        let cancelled = async {
            match cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(cancelled);
        let window = &*self.window;
        if window.budget > 0 {
            let asked = clock::instant();
            let _turn = tokio::select! {
                biased;
                () = &mut cancelled => return false,
                turn = window.gate.lock() => turn,
            };
            loop {
                // Listening before reading the slot: a throttling answer in between still wakes us.
                let moved = window.moved.notified();
                tokio::pin!(moved);
                moved.as_mut().enable();
                let now = clock::instant();
                let Err(slot) = window.lock().try_take(window.budget, now, asked) else {
                    break;
                };
                tokio::select! {
                    biased;
                    () = &mut cancelled => return false,
                    () = moved => {}
                    () = clock::sleep(slot - now) => {}
                }
            }
        }
        self.granted.fetch_add(1, Ordering::Relaxed);
        true
    }
}

impl Window {
    fn new(budget: u32) -> Window {
        Window {
            budget,
            gate: tokio::sync::Mutex::new(()),
            moved: Notify::new(),
            state: Mutex::new(State {
                allowance: f64::from(budget),
                sent: VecDeque::with_capacity(budget as usize),
                last_slot: None,
                paused_until: None,
                last_slow_down: None,
                calm_since: clock::instant(),
                widened: Duration::ZERO,
                last_widened: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// The span the full budget's permits must leave between them now: a second, the margin,
    /// and what isolated throttling answers added to the margin.
    fn window(&self) -> Duration {
        WINDOW + self.widened
    }

    /// Permits a window may hold now, and the span they must keep between them (one window at
    /// the full budget; longer when slowed down to a fraction of a permit more than a whole).
    fn shape(&self, budget: u32) -> (usize, Duration) {
        // The tolerance keeps 0.7 × 100 from counting as 71 permits.
        let n = (self.allowance - 1e-9).ceil().clamp(1.0, f64::from(budget));
        (n as usize, self.window().mul_f64(n / self.allowance))
    }

    /// Takes the next permit if it may go out `now` (asked for at `asked`); otherwise the
    /// instant to look again.
    fn try_take(&mut self, budget: u32, now: Instant, asked: Instant) -> Result<(), Instant> {
        self.recover(budget, now);
        let (n, span) = self.shape(budget);
        // The bound: the `n`-th latest permit must have left the span, and no pause is on.
        let earlier = self.sent.len().checked_sub(n).map(|i| self.sent[i] + span);
        let bound = self.paused_until.max(earlier);
        // The even schedule, one gap per permit. A permit may go out early with the others of
        // its group (see `GROUP_RATE`): one timer wake-up for the group.
        let gap = span / n as u32;
        let schedule = self.last_slot.map(|last| last + gap);
        let early = gap * (group_size(self.allowance) - 1);
        let slot = bound.max(schedule);
        if bound.is_some_and(|at| at > now) || schedule.is_some_and(|at| at > now + early) {
            return Err(slot.expect("a bound or a schedule lies ahead"));
        }
        if self.sent.len() == budget as usize {
            self.sent.pop_front();
        }
        // The window counts real departures, late timers included: that is the guarantee.
        self.sent.push_back(now);
        // The schedule goes on from the slot, not from when a late timer fired, so lateness
        // costs no permits; a permit asked for after its slot starts the schedule afresh.
        self.last_slot = Some(slot.map_or(asked, |slot| slot.max(asked)));
        Ok(())
    }

    fn throttled(&mut self, budget: u32, now: Instant, pause: Duration, sent: Instant) {
        self.recover(budget, now);
        // An answer to a request that left before the pacer last reacted (widened or slowed
        // down) is about the schedule that reaction corrected: the rest of a group sent at
        // one instant, or requests already in flight, meet the same edge. It pauses, and
        // changes nothing else: one reaction per event, not one per answer.
        let reacted = self.last_widened.max(self.last_slow_down);
        if reacted.is_some_and(|at| sent < at) {
            self.paused_until = self.paused_until.max(Some(now + pause));
            return;
        }
        let paused = self.paused_until.is_some_and(|until| until > now);
        let recent = self
            .last_slow_down
            .is_some_and(|at| now.saturating_duration_since(at) < SLOW_DOWN_SPACING);
        // Alone: at the full pace, and sending at it for `STORM_SPACING` since the last answer
        // (a pause sends nothing, so it counts from the pause's end).
        let heard = [self.last_slow_down, self.last_widened, self.paused_until]
            .into_iter()
            .flatten()
            .max();
        let alone = self.allowance >= f64::from(budget)
            && heard.is_none_or(|at| now.saturating_duration_since(at) >= STORM_SPACING);
        // Answers just after a slow-down are about requests sent at the old pace; after a
        // widening the pace is the same, so any further answer is a storm's.
        let widened_last = self
            .last_widened
            .is_some_and(|w| self.last_slow_down.is_none_or(|s| w > s));
        if alone && self.widened < MAX_WIDENED {
            self.widened += WIDEN;
            self.last_widened = Some(now);
        } else if widened_last || (!paused && !recent) {
            self.allowance =
                (self.allowance * BACKOFF_FACTOR).max(f64::from(budget) * MIN_FRACTION);
            self.last_slow_down = Some(now);
        }
        self.paused_until = self.paused_until.max(Some(now + pause));
        self.calm_since = now;
    }

    fn recover(&mut self, budget: u32, now: Instant) {
        let full = f64::from(budget);
        if self.allowance >= full {
            return;
        }
        let calm = now.saturating_duration_since(self.calm_since);
        let steps = (calm.as_nanos() / RECOVERY_INTERVAL.as_nanos()) as u32;
        if steps == 0 {
            return;
        }
        self.allowance += full * RECOVERY_STEP * f64::from(steps);
        // Snap to the budget when the last step overshoots it or rounding leaves it a hair short.
        if self.allowance > full * (1.0 - 1e-9) {
            self.allowance = full;
        }
        self.calm_since += RECOVERY_INTERVAL * steps;
    }
}

/// How many permits go out together at a pace of `allowance` permits per window.
fn group_size(allowance: f64) -> u32 {
    (allowance / GROUP_RATE).floor().clamp(1.0, MAX_GROUP) as u32
}

/// How far a budget reaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Each action class has its own budget (the service limits each operation separately).
    #[default]
    Action,
    /// One budget for every call, the strictest of the classes' (one window for the account).
    Account,
}

/// The kinds of call the service limits separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionClass {
    Create,
    Read,
    Remove,
}

impl ActionClass {
    pub const ALL: [ActionClass; 3] = [ActionClass::Create, ActionClass::Read, ActionClass::Remove];

    fn index(self) -> usize {
        self as usize
    }
}

/// One pacer per action class; in account scope the three share one window, and each still
/// counts its own permits.
pub struct PacerSet {
    scope: Scope,
    pacers: [Pacer; 3],
}

impl PacerSet {
    /// Budgets in permits per second for each class, 0 = unlimited. In account scope the shared
    /// budget is the smallest non-zero one (unlimited only when all three are).
    pub fn new(scope: Scope, create_qps: u32, read_qps: u32, remove_qps: u32) -> PacerSet {
        let budgets = [create_qps, read_qps, remove_qps];
        let pacers = match scope {
            Scope::Action => budgets.map(Pacer::new),
            Scope::Account => {
                let shared = budgets.into_iter().filter(|&b| b > 0).min().unwrap_or(0);
                let window = Arc::new(Window::new(shared));
                budgets.map(|_| Pacer::sharing(Arc::clone(&window)))
            }
        };
        PacerSet { scope, pacers }
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The pacer for calls of `class`: acquire from it before each, tell it of throttling.
    pub fn for_action(&self, class: ActionClass) -> &Pacer {
        &self.pacers[class.index()]
    }

    /// Permits handed out for calls of `class`.
    pub fn granted(&self, class: ActionClass) -> u64 {
        self.for_action(class).granted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGETS: [u32; 6] = [1, 5, 20, 50, 100, 1000];

    /// Takes permits one after another for `run` of virtual time; their instants.
    async fn take_for(pacer: &Pacer, run: Duration) -> Vec<Instant> {
        let end = clock::instant() + run;
        let mut times = Vec::new();
        for _ in 0..limit(pacer, run) {
            pacer.acquire().await;
            let now = clock::instant();
            if now >= end {
                break;
            }
            times.push(now);
        }
        times
    }

    /// More permits than `run` can hold at the full budget: the bound of every test loop.
    fn limit(pacer: &Pacer, run: Duration) -> usize {
        (f64::from(pacer.window.budget.max(1)) * (run.as_secs_f64() + 1.0) * 2.0) as usize
    }

    /// Every permit is at least a window after the one `budget` places before it, so no sliding
    /// second (nor any span up to the margin longer) holds more than the budget.
    fn assert_no_window_over(times: &[Instant], budget: u32) {
        let n = budget as usize;
        for k in n..times.len() {
            let span = times[k] - times[k - n];
            assert!(span >= WINDOW, "budget {budget}: {n} permits in {span:?}");
        }
    }

    fn rate(times: &[Instant]) -> f64 {
        let elapsed = (*times.last().unwrap() - times[0]).as_secs_f64();
        (times.len() - 1) as f64 / elapsed
    }

    fn assert_near(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_pacer_never_waits_or_slows() {
        let pacer = Pacer::new(0);
        let start = clock::instant();
        for _ in 0..1000 {
            pacer.acquire().await;
        }
        pacer.throttled(None, clock::instant());
        pacer.acquire().await;
        assert_eq!(clock::instant(), start);
        assert_eq!(pacer.current_rate(), 0.0);
        assert_eq!(pacer.granted(), 1001);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_run_keeps_every_window_within_the_budget_and_comes_within_one_percent() {
        for budget in BUDGETS {
            let pacer = Pacer::new(budget);
            let times = take_for(&pacer, Duration::from_secs(30)).await;
            assert_no_window_over(&times, budget);
            let rate = rate(&times);
            assert!(
                rate >= 0.99 * f64::from(budget),
                "budget {budget}: {rate:.3}/s"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn many_concurrent_waiters_share_the_budget_without_exceeding_it() {
        for budget in BUDGETS {
            let pacer = Arc::new(Pacer::new(budget));
            let run = Duration::from_secs(20);
            let end = clock::instant() + run;
            let times = Arc::new(Mutex::new(Vec::new()));
            let per_task = limit(&pacer, run) / 64 + 2;
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let (pacer, times) = (Arc::clone(&pacer), Arc::clone(&times));
                    tokio::spawn(async move {
                        for _ in 0..per_task {
                            pacer.acquire().await;
                            let now = clock::instant();
                            if now >= end {
                                break;
                            }
                            times.lock().unwrap().push(now);
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let mut times = std::mem::take(&mut *times.lock().unwrap());
            times.sort();
            assert_no_window_over(&times, budget);
            let rate = rate(&times);
            assert!(
                rate >= 0.99 * f64::from(budget),
                "budget {budget}: {rate:.3}/s"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttling_storm_pauses_for_the_hint_slows_down_and_recovers_to_the_full_budget() {
        let pacer = Arc::new(Pacer::new(100));
        let start = clock::instant();
        let at = move |secs: f64| start + Duration::from_secs_f64(secs);
        let storm = {
            let pacer = Arc::clone(&pacer);
            tokio::spawn(async move {
                tokio::time::sleep_until(at(5.0)).await;
                pacer.throttled(Some(Duration::from_secs(2)), clock::instant());
                tokio::time::sleep_until(at(7.5)).await;
                for i in 0..20 {
                    let hint = (i % 2 == 0).then_some(Duration::from_millis(100));
                    pacer.throttled(hint, clock::instant());
                    clock::sleep(Duration::from_millis(300)).await;
                }
                pacer.current_rate()
            })
        };
        let times = take_for(&pacer, Duration::from_secs(60)).await;
        let slowed = storm.await.unwrap();

        assert_no_window_over(&times, 100);
        assert!(
            !times.iter().any(|&t| t > at(5.0) && t < at(7.0)),
            "a permit went out during the hinted pause"
        );
        assert!(times.iter().any(|&t| t >= at(7.0) && t < at(7.1)));
        assert!(slowed < 50.0, "the storm left the pace at {slowed}/s");
        // The first answer came alone at the full pace: it widened the margin by 5 ms.
        let late = times.iter().filter(|&&t| t >= at(50.0)).count();
        assert!(late >= 985, "{late} permits in the last 10 s");
        assert_near(pacer.current_rate(), 100.0 / (WINDOW + WIDEN).as_secs_f64());
    }

    #[tokio::test(start_paused = true)]
    async fn permits_go_out_in_small_groups_about_25_wake_ups_a_second() {
        for (budget, group) in [(20, 1), (50, 2), (100, 4), (1000, 4)] {
            let pacer = Pacer::new(budget);
            let mut times = take_for(&pacer, Duration::from_secs(3)).await;
            // The steady part: after the first window's permits.
            times.drain(..budget as usize);
            assert_no_window_over(&times, budget);
            // Permits at one instant are one group, one timer wake-up.
            let mut groups: Vec<(Instant, usize)> = Vec::new();
            for &t in &times {
                match groups.last_mut() {
                    Some((at, n)) if *at == t => *n += 1,
                    _ => groups.push((t, 1)),
                }
            }
            // The first and the last group may be cut by the span measured.
            let inner = &groups[1..groups.len() - 1];
            assert!(
                inner.iter().all(|&(_, n)| n == group),
                "budget {budget}: groups of {:?}, expected {group} each",
                inner.iter().map(|g| g.1).collect::<Vec<_>>()
            );
            let span = (inner[inner.len() - 1].0 - inner[0].0).as_secs_f64();
            let wakes = (inner.len() - 1) as f64 / span;
            let expected = f64::from(budget) / group as f64 / WINDOW.as_secs_f64();
            assert!(
                (wakes - expected).abs() / expected < 0.02,
                "budget {budget}: {wakes:.2} wake-ups a second, expected {expected:.2}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn timers_that_fire_late_cost_no_permits() {
        let window = Window::new(100);
        let mut state = window.lock();
        let start = clock::instant();
        let (late, end) = (Duration::from_millis(3), start + Duration::from_secs(20));
        let mut now = start;
        let mut times = Vec::new();
        for _ in 0..4000 {
            // Every waiter asked at the start, and every timer fires 3 ms after its slot.
            match state.try_take(100, now, start) {
                Ok(()) => times.push(now),
                Err(slot) => now = slot + late,
            }
            if now >= end {
                break;
            }
        }
        assert_no_window_over(&times, 100);
        assert!(rate(&times) >= 99.0, "{}/s", rate(&times));
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_idle_spell_or_a_pause_waiters_go_at_the_steady_pace_not_in_a_burst() {
        let pacer = Arc::new(Pacer::new(100));
        // An answer alone widens the margin, so the one below is a storm's and slows down.
        pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
        take_for(&pacer, Duration::from_secs(2)).await;
        for quiet in [false, true] {
            if quiet {
                clock::sleep(Duration::from_secs(5)).await;
            } else {
                // Shorter than a recovery step: the pace after it is 70 % of the budget.
                pacer.throttled(Some(Duration::from_millis(1500)), clock::instant());
            }
            let first = Arc::new(Mutex::new(Vec::new()));
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let (pacer, first) = (Arc::clone(&pacer), Arc::clone(&first));
                    tokio::spawn(async move {
                        pacer.acquire().await;
                        first.lock().unwrap().push(clock::instant());
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let mut first = std::mem::take(&mut *first.lock().unwrap());
            first.sort();
            let rate: f64 = if quiet { 100.0 } else { 70.0 };
            let gap = (WINDOW + WIDEN).as_secs_f64() / rate;
            // Four at once at 100/s, two at 70/s.
            let group = f64::from(group_size(rate));
            // The first half second (before the pace steps up again after the pause).
            for (k, t) in first.iter().enumerate().take(32) {
                // In groups, one gap apart on average: never ahead of the schedule by a group.
                let ahead = (k as f64 - (group - 1.0)) * gap - (*t - first[0]).as_secs_f64();
                assert!(
                    ahead < 1e-3,
                    "permit {k} is {ahead:.4} s ahead (quiet: {quiet})"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_slow_down_every_window_holds_no_more_than_the_smaller_allowance() {
        let pacer = Pacer::new(100);
        // An answer alone widens the margin, so the one below is a storm's and slows down.
        pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
        let mut times = take_for(&pacer, Duration::from_secs(3)).await;
        let throttled_at = clock::instant();
        pacer.throttled(Some(Duration::ZERO), clock::instant());
        // Before the first recovery step, two seconds after the answer.
        times.extend(take_for(&pacer, Duration::from_millis(1900)).await);
        let second = Duration::from_secs(1);
        let mut checked = 0;
        for (k, &t) in times
            .iter()
            .enumerate()
            .filter(|&(_, &t)| t >= throttled_at)
        {
            let in_window = times[..=k].iter().filter(|&&s| s + second > t).count();
            assert!(
                in_window <= 70,
                "{in_window} permits in the second up to {t:?}"
            );
            checked += 1;
        }
        assert!(checked > 60, "only {checked} permits after the slow-down");
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_slows_down_to_a_floor_and_not_below() {
        let pacer = Pacer::new(100);
        let per_second = |allowance: f64| allowance / (WINDOW + WIDEN).as_secs_f64();
        assert_near(pacer.current_rate(), 100.0 / WINDOW.as_secs_f64());
        // The first answer, alone at the full pace, widens the margin; the storm slows down.
        pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
        assert_near(pacer.current_rate(), per_second(100.0));
        clock::sleep(SLOW_DOWN_SPACING).await;
        pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
        assert_near(pacer.current_rate(), per_second(70.0));
        for _ in 0..50 {
            clock::sleep(SLOW_DOWN_SPACING).await;
            pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
        }
        assert_near(pacer.current_rate(), per_second(10.0));
    }

    #[tokio::test(start_paused = true)]
    async fn isolated_throttling_answers_widen_the_margin_up_to_a_cap_then_slow_down() {
        let pacer = Pacer::new(100);
        let per_second =
            |allowance: f64, widened: Duration| allowance / (WINDOW + widened).as_secs_f64();
        for k in 1..=4 {
            pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
            assert_near(pacer.current_rate(), per_second(100.0, WIDEN * k));
            // Alone again: ten seconds of sending since the 1 ms pause ended.
            clock::sleep(STORM_SPACING + Duration::from_millis(1)).await;
        }
        assert_eq!(WIDEN * 4, MAX_WIDENED);
        pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
        assert_near(pacer.current_rate(), per_second(70.0, MAX_WIDENED));
    }

    #[tokio::test(start_paused = true)]
    async fn an_isolated_throttling_answer_at_full_pace_costs_the_margin_not_the_pace() {
        let pacer = Arc::new(Pacer::new(100));
        let start = clock::instant();
        let at = move |secs: f64| start + Duration::from_secs_f64(secs);
        let answer = {
            let pacer = Arc::clone(&pacer);
            tokio::spawn(async move {
                tokio::time::sleep_until(at(5.0)).await;
                pacer.throttled(Some(Duration::from_millis(3)), clock::instant());
            })
        };
        let times = take_for(&pacer, Duration::from_secs(30)).await;
        answer.await.unwrap();
        assert_no_window_over(&times, 100);
        let after: Vec<Instant> = times.iter().copied().filter(|&t| t >= at(5.0)).collect();
        // The answer really came: the permits around it keep the wider span from then on.
        for k in 100..after.len() {
            let span = after[k] - after[k - 100];
            assert!(
                span >= WINDOW + WIDEN,
                "100 permits in {span:?} after the answer"
            );
        }
        let rate = rate(&after);
        assert!(rate >= 98.9, "{rate:.3}/s after one throttling answer");
    }

    #[tokio::test(start_paused = true)]
    async fn answers_for_requests_sent_before_a_reaction_are_that_event_not_a_storm() {
        let pacer = Pacer::new(100);
        let per_second =
            |allowance: f64, widened: Duration| allowance / (WINDOW + widened).as_secs_f64();
        // A group of four leaves at one instant, and all four meet the window's edge.
        let mut sent = Vec::new();
        for _ in 0..4 {
            pacer.acquire().await;
            sent.push(clock::instant());
        }
        assert!(sent.iter().all(|&t| t == sent[0]), "one group: {sent:?}");
        clock::sleep(Duration::from_millis(50)).await;
        for &at in &sent {
            pacer.throttled(Some(Duration::from_millis(1)), at);
            clock::sleep(Duration::from_micros(100)).await;
        }
        // One event: the margin widened once, the pace is whole.
        assert_near(pacer.current_rate(), per_second(100.0, WIDEN));
        // A request sent after the widening meets the edge too: that is a storm.
        clock::sleep(Duration::from_millis(5)).await;
        pacer.acquire().await;
        let slow = clock::instant();
        pacer.acquire().await;
        let later = clock::instant();
        clock::sleep(Duration::from_millis(50)).await;
        pacer.throttled(None, later);
        assert_near(pacer.current_rate(), per_second(70.0, WIDEN));
        // An answer to a request sent before that slow-down, coming more than a second after
        // it (past the time-based rule), changes nothing either, but its hint is honoured.
        clock::sleep(SLOW_DOWN_SPACING + Duration::from_millis(450)).await;
        pacer.throttled(Some(Duration::from_secs(3)), slow);
        assert_near(pacer.current_rate(), per_second(70.0, WIDEN));
        let paused_at = clock::instant();
        pacer.acquire().await;
        assert!(clock::instant() - paused_at >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_throttling_answers_slows_down_once() {
        // From the full pace, the burst's first answer widens the margin and the next, though
        // within the pause and the first second, is a storm's; after an earlier lone answer the
        // burst's first is. Either way the rest are about the same requests.
        for widened_before in [false, true] {
            let pacer = Pacer::new(100);
            if widened_before {
                pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
                clock::sleep(SLOW_DOWN_SPACING * 3).await;
            }
            for i in 0..10 {
                if i > 0 {
                    clock::sleep(Duration::from_millis(50)).await;
                }
                pacer.throttled(None, clock::instant());
            }
            // The pause is over, but this answer too may be about a request sent before it.
            clock::sleep(DEFAULT_PAUSE).await;
            pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
            assert_near(pacer.current_rate(), 70.0 / (WINDOW + WIDEN).as_secs_f64());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_after_long_hinted_pauses_are_a_storm_not_each_alone() {
        let pacer = Pacer::new(100);
        let per_second = |allowance: f64| allowance / (WINDOW + WIDEN).as_secs_f64();
        pacer.throttled(Some(Duration::from_secs(30)), clock::instant());
        assert_near(pacer.current_rate(), per_second(100.0));
        // Sending resumes at 30 s and is throttled again at once: nothing was sent in the
        // pause, so this is no lone answer after ten quiet seconds.
        clock::sleep(Duration::from_secs(30)).await;
        pacer.throttled(Some(Duration::from_secs(30)), clock::instant());
        assert!(
            pacer.current_rate() < per_second(80.0),
            "{}",
            pacer.current_rate()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_recovers_step_by_step_after_calm() {
        let pacer = Pacer::new(100);
        let per_second = |allowance: f64| allowance / (WINDOW + WIDEN).as_secs_f64();
        // One answer alone widens the margin; the second, a storm, slows down.
        pacer.throttled(None, clock::instant());
        clock::sleep(SLOW_DOWN_SPACING).await;
        pacer.throttled(None, clock::instant());
        clock::sleep(RECOVERY_INTERVAL - Duration::from_millis(1)).await;
        assert_near(pacer.current_rate(), per_second(70.0));
        clock::sleep(Duration::from_millis(1)).await;
        assert_near(pacer.current_rate(), per_second(80.0));
        clock::sleep(RECOVERY_INTERVAL * 2).await;
        assert_near(pacer.current_rate(), per_second(100.0));
        clock::sleep(RECOVERY_INTERVAL * 10).await;
        assert_near(pacer.current_rate(), per_second(100.0));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_during_a_long_pause_returns_false_promptly_and_takes_no_permit() {
        let pacer = Arc::new(Pacer::new(1));
        pacer.acquire().await;
        pacer.throttled(Some(Duration::from_secs(30)), clock::instant());
        let (holder, queued) = (CancellationToken::new(), CancellationToken::new());
        let behind = {
            let (pacer, queued) = (Arc::clone(&pacer), queued.clone());
            tokio::spawn(async move { pacer.acquire_or_cancel(&queued).await })
        };
        let canceller = {
            let (holder, queued) = (holder.clone(), queued.clone());
            tokio::spawn(async move {
                clock::sleep(Duration::from_secs(1)).await;
                holder.cancel();
                queued.cancel();
            })
        };
        let start = clock::instant();
        assert!(!pacer.acquire_or_cancel(&holder).await);
        assert_eq!(clock::instant() - start, Duration::from_secs(1));
        assert!(!behind.await.unwrap());
        canceller.await.unwrap();
        assert_eq!(pacer.granted(), 1);
        assert_eq!(pacer.window.lock().sent.len(), 1);
        // An already cancelled token never waits, even for a free permit.
        assert!(!Pacer::new(0).acquire_or_cancel(&holder).await);
        assert!(!Pacer::new(1000).acquire_or_cancel(&holder).await);
        // The pause still holds for the others.
        pacer.acquire().await;
        assert_eq!(clock::instant() - start, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_killed_run_the_first_window_is_counted_full_and_no_window_holds_more() {
        for budget in BUDGETS {
            // The dead process sent at the full budget right up to the moment it died.
            let dead = Pacer::new(budget);
            let mut times = take_for(&dead, Duration::from_secs(3)).await;
            // The permit that ended the loop went out too, as the last request before the kill.
            let died = clock::instant();
            times.push(died);
            let mut unaware = times.clone();
            let (restarted, naive) = (Pacer::new(budget), Pacer::new(budget));
            restarted.assume_full_window(died);
            times.extend(take_for(&restarted, Duration::from_secs(3)).await);
            assert_no_window_over(&times, budget);
            assert!(times.iter().all(|&t| t <= died || t >= died + WINDOW));
            let after = times.iter().filter(|&&t| t > died).count();
            assert!(
                after as f64 >= 1.9 * f64::from(budget),
                "budget {budget}: {after}"
            );
            // Without it, the window that straddles the restart holds up to twice the budget.
            let restart = clock::instant();
            unaware.extend(
                take_for(&naive, Duration::from_secs(1))
                    .await
                    .into_iter()
                    .map(|t| died + (t - restart)),
            );
            if budget > 1 {
                let n = budget as usize;
                let over = (n..unaware.len()).any(|k| unaware[k] - unaware[k - n] < WINDOW);
                assert!(
                    over,
                    "budget {budget}: the unaware restart stayed within the budget"
                );
            }
        }
        let unlimited = Pacer::new(0);
        unlimited.assume_full_window(clock::instant());
        let start = clock::instant();
        unlimited.acquire().await;
        assert_eq!(clock::instant(), start);
    }

    /// Three tasks, one per class, taking permits for `run`; each class's instants.
    async fn take_by_class(set: &Arc<PacerSet>, run: Duration) -> Vec<Vec<Instant>> {
        let tasks: Vec<_> = ActionClass::ALL
            .map(|class| {
                let set = Arc::clone(set);
                tokio::spawn(async move { take_for(set.for_action(class), run).await })
            })
            .into_iter()
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times
    }

    #[tokio::test(start_paused = true)]
    async fn account_scope_shares_one_budget_across_action_classes() {
        let set = Arc::new(PacerSet::new(Scope::Account, 20, 50, 10));
        let by_class = take_by_class(&set, Duration::from_secs(20)).await;
        let mut all: Vec<Instant> = by_class.concat();
        all.sort();
        assert_no_window_over(&all, 10);
        assert!(rate(&all) >= 9.9, "{}/s", rate(&all));
        for (class, times) in ActionClass::ALL.into_iter().zip(&by_class) {
            assert!(times.len() >= 60, "{class:?} starved: {}", times.len());
            assert!(set.granted(class) >= times.len() as u64);
        }
        set.for_action(ActionClass::Create)
            .throttled(None, clock::instant());
        assert!(set.for_action(ActionClass::Remove).current_rate() < 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn action_scope_gives_each_class_its_own_budget() {
        let set = Arc::new(PacerSet::new(Scope::Action, 20, 50, 10));
        let by_class = take_by_class(&set, Duration::from_secs(20)).await;
        for ((class, times), budget) in ActionClass::ALL
            .into_iter()
            .zip(&by_class)
            .zip([20, 50, 10])
        {
            assert_no_window_over(times, budget);
            let rate = rate(times);
            assert!(rate >= 0.99 * f64::from(budget), "{class:?}: {rate}/s");
            assert!(set.granted(class) >= times.len() as u64);
        }
        set.for_action(ActionClass::Create)
            .throttled(None, clock::instant());
        assert_near(
            set.for_action(ActionClass::Read).current_rate(),
            50.0 / WINDOW.as_secs_f64(),
        );
    }
}
