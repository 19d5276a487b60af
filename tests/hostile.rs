//! Hostile-user reproducers: each test tries to break one promise of the slot protocol from the
//! outside (issue 8's review). Its findings that belonged to issue 9 (a throttle hold of
//! `Duration::MAX`, panic payloads whose `Drop` panics) are tested in `hardening_overflow.rs`
//! and `hardening_panics.rs`.
//!
//! Every wait is bounded, so a hang fails in seconds.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_adds_up, iterations, join_bounded, ms, settle};
use schedgroup::{Group, Limiter, Throttle};
use tokio::time::{Instant, timeout};

const PATIENCE: Duration = Duration::from_secs(10);

fn limited(k: usize, limiter: &Limiter) -> Group {
    Group::builder().max_concurrent(k).limiter(limiter).build()
}

/// Runs `f` on a fresh thread; `None` if it did not finish within `secs` (the thread is left
/// behind, spinning or blocked: that is the hang).
fn bounded<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(secs)).ok()
}

// ===== odd input =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn extreme_caps_limits_and_deadlines_do_not_panic() {
    let limiter = Limiter::new(usize::MAX);
    let g = limited(usize::MAX, &limiter);
    let h = g.delay(Duration::MAX, async {});
    g.delay(Duration::ZERO, async {});
    let far = Instant::now() + Duration::from_secs(86_400 * 365 * 1000);
    g.schedule(far, async {});
    assert!(h.reschedule(far));
    limiter.set_throttle(Throttle {
        step_down: usize::MAX,
        step_up: usize::MAX,
        floor: usize::MAX,
        ceiling: Some(usize::MAX),
        hold: Duration::ZERO,
    });
    let _ = limiter.throttle_down();
    let _ = limiter.throttle_up();
    limiter.set_limit(0);
    limiter.set_limit(usize::MAX);
    g.set_max_concurrent(0);
    g.set_max_concurrent(usize::MAX);
    let _ = limiter.history();
    let _ = g.history();
    let permits: Vec<_> = (0..1000).map(|_| limiter.try_acquire().unwrap()).collect();
    assert_eq!(limiter.running(), 1000);
    drop(permits);
    tokio::time::sleep(ms(10)).await;
    assert_eq!(g.stats().completed, 1);
    g.cancel();
    timeout(PATIENCE, g.wait())
        .await
        .expect("hung")
        .unwrap_err();
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
    assert_adds_up(g.stats());
}

// ===== shutdown =====

/// On drop, requeues itself at once unless the group is cancelled: a retry-on-abort pattern
/// that checks `is_cancelled()` as the docs suggest it should.
struct Requeue {
    group: Group,
    drops: Arc<AtomicUsize>,
    armed: bool,
}

impl Drop for Requeue {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let n = self.drops.fetch_add(1, Ordering::SeqCst);
        if self.group.is_cancelled() || n > 1_000_000 {
            return;
        }
        let again = Requeue {
            group: self.group.clone(),
            drops: self.drops.clone(),
            armed: true,
        };
        // "Now" on the caller's clock: on a paused clock this equals the group's frontier.
        self.group.schedule(Instant::now(), requeue_task(again));
    }
}

async fn requeue_task(mut guard: Requeue) {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    guard.armed = false;
    drop(guard);
}

#[test]
fn a_drop_that_requeues_unless_cancelled_does_not_spin_a_runtime_shutdown() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let done = bounded(20, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let group = rt.block_on(async {
            let group = Group::new();
            let guard = Requeue {
                group: group.clone(),
                drops: d.clone(),
                armed: true,
            };
            group.delay(Duration::ZERO, requeue_task(guard));
            settle().await;
            assert_eq!(group.stats().running, 1);
            group
        });
        drop(rt);
        group.stats()
    });
    let n = drops.load(Ordering::SeqCst);
    let stats = done.unwrap_or_else(|| panic!("dropping the runtime spun: {n} drops so far"));
    assert!(n < 10, "the runtime shutdown looped {n} times: {stats:?}");
    assert_adds_up(stats);
}

#[test]
fn a_group_on_an_already_dropped_runtime_cancels_instead_of_losing_tasks() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    drop(rt);
    let limiter = Limiter::new(1);
    let group = Group::builder()
        .runtime(handle)
        .limiter(&limiter)
        .max_concurrent(1)
        .build();
    let (flag, dropped) = common::DropFlag::new();
    group.delay(Duration::ZERO, async move {
        let _f = flag;
    });
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let result = other.block_on(async { timeout(PATIENCE, group.wait()).await });
    let result = result.expect("wait() hung for a group on a dropped runtime");
    assert!(result.unwrap_err().is_cancelled());
    assert!(dropped.load(Ordering::SeqCst));
    assert_adds_up(group.stats());
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

// ===== the limiter's line =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn groups_and_limiter_dropped_while_in_line_still_run_and_leak_nothing() {
    let limiter = Limiter::new(1);
    let count = Arc::new(AtomicUsize::new(0));
    let blocker = common::bounded(limiter.acquire()).await;
    for _ in 0..5 {
        let g = limited(2, &limiter);
        for _ in 0..3 {
            let c = count.clone();
            g.delay(Duration::ZERO, async move {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(ms(5)).await;
            });
        }
    }
    settle().await;
    assert_eq!(limiter.waiting(), 5);
    let observer = limiter.clone();
    drop(limiter);
    drop(blocker);
    timeout(PATIENCE, async {
        while count.load(Ordering::SeqCst) < 15 || observer.running() > 0 {
            tokio::time::sleep(ms(1)).await;
        }
    })
    .await
    .expect("tasks of dropped groups never ran");
    assert_eq!((observer.running(), observer.waiting()), (0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn try_acquire_never_takes_a_slot_while_someone_waits_in_line() {
    // A burst larger than what one monitor poll may start (256 per step, ~128 steps per
    // coop budget) leaves the group in line with slots free; a plain caller then jumps it.
    let n = 40_000;
    let limiter = Limiter::new(n + 10);
    let g = limited(usize::MAX, &limiter);
    for _ in 0..n {
        g.delay(Duration::ZERO, async {
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
    }
    let mut violations = 0;
    let mut samples = 0;
    for _ in 0..200 {
        tokio::task::yield_now().await;
        let (running, waiting) = (limiter.running(), limiter.waiting());
        if samples % 20 == 0 {
            eprintln!(
                "running {running} waiting {waiting} pending {}",
                g.stats().pending
            );
        }
        if running < limiter.limit() && waiting > 0 {
            samples += 1;
            if let Some(p) = limiter.try_acquire() {
                violations += 1;
                drop(p);
            }
        }
        if g.stats().pending == 0 {
            break;
        }
    }
    eprintln!("free slots with a group in line: {samples} samples, try_acquire took {violations}");
    assert_eq!(violations, 0, "try_acquire jumped a group waiting in line");
    g.cancel();
    timeout(PATIENCE, g.wait())
        .await
        .expect("hung")
        .unwrap_err();
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn raising_a_limit_past_the_budget_lets_try_acquire_and_acquire_jump_the_line() {
    let n = 300;
    let limiter = Limiter::new(0);
    let g = limited(usize::MAX, &limiter);
    for _ in 0..n {
        g.delay(Duration::ZERO, async {
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
    }
    settle().await;
    assert_eq!((limiter.running(), limiter.waiting()), (0, 1));
    // Exactly enough for the group's due tasks, which have waited since t0.
    limiter.set_limit(n);
    let (running, waiting) = (limiter.running(), limiter.waiting());
    let stolen = limiter.try_acquire();
    let stolen_too = tokio::time::timeout(Duration::ZERO, limiter.acquire())
        .await
        .ok();
    assert!(
        stolen.is_none() && stolen_too.is_none(),
        "with {running} of {n} taken and {waiting} group in line (due since t0), \
         try_acquire took a slot: {}, acquire took one: {}",
        stolen.is_some(),
        stolen_too.is_some()
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn acquire_dropped_after_its_grant_hands_the_slot_on() {
    let limiter = Limiter::new(1);
    let first = common::bounded(limiter.acquire()).await;
    let l = limiter.clone();
    let waiter = tokio::spawn(async move {
        let _p = l.acquire().await;
        unreachable!("aborted before it could claim");
    });
    settle().await;
    let g = limited(1, &limiter);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    g.delay(
        Duration::ZERO,
        async move { r.store(true, Ordering::SeqCst) },
    );
    settle().await;
    assert_eq!(limiter.waiting(), 2);
    // Granted to the acquire (it waited first) but never claimed.
    drop(first);
    waiter.abort();
    timeout(PATIENCE, g.wait()).await.expect("hung").unwrap();
    assert!(ran.load(Ordering::SeqCst));
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

// ===== clocks =====

#[test]
fn a_group_on_a_paused_runtime_scheduled_from_a_real_clock_never_starts_early() {
    // Group A lives on a paused runtime driven by its own thread (its clock auto-advances);
    // work is scheduled into it from a real-clock runtime with absolute instants, and slots
    // are freed by a real-clock group sharing the limiter.
    let limiter = Limiter::new(1);
    let (a_tx, a_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let a_limiter = limiter.clone();
    let a_thread = std::thread::spawn(move || {
        let paused = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        paused.block_on(async move {
            let a = limited(1, &a_limiter);
            tokio::time::sleep(Duration::from_secs(5)).await;
            a_tx.send(a.clone()).unwrap();
            go_rx.await.unwrap();
            timeout(Duration::from_secs(600), a.wait()).await
        })
    });
    let a = a_rx.recv().unwrap();
    let real = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let early = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let result = real.block_on(async {
        let b = Group::builder().limiter(&limiter).max_concurrent(4).build();
        for i in 0..50u64 {
            b.delay(ms(i % 7), async {
                tokio::time::sleep(ms(1)).await;
            });
            let deadline = std::time::Instant::now() + ms(i % 13);
            let (e, s) = (early.clone(), started.clone());
            a.schedule(deadline, async move {
                // Read on A's runtime, where this task runs.
                if Instant::now() < Instant::from_std(deadline) {
                    e.fetch_add(1, Ordering::SeqCst);
                }
                s.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(ms(1)).await;
            });
        }
        timeout(PATIENCE, b.wait()).await
    });
    go_tx.send(()).unwrap();
    let a_result = join_bounded(a_thread);
    assert!(result.is_ok() && a_result.is_ok(), "hung");
    assert_eq!(started.load(Ordering::SeqCst), 50);
    assert_eq!(
        early.load(Ordering::SeqCst),
        0,
        "tasks started early on their group's clock"
    );
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

// ===== races =====

#[test]
fn limiter_free_for_all_on_a_multi_thread_runtime_adds_up_and_leaks_nothing() {
    let iters = iterations(2000) / 33;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    for iter in 0..iters {
        rt.block_on(async {
            let limiter = Limiter::new(3);
            let ran = Arc::new(AtomicU64::new(0));
            let mut groups: Vec<Group> = (0..4).map(|k| limited(k % 3 + 1, &limiter)).collect();
            let handles = Arc::new(Mutex::new(Vec::new()));
            let mut jobs = Vec::new();
            for (gi, g) in groups.iter().enumerate() {
                let g = g.clone();
                let (ran, handles, limiter) = (ran.clone(), handles.clone(), limiter.clone());
                jobs.push(tokio::spawn(async move {
                    for i in 0..60u64 {
                        let r = ran.clone();
                        let h = g.delay(
                            Duration::from_micros((i * 37 + gi as u64) % 500),
                            async move {
                                r.fetch_add(1, Ordering::SeqCst);
                                tokio::task::yield_now().await;
                            },
                        );
                        handles.lock().unwrap().push(h);
                        match i % 10 {
                            0 => {
                                let _ = limiter.try_acquire();
                            }
                            1 => {
                                let _ = timeout(Duration::from_micros(50), limiter.acquire()).await;
                            }
                            2 => {
                                limiter.set_limit((i as usize % 4) + 1);
                            }
                            3 => {
                                g.set_max_concurrent(i as usize % 3);
                            }
                            4 => {
                                let hs = handles.lock().unwrap();
                                if let Some(h) = hs.get(i as usize % hs.len().max(1)) {
                                    h.reschedule(Instant::now());
                                }
                            }
                            5 => {
                                let hs = handles.lock().unwrap();
                                if let Some(h) = hs.get((i as usize * 7) % hs.len().max(1)) {
                                    h.cancel();
                                }
                            }
                            _ => tokio::task::yield_now().await,
                        }
                    }
                    g.set_max_concurrent(2);
                }));
            }
            for j in jobs {
                common::bounded(j).await.unwrap();
            }
            limiter.set_limit(3);
            if iter % 3 == 0 {
                groups[0].cancel();
            }
            if iter % 4 == 1 {
                // Drop a group with work still queued.
                groups.pop();
            }
            for g in &groups {
                let r = timeout(PATIENCE, g.wait()).await;
                assert!(
                    r.is_ok(),
                    "iteration {iter}: wait() hung: {:?} {limiter:?}",
                    g.stats()
                );
                assert_adds_up(g.stats());
            }
            drop(handles);
            timeout(PATIENCE, async {
                while limiter.running() > 0 || limiter.waiting() > 0 {
                    tokio::time::sleep(ms(1)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("iteration {iter}: slots leaked: {limiter:?}"));
        });
    }
}

// ===== thread-local destruction =====

const CHILD: &str = "SCHEDGROUP_HOSTILE_CHILD";

thread_local! {
    static RUNTIME: std::cell::RefCell<Option<tokio::runtime::Runtime>> =
        const { std::cell::RefCell::new(None) };
}

/// A runtime kept in a thread-local (a common pattern for a per-thread executor) is dropped
/// when its thread exits, possibly after the crate's own thread-local trampoline is gone.
#[test]
fn a_runtime_in_a_thread_local_dropped_at_thread_exit_with_groups_in_line_does_not_overflow() {
    const NAME: &str =
        "a_runtime_in_a_thread_local_dropped_at_thread_exit_with_groups_in_line_does_not_overflow";
    if std::env::var_os(CHILD).is_some() {
        let count: usize = std::env::var("HOSTILE_COUNT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let limiter = Limiter::new(1);
        let l = limiter.clone();
        let groups = std::thread::spawn(move || {
            // The runtime's thread-local is registered before the crate's trampoline.
            RUNTIME.with(|rt| {
                *rt.borrow_mut() = Some(
                    tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap(),
                );
            });
            RUNTIME.with(|rt| {
                rt.borrow().as_ref().unwrap().block_on(async {
                    let mut groups = Vec::new();
                    for _ in 0..count {
                        let g = limited(1, &l);
                        g.delay(Duration::ZERO, std::future::pending::<()>());
                        groups.push(g);
                    }
                    for _ in 0..1000 {
                        if l.waiting() == count - 1 {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    assert_eq!((l.running(), l.waiting()), (1, count - 1));
                    groups
                })
            })
        })
        .join()
        .unwrap();
        assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
        drop(groups);
        return;
    }
    let (status, stdout, stderr) = common::run_child(NAME, CHILD, Duration::from_secs(60));
    assert!(
        status.success() && stdout.contains(&format!("test {NAME} ... ok")),
        "the child {status}\n--- stdout\n{stdout}\n--- stderr\n{}",
        &stderr[..stderr.len().min(3000)]
    );
}

// ===== re-entrant drops =====

/// On drop, pokes everything it can reach: other groups, the limiter, a permit, handles.
struct Poke {
    mine: Group,
    other: Group,
    limiter: Limiter,
    handle: Option<schedgroup::TaskHandle>,
    permit: Option<schedgroup::LimiterPermit>,
}

impl Drop for Poke {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.limiter.set_limit(self.limiter.limit() + 1);
        let _ = self.limiter.try_acquire();
        let _ = self.limiter.throttle_down();
        self.other.delay(Duration::ZERO, async {});
        self.mine.delay(Duration::ZERO, async {});
        self.mine.set_max_concurrent(3);
        if let Some(h) = &self.handle {
            h.reschedule(Instant::now());
            h.cancel();
        }
        let _ = self.limiter.history();
        let _ = self.mine.stats();
        let _ = format!("{:?} {:?}", self.mine, self.limiter);
        self.other.cancel();
    }
}

#[test]
fn drops_that_call_back_into_groups_and_the_limiter_during_cancel_and_shutdown_do_not_deadlock() {
    let done = bounded(30, || {
        let limiter = Limiter::new(2);
        let rt_a = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let rt_b = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let b_groups: Vec<Group> = (0..4)
            .map(|_| {
                Group::builder()
                    .runtime(rt_b.handle().clone())
                    .limiter(&limiter)
                    .max_concurrent(2)
                    .build()
            })
            .collect();
        let a_groups = rt_a.block_on(async {
            let a_groups: Vec<Group> = (0..4).map(|_| limited(2, &limiter)).collect();
            for (i, g) in a_groups.iter().enumerate() {
                let other = b_groups[i].clone();
                let h = other.delay(Duration::from_secs(3600), async {});
                for j in 0..20u64 {
                    let poke = Poke {
                        mine: g.clone(),
                        other: other.clone(),
                        limiter: limiter.clone(),
                        handle: Some(h.clone()),
                        permit: limiter.try_acquire(),
                    };
                    g.delay(ms(j % 3), async move {
                        let _poke = poke;
                        std::future::pending::<()>().await;
                    });
                }
            }
            tokio::time::sleep(ms(10)).await;
            // Cancel one group from here; the rest go down with the runtime.
            a_groups[0].cancel();
            a_groups
        });
        drop(rt_a);
        let rt_c = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt_c.block_on(async {
            for g in a_groups.iter().chain(&b_groups) {
                timeout(PATIENCE, g.wait()).await.expect("wait() hung").ok();
                assert_adds_up(g.stats());
            }
        });
        (limiter.running(), limiter.waiting())
    });
    assert_eq!(done, Some((0, 0)), "hung (None) or leaked slots");
}

// ===== reschedule races =====

#[test]
fn a_successfully_rescheduled_task_never_starts_before_its_new_deadline() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let iters = iterations(2000) / 66;
    rt.block_on(async {
        let limiter = Limiter::new(2);
        for _ in 0..iters {
            let g = limited(2, &limiter);
            let n = 200;
            let starts: Arc<Vec<Mutex<Option<Instant>>>> =
                Arc::new((0..n).map(|_| Mutex::new(None)).collect());
            let mut handles = Vec::new();
            let base = Instant::now();
            for i in 0..n {
                let s = starts.clone();
                handles.push(
                    g.schedule(base + Duration::from_micros(i as u64 * 20), async move {
                        *s[i].lock().unwrap() = Some(Instant::now());
                        tokio::task::yield_now().await;
                    }),
                );
            }
            let mut last_ok = vec![None; n];
            for round in 0..4u64 {
                for (i, h) in handles.iter().enumerate() {
                    let d =
                        Instant::now() + Duration::from_micros((i as u64 * 7 + round * 13) % 900);
                    if h.reschedule(d) {
                        last_ok[i] = Some(d);
                    }
                }
                tokio::task::yield_now().await;
            }
            timeout(PATIENCE, g.wait()).await.expect("hung").unwrap();
            for i in 0..n {
                let started = starts[i].lock().unwrap().expect("a task never ran");
                if let Some(d) = last_ok[i] {
                    assert!(
                        started >= d,
                        "task {i} started {:?} before its new deadline",
                        d - started
                    );
                }
            }
            assert_adds_up(g.stats());
        }
        assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
    });
}

// ===== shutdown races =====

#[test]
fn a_multi_thread_runtime_shut_down_mid_burst_leaks_no_slot_and_hangs_no_wait() {
    let iters = iterations(2000) / 50;
    let b = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    for iter in 0..iters {
        let limiter = Limiter::new(3);
        let a = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let a_groups: Vec<Group> = (0..3)
            .map(|k| {
                Group::builder()
                    .runtime(a.handle().clone())
                    .limiter(&limiter)
                    .max_concurrent(k + 1)
                    .build()
            })
            .collect();
        let b_groups: Vec<Group> = (0..3)
            .map(|k| {
                Group::builder()
                    .runtime(b.handle().clone())
                    .limiter(&limiter)
                    .max_concurrent(k + 1)
                    .build()
            })
            .collect();
        let ran = Arc::new(AtomicUsize::new(0));
        for i in 0..300u64 {
            for g in a_groups.iter().chain(&b_groups) {
                let r = ran.clone();
                g.delay(Duration::from_micros(i * 3), async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_micros(50)).await;
                });
            }
        }
        let l = limiter.clone();
        let acquirers: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                b.spawn(async move {
                    for _ in 0..20 {
                        let _p = l.acquire().await;
                        tokio::time::sleep(Duration::from_micros(20)).await;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(200 + (iter as u64 * 97) % 2000));
        // Shut A down from a plain thread while everything runs.
        if iter % 2 == 0 {
            drop(a);
        } else {
            a.shutdown_timeout(Duration::ZERO);
        }
        let result = b.block_on(async {
            for h in acquirers {
                timeout(PATIENCE, h).await.expect("acquire() hung").unwrap();
            }
            for g in a_groups.iter().chain(&b_groups) {
                let r = timeout(PATIENCE, g.wait()).await;
                assert!(
                    r.is_ok(),
                    "iteration {iter}: wait() hung: {:?} {limiter:?}",
                    g.stats()
                );
                assert_adds_up(g.stats());
            }
            for g in &b_groups {
                let s = g.stats();
                assert_eq!(s.completed, 300, "iteration {iter}: B lost tasks: {s:?}");
            }
            timeout(PATIENCE, async {
                while limiter.running() > 0 || limiter.waiting() > 0 {
                    tokio::time::sleep(ms(1)).await;
                }
            })
            .await
        });
        assert!(
            result.is_ok(),
            "iteration {iter}: slots leaked: {limiter:?}"
        );
    }
}

#[test]
fn drops_that_call_back_survive_many_shutdowns() {
    for _ in 0..iterations(2000) / 100 {
        drops_that_call_back_into_groups_and_the_limiter_during_cancel_and_shutdown_do_not_deadlock(
        );
    }
}

// ===== cross-runtime liveness =====

#[test]
fn a_stalled_runtime_first_in_line_keeps_free_slots_from_groups_on_a_live_runtime() {
    // Group A lives on a current-thread runtime that is driven once and then left alone (a
    // runtime blocked in sync work, or simply not polled for a while). A's due burst is first
    // in line; B's due work is behind it. Raising the limit past the budget must not leave
    // B's work (and an acquire()) waiting on A's monitor while hundreds of slots are free.
    let limiter = Limiter::new(0);
    let a_rt = common::current_thread(false);
    let a = Group::builder()
        .runtime(a_rt.handle().clone())
        .limiter(&limiter)
        .build();
    for _ in 0..300 {
        a.delay(Duration::ZERO, async {});
    }
    // Let A's monitor see its burst as due, then stop driving A.
    a_rt.block_on(async {
        tokio::time::sleep(ms(5)).await;
    });
    assert_eq!(limiter.waiting(), 1);
    let b_rt = common::multi_thread(2);
    let ran = Arc::new(AtomicUsize::new(0));
    let outcome = b_rt.block_on(async {
        let b = limited(4, &limiter);
        for _ in 0..4 {
            let r = ran.clone();
            b.delay(Duration::ZERO, async move {
                r.fetch_add(1, Ordering::SeqCst);
            });
        }
        tokio::time::sleep(ms(20)).await;
        assert_eq!(limiter.waiting(), 2, "A and B in line");
        limiter.set_limit(1000);
        let acquired = timeout(Duration::from_secs(1), limiter.acquire())
            .await
            .is_ok();
        let waited = timeout(Duration::from_secs(1), b.wait()).await.is_ok();
        (acquired, waited, limiter.running(), limiter.waiting())
    });
    let (acquired, waited, running, waiting) = outcome;
    assert!(
        acquired && waited && ran.load(Ordering::SeqCst) == 4,
        "with {running} of 1000 slots taken ({waiting} in line), B ran {} of 4 and acquire() got \
         a slot: {acquired}; both wait on A's stalled monitor",
        ran.load(Ordering::SeqCst)
    );
    drop(a_rt);
}

/// Group A, on a runtime driven once and then left alone, has a due burst larger than a batch
/// at its own cap of 0; its cap is raised from a live runtime (`raise_first`: before group B
/// lines up behind it, or after). Whoever raised it, or B's own events, must start the burst
/// and then B's work: not hand the rest to A's monitor, which never runs again.
fn a_stalled_group_raised_from_a_live_runtime(raise_first: bool) {
    let limiter = Limiter::new(1000);
    let a_rt = common::current_thread(false);
    let a = Group::builder()
        .runtime(a_rt.handle().clone())
        .max_concurrent(0)
        .limiter(&limiter)
        .build();
    for _ in 0..600 {
        a.delay(Duration::ZERO, async {});
    }
    a_rt.block_on(async {
        tokio::time::sleep(ms(5)).await;
    });
    assert_eq!(
        (limiter.running(), limiter.waiting()),
        (0, 0),
        "A at its cap"
    );
    let b_rt = common::multi_thread(2);
    let ran = Arc::new(AtomicUsize::new(0));
    let (acquired, waited, running) = b_rt.block_on(async {
        let b = limited(4, &limiter);
        if raise_first {
            a.set_max_concurrent(usize::MAX);
        }
        for _ in 0..4 {
            let r = ran.clone();
            b.delay(Duration::ZERO, async move {
                r.fetch_add(1, Ordering::SeqCst);
            });
        }
        if !raise_first {
            tokio::time::sleep(ms(20)).await;
            a.set_max_concurrent(usize::MAX);
        }
        let acquired = timeout(Duration::from_secs(2), limiter.acquire())
            .await
            .is_ok();
        let waited = timeout(Duration::from_secs(2), b.wait()).await.is_ok();
        (acquired, waited, limiter.running())
    });
    assert!(
        acquired && waited && ran.load(Ordering::SeqCst) == 4,
        "raised first: {raise_first}; with {running} of 1000 slots taken, B ran {} of 4 and \
         acquire() got a slot: {acquired}",
        ran.load(Ordering::SeqCst)
    );
    assert_eq!(
        running, 600,
        "A's whole burst holds slots on its stalled runtime"
    );
    // Shutting A's runtime down drops its runners: every slot comes back.
    drop(a_rt);
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
    assert_eq!(a.stats().cancelled, 600);
}

#[test]
fn a_stalled_group_raised_from_a_live_runtime_before_others_line_up_strands_no_one() {
    a_stalled_group_raised_from_a_live_runtime(true);
}

#[test]
fn a_stalled_group_raised_from_a_live_runtime_after_others_lined_up_strands_no_one() {
    a_stalled_group_raised_from_a_live_runtime(false);
}
