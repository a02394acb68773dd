//! `ending_of`: which ending, and so which exit, a run's figures make.

use super::*;

fn summary(new: u64, known: u64, left: u64, strict: bool) -> Summary {
    Summary {
        failed: new + known,
        new_rejections: new,
        known_rejections: known,
        left,
        strict,
        ..Summary::default()
    }
}

#[test]
fn only_known_rejections_exit_0_unless_strict_and_new_ones_exit_1() {
    let code = |s: &Summary| ending_of(s, None, None).exit().code();
    assert_eq!(code(&summary(0, 3, 0, false)), 0);
    assert_eq!(code(&summary(0, 3, 0, true)), 1);
    assert_eq!(code(&summary(1, 3, 0, false)), 1);
    assert_eq!(code(&summary(0, 0, 0, false)), 0);
}

#[test]
fn work_left_says_whether_the_deadline_passed_or_retries_ran_out() {
    let left = summary(0, 0, 2, false);
    let deadline = ending_of(&left, None, Some(StopReason::Deadline));
    assert_eq!(deadline.stopped_because(), Some("deadline"));
    let exhausted = ending_of(&left, None, None);
    assert_eq!(exhausted.stopped_because(), Some("retries ran out"));
    assert_eq!((deadline.exit().code(), exhausted.exit().code()), (5, 5));
}

#[test]
fn a_worker_panic_is_its_own_ending_not_retries_ran_out() {
    let left = summary(0, 0, 3, false);
    let ending = ending_of(&left, None, Some(StopReason::WorkerPanicked));
    assert_eq!(ending.stopped_because(), Some("a worker panicked"));
    assert!(ending.describe().contains("a bug"), "{}", ending.describe());
    assert_eq!(ending.exit().code(), 5);
}

#[test]
fn a_few_throttling_answers_are_reported_without_asking_for_a_lower_qps() {
    assert_eq!(throttling_hint(0, 3000), None);
    // One group of four at a window's edge in a 3,000-request run: the pacer adjusted.
    let few = throttling_hint(4, 3005).unwrap();
    assert!(
        few.starts_with("the service throttled 4 requests (0.13 % of 3005)"),
        "{few}"
    );
    assert!(!few.contains("lower --qps"), "{few}");
    // One in twenty: the pace is too high for the service.
    let many = throttling_hint(150, 3000).unwrap();
    assert_eq!(
        many,
        "the service throttled 150 requests (5.0 % of 3000): lower --qps"
    );
    // A count that outgrew the requests counted (both are tallies) still reads sensibly.
    assert!(throttling_hint(5, 0).unwrap().contains("100.0 % of 0"));
}
