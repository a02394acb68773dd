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
/// For every this long without a throttling answer, a widened margin narrows by `WIDEN`: the
/// cause (a delayed request, a clock at odds for a while) may be gone, and the margin costs
/// budget for the rest of a long run. If it was not, one isolated answer widens it again.
const NARROW_AFTER: Duration = Duration::from_secs(300);
/// Recovery: for every this long without throttling, step up by `RECOVERY_STEP` of the budget.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(2);
const RECOVERY_STEP: f64 = 0.1;
/// The pause after a throttling answer without a hint, and the longest pause a hint can ask for.
const DEFAULT_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Permits for one stream of requests. Several `Pacer`s may share one window (see [`Budgets`]);
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
    /// When the margin last narrowed back (see [`NARROW_AFTER`]).
    last_narrowed: Option<Instant>,
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
                last_narrowed: None,
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
        self.narrow(now);
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

impl State {
    /// Narrows a widened margin by `WIDEN` for every [`NARROW_AFTER`] since the last
    /// throttling answer (or the last narrowing).
    fn narrow(&mut self, now: Instant) {
        if self.widened.is_zero() {
            return;
        }
        let Some(since) = [self.last_widened, self.last_slow_down, self.last_narrowed]
            .into_iter()
            .flatten()
            .max()
        else {
            return;
        };
        let steps = (now.saturating_duration_since(since).as_nanos() / NARROW_AFTER.as_nanos())
            .min(u128::from(u32::MAX)) as u32;
        if steps == 0 {
            return;
        }
        self.widened = self.widened.saturating_sub(WIDEN.saturating_mul(steps));
        self.last_narrowed = Some(since + NARROW_AFTER * steps);
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

/// The one budget router: which pacer a call takes its permit from. In account scope the
/// three classes share one window (each still counts its own permits); in action scope every
/// operation has a pacer of its own with its class's budget (each API page states its own
/// limit), made on first use. A new budget (OSS reads and uploads, say) is one more class here.
pub struct Budgets {
    scope: Scope,
    budgets: [u32; 3],
    /// Account scope: one pacer per class over one shared window.
    shared: Option<[Arc<Pacer>; 3]>,
    /// Action scope: operation name → its class and pacer.
    per_operation: Mutex<std::collections::HashMap<&'static str, (ActionClass, Arc<Pacer>)>>,
    /// Set when another process may have used every budget's window up to then.
    busy_since: std::sync::OnceLock<Instant>,
}

impl Budgets {
    /// Budgets in permits per second for each class, 0 = unlimited. In account scope the shared
    /// budget is the smallest non-zero one (unlimited only when all three are).
    pub fn new(scope: Scope, create_qps: u32, read_qps: u32, remove_qps: u32) -> Budgets {
        let budgets = [create_qps, read_qps, remove_qps];
        let shared = (scope == Scope::Account).then(|| {
            let shared = budgets.into_iter().filter(|&b| b > 0).min().unwrap_or(0);
            let window = Arc::new(Window::new(shared));
            budgets.map(|_| Arc::new(Pacer::sharing(Arc::clone(&window))))
        });
        Budgets {
            scope,
            budgets,
            shared,
            per_operation: Mutex::default(),
            busy_since: std::sync::OnceLock::new(),
        }
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The pacer for operation `name` of `class`: acquire from it before each call, tell it
    /// of throttling.
    pub fn pacer(&self, class: ActionClass, name: &'static str) -> Arc<Pacer> {
        if let Some(shared) = &self.shared {
            return Arc::clone(&shared[class.index()]);
        }
        let mut map = self.per_operation.lock().unwrap_or_else(|p| p.into_inner());
        let (_, pacer) = map.entry(name).or_insert_with(|| {
            let pacer = Pacer::new(self.budgets[class.index()]);
            if let Some(&since) = self.busy_since.get() {
                pacer.assume_full_window(since);
            }
            (class, Arc::new(pacer))
        });
        Arc::clone(pacer)
    }

    /// Another process may have used every budget up to `now`: every pacer, and every one made
    /// later, counts its first window as full.
    pub fn assume_full_window(&self, now: Instant) {
        let _ = self.busy_since.set(now);
        for pacer in self.shared.iter().flatten() {
            pacer.assume_full_window(now);
        }
        let map = self.per_operation.lock().unwrap_or_else(|p| p.into_inner());
        for (_, pacer) in map.values() {
            pacer.assume_full_window(now);
        }
    }

    /// Permits handed out for calls of `class`.
    pub fn granted(&self, class: ActionClass) -> u64 {
        if let Some(shared) = &self.shared {
            return shared[class.index()].granted();
        }
        let map = self.per_operation.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter(|(c, _)| *c == class)
            .map(|(_, pacer)| pacer.granted())
            .sum()
    }
}

#[cfg(test)]
mod tests;
