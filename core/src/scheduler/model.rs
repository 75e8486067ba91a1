//! The scheduler's reference model and the step language its property test and
//! fuzz target share: requests, finishes (of a running job, or of one that is not
//! running: refused), cancellations of a tenant or a timeline, and crashes (the
//! scheduler is memory only: a new one starts empty, and the owners ask again).
//!
//! [`run`] drives the scheduler and an independent model of queued and running
//! jobs: after every step `check_invariants`, every grant is an eligible job within
//! the bound, the counts agree, and it is never idle with eligible work. [`check`]
//! adds determinism (the same steps give the same grants), fairness (while two
//! tenants both have eligible work their grant counts differ by at most 1) and no
//! starvation (an eligible job is granted within tenants × owners-per-tenant
//! decisions; a job cancelled while queued and asked again is a new request, its
//! wait counted afresh).
//!
//! Compiled for tests (`tests.rs` draws steps with proptest) and under the
//! `fuzzing` feature (the `scheduler` fuzz target draws them with `arbitrary`).

use super::*;

/// Tenants and timelines per tenant the steps use (indexes are taken modulo).
pub const TENANTS: u8 = 4;
pub const TIMELINES: u8 = 3;

#[derive(Clone, Debug)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Step {
    Request(u8, u8, JobKind),
    /// Finish the running job at this index (mod the count).
    Finish(usize),
    Cancel(u8, Option<u8>),
    /// The node restarts: a new, empty scheduler.
    Crash,
}

pub fn tenant(n: u8) -> TenantId {
    TenantId::from_bytes([n % TENANTS; 16])
}

pub fn timeline(n: u8) -> TimelineId {
    TimelineId::from_bytes([n % TIMELINES; 16])
}

fn job(t: u8, tl: u8, kind: JobKind) -> JobOwner {
    JobOwner { tenant: tenant(t), timeline: timeline(tl), kind }
}

/// One grant decision: the tenants with an eligible job just before it, and the
/// winner; `epoch` counts the crashes before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub epoch: u32,
    pub eligible: BTreeSet<TenantId>,
    /// Eligible jobs just before the decision, each with the number of its
    /// request (a job cancelled while queued and asked again is a new request).
    pub jobs: BTreeSet<(JobOwner, u32)>,
    pub granted: JobOwner,
}

/// Runs the steps against the scheduler and an independent model of queued and
/// running jobs; returns every grant decision.
pub fn run(steps: &[Step], max: usize) -> Vec<Decision> {
    let new = || Scheduler::new(SchedulerConfig { max_concurrent_jobs: max });
    let mut s = new();
    let mut queued: BTreeSet<JobOwner> = BTreeSet::new();
    let mut running: BTreeSet<JobOwner> = BTreeSet::new();
    let mut decisions = Vec::new();
    let mut epoch = 0;
    let mut request: BTreeMap<JobOwner, u32> = BTreeMap::new();
    for (i, st) in steps.iter().enumerate() {
        let now = Instant::from_millis(i as u64);
        match *st {
            Step::Request(t, tl, k) => {
                s.handle(now, SchedulerInput::Request(job(t, tl, k))).expect("always taken");
                queued.insert(job(t, tl, k));
            }
            Step::Finish(n) => {
                if running.is_empty() {
                    let any = job(0, 0, JobKind::Gc);
                    let finished = SchedulerInput::Finished(any);
                    assert_eq!(s.handle(now, finished), Err(SchedulerError::NotRunning(any)));
                    continue;
                }
                let o = *running.iter().nth(n % running.len()).unwrap();
                s.handle(now, SchedulerInput::Finished(o)).unwrap();
                running.remove(&o);
            }
            Step::Cancel(t, tl) => {
                let (tenant, timeline) = (tenant(t), tl.map(timeline));
                let input = SchedulerInput::CancelOwner { tenant, timeline };
                s.handle(now, input).expect("always taken");
                queued.retain(|o| {
                    let keep = o.tenant != tenant || timeline.is_some_and(|tl| o.timeline != tl);
                    if !keep {
                        *request.entry(*o).or_default() += 1;
                    }
                    keep
                });
            }
            Step::Crash => {
                s = new();
                (queued, running) = Default::default();
                epoch += 1;
            }
        }
        s.check_invariants();
        for g in std::iter::from_fn(|| s.poll_effect()) {
            let SchedulerEffect::Grant(o) = g;
            let jobs: BTreeSet<(JobOwner, u32)> = queued
                .iter()
                .filter(|o| !running.contains(o))
                .map(|o| (*o, request.get(o).copied().unwrap_or(0)))
                .collect();
            assert!(jobs.iter().any(|(j, _)| *j == o), "granted {o:?}, not an eligible job");
            assert!(running.len() < max.max(1), "bound broken by {o:?}");
            let eligible = jobs.iter().map(|(o, _)| o.tenant).collect();
            decisions.push(Decision { epoch, eligible, jobs, granted: o });
            queued.remove(&o);
            running.insert(o);
        }
        // Model and machine agree; never idle with eligible work.
        for k in JobKind::ALL {
            assert_eq!(s.queued(k), queued.iter().filter(|o| o.kind == k).count());
            assert_eq!(s.running(k), running.iter().filter(|o| o.kind == k).count());
        }
        if running.len() < max.max(1) {
            assert!(queued.iter().all(|o| running.contains(o)), "idle with eligible work");
        }
    }
    decisions
}

/// [`run`], plus determinism, fairness and no starvation (see the module doc).
pub fn check(steps: &[Step], max: usize) {
    let decisions = run(steps, max);
    assert_eq!(decisions, run(steps, max), "the same steps gave other grants");

    // Fairness: over every run of consecutive decisions (of one epoch) in which
    // tenants a and b both had an eligible job, their grant counts differ by at most 1.
    for a in 0..TENANTS {
        for b in (a + 1)..TENANTS {
            let (a, b) = (tenant(a), tenant(b));
            let mut diff: i64 = 0;
            let mut epoch = 0;
            for d in &decisions {
                if !(d.eligible.contains(&a) && d.eligible.contains(&b)) || d.epoch != epoch {
                    (diff, epoch) = (0, d.epoch);
                    if !(d.eligible.contains(&a) && d.eligible.contains(&b)) {
                        continue;
                    }
                }
                diff += i64::from(d.granted.tenant == a) - i64::from(d.granted.tenant == b);
                assert!(diff.abs() <= 1, "unfair between {a} and {b}: {decisions:#?}");
            }
        }
    }

    // No starvation: a job eligible at consecutive decisions (of one epoch) is
    // granted within tenants × owners-per-tenant of them.
    let limit = usize::from(TENANTS) * usize::from(TIMELINES) * JobKind::ALL.len();
    let mut waiting: BTreeMap<(JobOwner, u32), usize> = BTreeMap::new();
    let mut epoch = 0;
    for d in &decisions {
        if d.epoch != epoch {
            (waiting, epoch) = (BTreeMap::new(), d.epoch);
        }
        waiting.retain(|o, _| d.jobs.contains(o));
        for o in &d.jobs {
            let n = waiting.entry(*o).or_insert(0);
            *n += 1;
            assert!(*n <= limit, "{o:?} waited {n} grants");
        }
        waiting.retain(|(o, _), _| *o != d.granted);
    }
}
