//! The one scheduler: `concurrency` workers take jobs from one queue until it is empty or the
//! command is stopping. Every command that sends requests (run, verify's repair, rollback)
//! runs its jobs through here, so a stop, the deadline and the seed work the same everywhere.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::stop::{Stop, StopReason};

/// Runs `work` on every job, `concurrency` at a time; jobs not started because the command is
/// stopping go to `skipped`.
pub(crate) async fn schedule<J, W, Fut, S>(
    jobs: Vec<J>,
    concurrency: usize,
    stop: Arc<Stop>,
    work: W,
    skipped: S,
) where
    J: Send + 'static,
    W: Fn(J) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
    S: Fn(J) + Send + Sync + 'static,
{
    let queue = Arc::new(Mutex::new(jobs.into_iter()));
    let (work, skipped) = (Arc::new(work), Arc::new(skipped));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (queue, stop, work, skipped) =
            (queue.clone(), stop.clone(), work.clone(), skipped.clone());
        tasks.spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some(job) = next else { break };
                if stop.is_stopping() {
                    skipped(job);
                    continue;
                }
                work(job).await;
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        // A panic is a bug in this tool, not a ledger that cannot be written: said as such.
        if let Err(e) = result {
            tracing::error!(
                "a worker panicked (a bug: please report it with this log): {e}; what was \
                 recorded is safe, the next run resumes the rest"
            );
            stop.stop(StopReason::WorkerPanicked);
        }
    }
}

/// Puts the persons who must wait before anything is done for them (a `pending` record of a
/// killed run: [`crate::caller::Caller::settle_since`]) after the others, the earliest-ready
/// first; the others keep their order. A worker that takes one of them sleeps through the
/// wait, so with a few workers and many such persons at the front, every slot would sleep
/// while the rest of the plan could be sent.
pub(crate) fn ready_first(jobs: &mut [crate::plan::PersonJob]) {
    // Stable: persons with nothing to wait for (0) first, in plan order.
    jobs.sort_by_key(|job| job.pending_since);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn persons_waiting_out_a_pending_go_last_earliest_ready_first() {
        let job = |person: &str, pending_since: u32| {
            let mut job = crate::plan::PersonJob::without_images("lib".into(), person.into());
            job.pending_since = pending_since;
            job
        };
        let mut jobs = vec![
            job("late", 2_000),
            job("a", 0),
            job("early", 1_000),
            job("b", 0),
            job("c", 0),
        ];
        ready_first(&mut jobs);
        let order: Vec<&str> = jobs.iter().map(|j| j.person_id.as_str()).collect();
        assert_eq!(order, ["a", "b", "c", "early", "late"]);
    }

    #[tokio::test(start_paused = true)]
    async fn every_job_runs_once_and_no_more_than_the_bound_run_at_once() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let (r, p, d) = (running.clone(), peak.clone(), done.clone());
        schedule(
            (0..50).collect(),
            4,
            Arc::new(Stop::default()),
            move |_job: u32| {
                let (r, p, d) = (r.clone(), p.clone(), d.clone());
                async move {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    r.fetch_sub(1, Ordering::SeqCst);
                    d.fetch_add(1, Ordering::SeqCst);
                }
            },
            |_| panic!("nothing was stopped"),
        )
        .await;
        assert_eq!(done.load(Ordering::SeqCst), 50);
        assert_eq!(peak.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_panic_stops_the_command_as_a_panic_not_as_a_ledger_failure() {
        let stop = Arc::new(Stop::default());
        let skipped = Arc::new(AtomicUsize::new(0));
        let s = skipped.clone();
        schedule(
            (0..5).collect(),
            1,
            stop.clone(),
            |job: u32| async move {
                assert_ne!(job, 1, "a bug in a worker");
            },
            move |_| {
                s.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await;
        assert_eq!(stop.reason(), Some(StopReason::WorkerPanicked));
        assert_eq!(stop.exit(), Some(crate::exit::Exit::StoppedEarly));
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_not_started_before_a_stop_are_handed_back() {
        let stop = Arc::new(Stop::default());
        let skipped = Arc::new(AtomicUsize::new(0));
        let s = skipped.clone();
        let stopper = stop.clone();
        schedule(
            (0..10).collect(),
            1,
            stop.clone(),
            move |job: u32| {
                let stopper = stopper.clone();
                async move {
                    if job == 2 {
                        stopper.stop(StopReason::Interrupted);
                    }
                }
            },
            move |_| {
                s.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await;
        assert_eq!(skipped.load(Ordering::SeqCst), 7);
    }
}
