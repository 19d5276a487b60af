//! Hostile attacks on "whoever gets `Effects::more` loops `Pool::resume`" (issue 8, second
//! review): bursts over the batch budget, stalled and dropped runtimes, re-entrant wakers and
//! drops, and wakers that panic. Every wait is bounded.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::{assert_adds_up, iterations, ms, settle};
use schedgroup::{Group, Limiter, LimiterPermit};
use tokio::time::{Instant, timeout};

const PATIENCE: Duration = Duration::from_secs(5);

fn limited(k: usize, limiter: &Limiter) -> Group {
    Group::builder().max_concurrent(k).limiter(limiter).build()
}

fn on(rt: &tokio::runtime::Runtime, k: usize, limiter: &Limiter) -> Group {
    Group::builder()
        .runtime(rt.handle().clone())
        .max_concurrent(k)
        .limiter(limiter)
        .build()
}

/// Runs `f` on a fresh thread with `stack` bytes; `None` if it did not finish within `secs`.
fn bounded<T: Send + 'static>(
    secs: u64,
    stack: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<std::thread::Result<T>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(secs)).ok()
}

fn unwrap_bounded<T>(r: Option<std::thread::Result<T>>, what: &str) -> T {
    match r {
        None => panic!("{what}: hung"),
        Some(Err(e)) => std::panic::resume_unwind(e),
        Some(Ok(t)) => t,
    }
}

// ===== 1: bursts over the budget on a paused clock: full, EDF, never early, no leak =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bursts_over_budget_across_groups_fill_the_limiter_never_early_and_drain() {
    let limiter = Limiter::new(700);
    let t0 = Instant::now();
    let early = Arc::new(AtomicUsize::new(0));
    let groups: Vec<Group> = (0..5).map(|_| limited(usize::MAX, &limiter)).collect();
    for (gi, g) in groups.iter().enumerate() {
        for i in 0..400u64 {
            let deadline = t0 + ms(i % 3 + gi as u64 % 2);
            let e = early.clone();
            g.schedule(deadline, async move {
                if Instant::now() < deadline {
                    e.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(ms(50)).await;
            });
        }
    }
    tokio::time::sleep(ms(5)).await;
    settle().await;
    assert_eq!(limiter.running(), 700, "{limiter:?}");
    assert!(limiter.waiting() > 0);
    // Each completion frees one slot; each hands on exactly one (and any burst is finished).
    for g in &groups {
        timeout(PATIENCE, g.wait())
            .await
            .expect("wait hung")
            .unwrap();
        assert_adds_up(g.stats());
        assert_eq!(g.stats().completed, 400);
    }
    assert_eq!(early.load(Ordering::SeqCst), 0, "tasks started early");
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

// ===== 2: permits held by task futures, dropped by a runtime shutdown mid-burst =====

#[test]
fn permits_in_futures_dropped_by_a_shutdown_mid_burst_hand_everything_on() {
    for iter in 0..iterations(2000) / 100 {
        let out = bounded(20, 8 << 20, move || {
            let limiter = Limiter::new(1200);
            let a_rt = common::current_thread(false);
            let b_rt = common::multi_thread(2);
            let a = on(&a_rt, usize::MAX, &limiter);
            let b = on(&b_rt, usize::MAX, &limiter);
            // 300 permits moved into A's futures.
            let permits: Vec<LimiterPermit> =
                (0..300).map(|_| limiter.try_acquire().unwrap()).collect();
            for p in permits {
                a.delay(Duration::ZERO, async move {
                    let _p = p;
                    std::future::pending::<()>().await;
                });
            }
            for _ in 300..900 {
                a.delay(Duration::ZERO, std::future::pending::<()>());
            }
            a_rt.block_on(async {
                tokio::time::sleep(ms(2)).await;
                settle().await;
            });
            assert_eq!(
                limiter.running(),
                1200,
                "A's 900 + 300 permits: {limiter:?}"
            );
            let ran = Arc::new(AtomicUsize::new(0));
            for _ in 0..1500 {
                let r = ran.clone();
                b.delay(Duration::ZERO, async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(ms(1)).await;
                });
            }
            std::thread::sleep(ms(20 + (iter as u64 % 5)));
            drop(a_rt);
            let r = b_rt.block_on(async { timeout(PATIENCE, b.wait()).await.is_ok() });
            assert!(r, "B's wait hung: {:?} {limiter:?}", b.stats());
            assert_eq!(ran.load(Ordering::SeqCst), 1500);
            assert_eq!(a.stats().cancelled, 900);
            (limiter.running(), limiter.waiting())
        });
        assert_eq!(unwrap_bounded(out, "permits"), (0, 0), "iteration {iter}");
    }
}

// ===== 3: a Drop that re-enters during the resume loop, cascading over many groups =====

/// On drop: schedules a copy of itself into the next group (same dead runtime), raises the
/// limit, takes and drops a permit.
struct Chain {
    groups: Arc<Vec<Group>>,
    next: usize,
    limiter: Limiter,
    dropped: Arc<AtomicUsize>,
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        self.limiter.set_limit(self.limiter.limit() + 1);
        drop(self.limiter.try_acquire());
        // Into a cancelled group, schedule() drops the future at once (documented): a chain of
        // such drops is the user's own recursion, so only live groups are chained into.
        if self.next < self.groups.len() && !self.groups[self.next].is_cancelled() {
            let c = Chain {
                groups: self.groups.clone(),
                next: self.next + 1,
                limiter: self.limiter.clone(),
                dropped: self.dropped.clone(),
            };
            self.groups[self.next].delay(Duration::ZERO, async move {
                let _c = c;
                std::future::pending::<()>().await;
            });
        }
    }
}

#[test]
fn a_drop_cascade_over_thousands_of_groups_on_a_dead_runtime_stays_flat_and_ends() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env("CASCADE_N", 3000);
    let stack = env("CASCADE_STACK", 512 << 10);
    let out = bounded(20, stack, move || {
        let limiter = Limiter::new(0);
        let rt = common::current_thread(false);
        let groups: Arc<Vec<Group>> =
            Arc::new((0..n).map(|_| on(&rt, usize::MAX, &limiter)).collect());
        let dropped = Arc::new(AtomicUsize::new(0));
        // Every group has a burst over the budget in line.
        rt.block_on(async {
            for g in groups.iter().take(4) {
                for _ in 0..300 {
                    let c = Chain {
                        groups: groups.clone(),
                        next: 4,
                        limiter: limiter.clone(),
                        dropped: dropped.clone(),
                    };
                    g.delay(Duration::ZERO, async move {
                        let _c = c;
                        std::future::pending::<()>().await;
                    });
                }
            }
            tokio::time::sleep(ms(1)).await;
            settle().await;
        });
        assert_eq!(limiter.waiting(), 4);
        // Raise past the budget from outside, then shut down while the runners are unpolled.
        limiter.set_limit(1000);
        drop(rt);
        let rt2 = common::current_thread(false);
        rt2.block_on(async {
            for g in groups.iter() {
                timeout(PATIENCE, g.wait()).await.expect("wait hung").ok();
                assert_adds_up(g.stats());
            }
        });
        drop(rt2);
        let touched = groups.iter().filter(|g| g.stats().scheduled > 0).count();
        (limiter.running(), limiter.waiting(), touched)
    });
    assert_eq!(
        unwrap_bounded(out, "cascade"),
        (0, 0, n),
        "every group in the chain was reached"
    );
}

// ===== 4: a limit storm against bursts, on a multi-thread runtime =====

#[test]
fn limit_storms_against_bursts_over_the_budget_strand_nothing_and_leak_nothing() {
    for iter in 0..iterations(2000) / 200 {
        let out = bounded(30, 8 << 20, move || {
            let limiter = Limiter::new(0);
            let rt = common::multi_thread(4);
            let groups: Vec<Group> = (0..6)
                .map(|i| on(&rt, [1, 7, 300, usize::MAX, 2, 1000][i], &limiter))
                .collect();
            let ran = Arc::new(AtomicUsize::new(0));
            for (gi, g) in groups.iter().enumerate() {
                for i in 0..700u64 {
                    let r = ran.clone();
                    g.delay(
                        Duration::from_micros((i * 7 + gi as u64) % 400),
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            if i % 3 == 0 {
                                tokio::task::yield_now().await;
                            }
                        },
                    );
                }
            }
            let stop = Arc::new(AtomicBool::new(false));
            let stormers: Vec<_> = (0..2)
                .map(|t| {
                    let l = limiter.clone();
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        let mut x = 12345u64 + t + iter as u64;
                        while !stop.load(Ordering::SeqCst) {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            l.set_limit((x % 1500) as usize);
                            if x % 5 == 0 {
                                let _ = l.throttle_up();
                            }
                            let p = l.try_acquire();
                            std::thread::yield_now();
                            drop(p);
                        }
                    })
                })
                .collect();
            let l = limiter.clone();
            let acq = rt.spawn(async move {
                for _ in 0..200 {
                    if let Ok(p) = timeout(ms(2), l.acquire()).await {
                        tokio::task::yield_now().await;
                        drop(p);
                    }
                }
            });
            std::thread::sleep(ms(100));
            stop.store(true, Ordering::SeqCst);
            for s in stormers {
                s.join().unwrap();
            }
            limiter.set_limit(1000);
            let ok = rt.block_on(async {
                timeout(PATIENCE, acq).await.is_ok() && {
                    let mut ok = true;
                    for g in &groups {
                        ok &= timeout(PATIENCE, g.wait()).await.is_ok();
                        assert_adds_up(g.stats());
                    }
                    ok
                }
            });
            assert!(
                ok,
                "iteration {iter}: hung: {limiter:?} {:?}",
                groups.iter().map(|g| g.stats()).collect::<Vec<_>>()
            );
            assert_eq!(ran.load(Ordering::SeqCst), 6 * 700);
            (limiter.running(), limiter.waiting())
        });
        assert_eq!(unwrap_bounded(out, "storm"), (0, 0), "iteration {iter}");
    }
}

// ===== 5: acquire() waiters behind a stalled burst, dropped as they are granted =====

#[test]
fn acquirers_behind_a_stalled_burst_dropped_around_their_grant_leak_nothing() {
    for iter in 0..iterations(2000) / 100 {
        let out = bounded(20, 8 << 20, move || {
            let limiter = Limiter::new(0);
            let a_rt = common::current_thread(false);
            let a = on(&a_rt, usize::MAX, &limiter);
            for _ in 0..600 {
                a.delay(Duration::ZERO, std::future::pending::<()>());
            }
            a_rt.block_on(async { tokio::time::sleep(ms(2)).await });
            assert_eq!(limiter.waiting(), 1);
            let b_rt = common::multi_thread(3);
            let l = limiter.clone();
            let res = b_rt.block_on(async move {
                let mut hs = Vec::new();
                for i in 0..64u64 {
                    let l = l.clone();
                    hs.push(tokio::spawn(async move {
                        // Some give up quickly, racing their grant.
                        if let Ok(p) =
                            timeout(Duration::from_micros(50 + i * 13), l.acquire()).await
                        {
                            tokio::task::yield_now().await;
                            drop(p);
                        }
                    }));
                }
                tokio::task::yield_now().await;
                let l2 = l.clone();
                let raiser = std::thread::spawn(move || {
                    for lim in [100, 300, 650, 640, 700] {
                        l2.set_limit(lim);
                        std::thread::sleep(Duration::from_micros(30));
                    }
                });
                for h in hs {
                    timeout(PATIENCE, h).await.expect("acquire hung").unwrap();
                }
                raiser.join().unwrap();
                (l.running(), l.waiting())
            });
            assert_eq!(
                res,
                (600, 0),
                "iteration {iter}: A's 600 stalled, nothing else: {limiter:?}"
            );
            drop(a_rt);
            (limiter.running(), limiter.waiting(), a.stats().cancelled)
        });
        assert_eq!(
            unwrap_bounded(out, "acquirers"),
            (0, 0, 600),
            "iteration {iter}"
        );
    }
}

// ===== 6: wakers that re-enter the limiter from inside the resume loop =====

struct Reenter {
    limiter: Limiter,
    group: Group,
    woken: AtomicUsize,
}

impl Wake for Reenter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.fetch_add(1, Ordering::SeqCst);
        // Called from the grant inside someone's carry_out loop.
        self.limiter.set_limit(self.limiter.limit() + 1);
        drop(self.limiter.try_acquire());
        self.group.delay(Duration::ZERO, async {});
        let _ = self.limiter.history();
    }
}

#[test]
fn a_waker_that_calls_back_into_the_limiter_on_its_grant_does_not_deadlock() {
    let out = bounded(20, 8 << 20, || {
        let rt = common::current_thread(false);
        let limiter = Limiter::new(0);
        let g = on(&rt, usize::MAX, &limiter);
        for _ in 0..600 {
            g.delay(Duration::ZERO, async {});
        }
        rt.block_on(async { tokio::time::sleep(ms(1)).await });
        let waker_state = Arc::new(Reenter {
            limiter: limiter.clone(),
            group: g.clone(),
            woken: AtomicUsize::new(0),
        });
        let waker = Waker::from(waker_state.clone());
        let mut cx = Context::from_waker(&waker);
        let mut futs: Vec<_> = (0..50).map(|_| Box::pin(limiter.acquire())).collect();
        for f in &mut futs {
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        // A burst over the budget, then the waiters, all handed out by this call.
        limiter.set_limit(1000);
        let mut permits = Vec::new();
        for f in &mut futs {
            if let Poll::Ready(p) = f.as_mut().poll(&mut cx) {
                permits.push(p);
            }
        }
        let got = permits.len();
        drop(permits);
        drop(futs);
        let ok = rt.block_on(async { timeout(PATIENCE, g.wait()).await.is_ok() });
        (
            ok,
            got,
            limiter.running(),
            limiter.waiting(),
            waker_state.woken.load(Ordering::SeqCst),
        )
    });
    let (ok, got, running, waiting, woken) = unwrap_bounded(out, "waker");
    assert!(
        ok && got == 50 && running == 0 && waiting == 0,
        "{ok} {got} {running} {waiting} {woken}"
    );
}

// ===== 7: a user Drop that keeps scheduling due work into a live group during the loop =====

struct Refill {
    into: Group,
    left: Arc<AtomicUsize>,
    ran: Arc<AtomicUsize>,
}

impl Drop for Refill {
    fn drop(&mut self) {
        // Takes one from the budget if any is left; never wraps below zero (a plain
        // `fetch_sub` at 0 wrapped, racing another worker, and made the budget endless).
        let took = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if took {
            // Two more for each one dropped, until the budget runs out.
            for _ in 0..2 {
                let r = Refill {
                    into: self.into.clone(),
                    left: self.left.clone(),
                    ran: self.ran.clone(),
                };
                self.into.delay(Duration::ZERO, async move {
                    r.ran.fetch_add(1, Ordering::SeqCst);
                });
            }
        }
    }
}

#[test]
fn drops_that_refill_a_live_group_during_a_resume_loop_finish_and_leak_nothing() {
    let out = bounded(20, 8 << 20, || {
        let limiter = Limiter::new(300);
        let live = common::multi_thread(2);
        let dead = common::current_thread(false);
        let b = on(&live, usize::MAX, &limiter);
        let a = on(&dead, usize::MAX, &limiter);
        let left = Arc::new(AtomicUsize::new(5000));
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..600 {
            let r = Refill {
                into: b.clone(),
                left: left.clone(),
                ran: ran.clone(),
            };
            a.delay(Duration::ZERO, async move {
                let _r = r;
                std::future::pending::<()>().await;
            });
        }
        dead.block_on(async { tokio::time::sleep(ms(1)).await });
        assert_eq!(limiter.running(), 300);
        drop(dead);
        let ok = live.block_on(async {
            let ok = timeout(PATIENCE, b.wait()).await.is_ok();
            let ok2 = timeout(PATIENCE, a.wait()).await.is_ok();
            ok && ok2
        });
        (ok, limiter.running(), limiter.waiting())
    });
    assert_eq!(unwrap_bounded(out, "refill"), (true, 0, 0));
}

// ===== 8: set_max_concurrent from another group's task, on a current-thread runtime =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn raising_a_cap_over_the_budget_from_another_groups_task_starts_the_whole_burst() {
    let limiter = Limiter::new(5000);
    let a = limited(0, &limiter);
    let b = limited(1, &limiter);
    let started = Arc::new(AtomicUsize::new(0));
    for _ in 0..2000 {
        let s = started.clone();
        a.delay(ms(1), async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(ms(100)).await;
        });
    }
    tokio::time::sleep(ms(2)).await;
    assert_eq!(limiter.running(), 0);
    let a2 = a.clone();
    b.delay(Duration::ZERO, async move {
        a2.set_max_concurrent(usize::MAX);
    });
    tokio::time::sleep(ms(1)).await;
    settle().await;
    assert_eq!(limiter.running(), 2000, "{limiter:?}");
    assert_eq!(started.load(Ordering::SeqCst), 2000);
    timeout(PATIENCE, a.wait()).await.unwrap().unwrap();
    timeout(PATIENCE, b.wait()).await.unwrap().unwrap();
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

// ===== 9: private pool burst: monitor yields and still finishes =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_private_burst_over_the_budget_all_starts_and_other_tasks_interleave() {
    let g = Group::new();
    let started = Arc::new(AtomicUsize::new(0));
    for _ in 0..5000 {
        let s = started.clone();
        g.delay(ms(1), async move {
            s.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        });
    }
    tokio::time::sleep(ms(2)).await;
    settle().await;
    assert_eq!(started.load(Ordering::SeqCst), 5000);
    assert_eq!(g.stats().running, 5000);
    g.cancel();
    assert!(
        timeout(PATIENCE, g.wait())
            .await
            .unwrap()
            .unwrap_err()
            .is_cancelled()
    );
}

// ===== 10: many threads each getting `more` at once, racing group drops =====

#[test]
fn many_threads_resuming_at_once_while_groups_come_and_go_leak_nothing() {
    for iter in 0..iterations(2000) / 200 {
        let out = bounded(30, 8 << 20, move || {
            let limiter = Limiter::new(0);
            let rt = common::multi_thread(4);
            let ran = Arc::new(AtomicUsize::new(0));
            let groups: Arc<Mutex<Vec<Group>>> = Arc::new(Mutex::new(Vec::new()));
            for i in 0..8 {
                let g = on(&rt, if i % 2 == 0 { usize::MAX } else { 3 }, &limiter);
                for _ in 0..400 {
                    let r = ran.clone();
                    g.delay(Duration::ZERO, async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                    });
                }
                groups.lock().unwrap().push(g);
            }
            rt.block_on(async { tokio::time::sleep(ms(2)).await });
            // Four threads: raise, drop permits, raise group caps, all at once.
            let barrier = Arc::new(std::sync::Barrier::new(4));
            let mut ts = Vec::new();
            {
                let l = limiter.clone();
                let b = barrier.clone();
                ts.push(std::thread::spawn(move || {
                    b.wait();
                    l.set_limit(2000);
                }));
            }
            {
                let l = limiter.clone();
                let b = barrier.clone();
                ts.push(std::thread::spawn(move || {
                    b.wait();
                    for _ in 0..50 {
                        l.set_limit(0);
                        l.set_limit(900);
                    }
                }));
            }
            for t in 0..2 {
                let gs = groups.clone();
                let b = barrier.clone();
                ts.push(std::thread::spawn(move || {
                    b.wait();
                    for g in gs.lock().unwrap().iter().skip(t).step_by(2) {
                        g.set_max_concurrent(g.max_concurrent().saturating_add(500));
                    }
                }));
            }
            for t in ts {
                t.join().unwrap();
            }
            limiter.set_limit(2000);
            let gs = std::mem::take(&mut *groups.lock().unwrap());
            let ok = rt.block_on(async {
                let mut ok = true;
                for g in &gs {
                    ok &= timeout(PATIENCE, g.wait()).await.is_ok();
                    assert_adds_up(g.stats());
                }
                ok
            });
            assert!(ok, "iteration {iter}: hung {limiter:?}");
            drop(gs);
            assert_eq!(ran.load(Ordering::SeqCst), 3200);
            (limiter.running(), limiter.waiting())
        });
        assert_eq!(unwrap_bounded(out, "many"), (0, 0), "iteration {iter}");
    }
}

// ===== 11: a panicking waker met inside the resume loop =====

#[test]
fn a_panicking_waker_granted_in_a_resume_batch_loses_no_other_groups_starts() {
    let out = bounded(20, 8 << 20, || {
        let rt = common::current_thread(false);
        let limiter = Limiter::new(0);
        let a = on(&rt, usize::MAX, &limiter);
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..300 {
            let r = ran.clone();
            a.delay(Duration::ZERO, async move {
                r.fetch_add(1, Ordering::SeqCst);
            });
        }
        rt.block_on(async { tokio::time::sleep(ms(2)).await });
        assert_eq!(limiter.waiting(), 1, "A's burst in line");
        // An acquire() behind A's burst, polled by an executor whose waker panics.
        let waker = common::bomb();
        let mut acquire = Box::pin(limiter.acquire());
        assert!(
            acquire
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        assert_eq!(limiter.waiting(), 2);
        // The first batch starts 256 of A's; the next starts A's last 44 and grants the
        // acquire(), whose waker panics.
        let raised = std::panic::catch_unwind(|| limiter.set_limit(1000));
        drop(acquire);
        let waited = rt.block_on(async { timeout(Duration::from_secs(2), a.wait()).await.is_ok() });
        (
            raised.is_ok(),
            waited,
            ran.load(Ordering::SeqCst),
            a.stats(),
            limiter.running(),
            limiter.waiting(),
        )
    });
    let (raised, waited, ran, stats, running, waiting) = unwrap_bounded(out, "bomb");
    assert!(
        waited && ran == 300 && running == 0 && waiting == 0,
        "set_limit returned normally: {raised}; A's wait() returned: {waited}; A ran {ran} of \
         300; {stats:?}; limiter running {running}, waiting {waiting}"
    );
}

#[test]
fn a_panicking_waker_on_one_groups_wait_strands_no_other_group() {
    let out = bounded(20, 8 << 20, || {
        let rt = common::current_thread(false);
        let limiter = Limiter::new(300);
        let x = on(&rt, usize::MAX, &limiter);
        let a = on(&rt, usize::MAX, &limiter);
        // X holds all 300 slots: 299 for 10 ms, the last one for 20 ms. A's burst of 600
        // (50 ms each) waits in line behind it.
        for i in 0..300 {
            let d = if i == 0 { 20 } else { 10 };
            x.delay(
                Duration::ZERO,
                async move { tokio::time::sleep(ms(d)).await },
            );
        }
        rt.block_on(async { tokio::time::sleep(ms(1)).await });
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..600 {
            let r = ran.clone();
            a.delay(Duration::ZERO, async move {
                r.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(ms(50)).await;
            });
        }
        rt.block_on(async { tokio::time::sleep(ms(1)).await });
        assert_eq!((limiter.running(), limiter.waiting()), (300, 1));
        // Someone waits for X on an executor whose waker panics.
        let waker = common::bomb();
        let mut wait_x = Box::pin(x.wait());
        assert!(
            wait_x
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        // X's last runner announces X idle (the waker panics inside that runner, on the
        // runtime, which swallows it) while handing its slot to A.
        let waited = rt.block_on(async { timeout(Duration::from_secs(2), a.wait()).await.is_ok() });
        drop(wait_x);
        (
            waited,
            ran.load(Ordering::SeqCst),
            a.stats(),
            limiter.running(),
            limiter.waiting(),
        )
    });
    let (waited, ran, stats, running, waiting) = unwrap_bounded(out, "bomb2");
    assert!(
        waited && ran == 600 && running == 0 && waiting == 0,
        "A's wait() returned: {waited}; A ran {ran} of 600; {stats:?}; limiter running \
         {running}, waiting {waiting}"
    );
}

#[test]
fn a_panicking_waker_on_the_groups_token_leaves_cancel_settled() {
    let out = bounded(20, 8 << 20, || {
        let rt = common::current_thread(false);
        let limiter = Limiter::new(1);
        let g = on(&rt, usize::MAX, &limiter);
        for _ in 0..10 {
            g.delay(Duration::from_secs(60), async {});
        }
        let waker = common::bomb();
        let token = g.cancellation_token();
        let mut cancelled = Box::pin(token.cancelled());
        assert!(
            cancelled
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let r = std::panic::catch_unwind(|| g.cancel());
        drop(cancelled);
        let waited = rt.block_on(async { timeout(Duration::from_secs(2), g.wait()).await });
        (r.is_ok(), waited.is_ok(), g.stats())
    });
    let (returned, waited, stats) = unwrap_bounded(out, "token");
    assert!(
        waited && stats.pending == 0,
        "cancel() returned normally: {returned}; wait() returned: {waited}; {stats:?}"
    );
}
