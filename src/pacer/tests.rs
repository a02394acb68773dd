//! Unit tests of the pacer, in virtual time (tokio's paused clock).

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

/// An operation of each class.
fn name_of(class: ActionClass) -> &'static str {
    match class {
        ActionClass::Create => "RegisterCustomFace",
        ActionClass::Read => "ListCustomPersons",
        ActionClass::Remove => "UnregisterCustomFace",
    }
}

/// Three tasks, one per class, taking permits for `run`; each class's instants.
async fn take_by_class(set: &Arc<Budgets>, run: Duration) -> Vec<Vec<Instant>> {
    let tasks: Vec<_> = ActionClass::ALL
        .map(|class| {
            let pacer = set.pacer(class, name_of(class));
            tokio::spawn(async move { take_for(&pacer, run).await })
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
    let set = Arc::new(Budgets::new(Scope::Account, 20, 50, 10));
    let by_class = take_by_class(&set, Duration::from_secs(20)).await;
    let mut all: Vec<Instant> = by_class.concat();
    all.sort();
    assert_no_window_over(&all, 10);
    assert!(rate(&all) >= 9.9, "{}/s", rate(&all));
    for (class, times) in ActionClass::ALL.into_iter().zip(&by_class) {
        assert!(times.len() >= 60, "{class:?} starved: {}", times.len());
        assert!(set.granted(class) >= times.len() as u64);
    }
    set.pacer(ActionClass::Create, "RegisterCustomFace")
        .throttled(None, clock::instant());
    assert!(set.pacer(ActionClass::Remove, "Other").current_rate() < 10.0);
}

#[tokio::test(start_paused = true)]
async fn action_scope_gives_each_class_its_own_budget() {
    let set = Arc::new(Budgets::new(Scope::Action, 20, 50, 10));
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
    set.pacer(ActionClass::Create, "RegisterCustomFace")
        .throttled(None, clock::instant());
    assert_near(
        set.pacer(ActionClass::Read, "ListCustomPersons")
            .current_rate(),
        50.0 / WINDOW.as_secs_f64(),
    );
}

#[tokio::test(start_paused = true)]
async fn a_widened_margin_narrows_back_after_a_calm_spell_and_widens_again_when_needed() {
    let pacer = Pacer::new(100);
    let per_second = |widened: Duration| 100.0 / (WINDOW + widened).as_secs_f64();
    pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
    clock::sleep(STORM_SPACING + Duration::from_millis(1)).await;
    pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
    assert_near(pacer.current_rate(), per_second(WIDEN * 2));
    // Calm, but not long enough: the margin stays.
    clock::sleep(NARROW_AFTER - Duration::from_secs(1)).await;
    assert_near(pacer.current_rate(), per_second(WIDEN * 2));
    clock::sleep(Duration::from_secs(2)).await;
    assert_near(pacer.current_rate(), per_second(WIDEN));
    clock::sleep(NARROW_AFTER).await;
    assert_near(pacer.current_rate(), per_second(Duration::ZERO));
    // Never below the server's second and the base margin.
    clock::sleep(NARROW_AFTER * 3).await;
    assert_near(pacer.current_rate(), per_second(Duration::ZERO));
    // An isolated answer widens it again.
    pacer.throttled(Some(Duration::from_millis(1)), clock::instant());
    assert_near(pacer.current_rate(), per_second(WIDEN));
}
