//! A `Limiter` shared by several groups: k of N, earliest deadline wins a freed slot, limits
//! changed at run time, `acquire` in the same line, and no slot ever leaked.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Concurrency, assert_adds_up, bounded, iterations, join_bounded, ms, settle};
use schedgroup::{Group, Limiter};
use tokio::time::{Instant, timeout};

fn group(k: usize, limiter: &Limiter) -> Group {
    Group::builder().max_concurrent(k).limiter(limiter).build()
}

/// Records names in start order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<&'static str>>>);

impl Log {
    fn task(&self, name: &'static str, run: Duration) -> impl Future<Output = ()> + Send + 'static {
        let log = self.clone();
        async move {
            log.0.lock().unwrap().push(name);
            tokio::time::sleep(run).await;
        }
    }
    fn names(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(start_paused = true)]
async fn k_per_group_and_n_overall_are_never_exceeded() {
    let limiter = Limiter::new(5);
    let all = Arc::new(Concurrency::default());
    let mut groups = Vec::new();
    for k in [2usize, 3, 4] {
        let g = group(k, &limiter);
        let mine = Arc::new(Concurrency::default());
        for n in 0..30u64 {
            let (all, mine) = (all.clone(), mine.clone());
            g.delay(ms(n * 7 % 50), async move {
                let _a = all.enter();
                let _m = mine.enter();
                tokio::time::sleep(ms(10 + n % 13)).await;
            });
        }
        groups.push((g, k, mine));
    }
    for (g, k, mine) in &groups {
        bounded(g.wait()).await.unwrap();
        assert!(mine.max() <= *k, "group with k={k} ran {}", mine.max());
        assert_eq!(g.stats().completed, 30);
    }
    assert_eq!(all.max(), 5, "N is reached and never exceeded");
    assert_eq!(limiter.running(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_earliest_deadline_among_all_groups_wins_a_freed_slot() {
    let limiter = Limiter::new(1);
    let log = Log::default();
    let (a, b, c) = (group(4, &limiter), group(4, &limiter), group(4, &limiter));
    a.delay(Duration::ZERO, log.task("a", ms(100)));
    b.delay(ms(20), log.task("b", ms(1)));
    c.delay(ms(10), log.task("c", ms(1)));
    b.delay(ms(15), log.task("b-earlier", ms(1)));
    // When "a" ends, a's runner may keep its slot only for a task no one in line precedes:
    // a's next task (17) comes after c (10) and b-earlier (15), before b (20).
    a.delay(ms(17), log.task("a-next", ms(1)));
    for g in [&a, &b, &c] {
        bounded(g.wait()).await.unwrap();
    }
    assert_eq!(log.names(), ["a", "c", "b-earlier", "a-next", "b"]);
}

#[tokio::test(start_paused = true)]
async fn equal_deadlines_go_to_the_group_that_started_waiting_first() {
    for first_is_b in [true, false] {
        let limiter = Limiter::new(1);
        let log = Log::default();
        let a = group(1, &limiter);
        a.delay(Duration::ZERO, log.task("a", ms(100)));
        settle().await;
        let (b, c) = (group(1, &limiter), group(1, &limiter));
        let deadline = Instant::now() + ms(10);
        // Whichever group is scheduled first reaches the limiter's line first at t=10.
        let order: [(&Group, &'static str); 2] = if first_is_b {
            [(&b, "b"), (&c, "c")]
        } else {
            [(&c, "c"), (&b, "b")]
        };
        for (g, name) in order {
            g.schedule(deadline, log.task(name, ms(1)));
        }
        for g in [&a, &b, &c] {
            bounded(g.wait()).await.unwrap();
        }
        let expected = if first_is_b {
            ["a", "b", "c"]
        } else {
            ["a", "c", "b"]
        };
        assert_eq!(log.names(), expected);
    }
}

#[tokio::test(start_paused = true)]
async fn a_group_at_its_own_cap_holds_no_slot_back_from_others() {
    let limiter = Limiter::new(4);
    let (narrow, wide) = (group(1, &limiter), group(8, &limiter));
    let (n, w) = (
        Arc::new(Concurrency::default()),
        Arc::new(Concurrency::default()),
    );
    for _ in 0..10 {
        let n = n.clone();
        narrow.delay(Duration::ZERO, async move {
            let _in = n.enter();
            tokio::time::sleep(ms(50)).await;
        });
        let w = w.clone();
        wide.delay(ms(1), async move {
            let _in = w.enter();
            tokio::time::sleep(ms(50)).await;
        });
    }
    tokio::time::sleep(ms(5)).await;
    assert_eq!(
        (n.now(), w.now()),
        (1, 3),
        "narrow keeps to 1; wide gets the other 3"
    );
    bounded(narrow.wait()).await.unwrap();
    bounded(wide.wait()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn limiter_limits_change_at_run_time() {
    let limiter = Limiter::new(1);
    let g = group(10, &limiter);
    let c = Arc::new(Concurrency::default());
    for _ in 0..6 {
        let c = c.clone();
        g.delay(Duration::ZERO, async move {
            let _in = c.enter();
            tokio::time::sleep(ms(100)).await;
        });
    }
    settle().await;
    assert_eq!(c.now(), 1);
    let t0 = Instant::now();
    assert!(limiter.set_limit(4));
    settle().await;
    assert_eq!(
        (c.now(), Instant::now()),
        (4, t0),
        "raised: three more at once"
    );
    assert!(limiter.set_limit(0));
    assert_eq!(c.now(), 4, "lowered: nothing aborted");
    tokio::time::sleep(ms(500)).await;
    assert_eq!(
        (c.now(), g.stats().pending),
        (0, 2),
        "paused: nothing new started"
    );
    limiter.set_limit(2);
    bounded(g.wait()).await.unwrap();
    assert_eq!(g.stats().completed, 6);
    assert!(c.max() <= 4);
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_in_the_same_line_as_the_groups() {
    let limiter = Limiter::new(1);
    let log = Log::default();
    let g = group(4, &limiter);
    let holder = bounded(limiter.acquire()).await;
    g.delay(ms(50), log.task("task due at 50", ms(1)));
    // An acquire that starts waiting at 30 is ahead of the task due at 50...
    tokio::time::sleep(ms(30)).await;
    let (l, lg) = (limiter.clone(), log.clone());
    let early = tokio::spawn(async move {
        let _p = l.acquire().await;
        lg.0.lock().unwrap().push("acquire at 30");
        tokio::time::sleep(ms(1)).await;
    });
    // ...and one that starts at 70 is behind it.
    tokio::time::sleep(ms(40)).await;
    let (l, lg) = (limiter.clone(), log.clone());
    let late = tokio::spawn(async move {
        let _p = l.acquire().await;
        lg.0.lock().unwrap().push("acquire at 70");
    });
    settle().await;
    assert_eq!(limiter.waiting(), 3);
    drop(holder);
    bounded(early).await.unwrap();
    bounded(late).await.unwrap();
    bounded(g.wait()).await.unwrap();
    assert_eq!(
        log.names(),
        ["acquire at 30", "task due at 50", "acquire at 70"]
    );
    assert_eq!(limiter.running(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_acquire_gives_up_its_place_and_leaks_no_slot() {
    let limiter = Limiter::new(1);
    let holder = limiter.try_acquire().unwrap();
    assert!(limiter.try_acquire().is_none());
    // Times out while in line.
    assert!(timeout(ms(10), limiter.acquire()).await.is_err());
    assert_eq!(limiter.waiting(), 0);
    // Granted, then dropped before it was polled again.
    let waiting = tokio::spawn({
        let l = limiter.clone();
        async move { l.acquire().await }
    });
    settle().await;
    assert_eq!(limiter.waiting(), 1);
    waiting.abort();
    drop(holder);
    settle().await;
    assert_eq!(limiter.running(), 0, "the aborted acquire's slot came back");
    assert!(limiter.try_acquire().is_some());
}

#[tokio::test(start_paused = true)]
async fn cancelled_or_dropped_groups_in_line_leak_no_slot() {
    let limiter = Limiter::new(1);
    let holder = limiter.try_acquire().unwrap();
    let cancelled = group(2, &limiter);
    let dropped = group(2, &limiter);
    let live = group(2, &limiter);
    let ran = Arc::new(AtomicUsize::new(0));
    for (i, g) in [&cancelled, &dropped, &live].into_iter().enumerate() {
        let ran = ran.clone();
        g.delay(ms(i as u64), async move {
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    tokio::time::sleep(ms(10)).await;
    assert_eq!(limiter.waiting(), 3);
    cancelled.cancel();
    // Dropping a group cancels nothing: its task still runs when it gets a slot.
    drop(dropped);
    drop(holder);
    bounded(live.wait()).await.unwrap();
    settle().await;
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_groups_under_random_load_keep_k_and_n_on_every_start() {
    const N: usize = 6;
    let limiter = Limiter::new(N);
    let all = Arc::new(Concurrency::default());
    let violations = Arc::new(AtomicUsize::new(0));
    let groups: Vec<(Group, usize, Arc<Concurrency>)> = (0..8)
        .map(|i| {
            (
                group(1 + i % 4, &limiter),
                1 + i % 4,
                Arc::new(Concurrency::default()),
            )
        })
        .collect();
    let per_group = iterations(2000);
    let threads: Vec<_> = groups
        .iter()
        .map(|(g, k, mine)| {
            let (g, k, mine, all, violations) =
                (g.clone(), *k, mine.clone(), all.clone(), violations.clone());
            std::thread::spawn(move || {
                for n in 0..per_group {
                    let (mine, all, violations) = (mine.clone(), all.clone(), violations.clone());
                    let handle =
                        g.delay(Duration::from_micros((n * 37 % 3000) as u64), async move {
                            let _m = mine.enter();
                            let _a = all.enter();
                            if mine.now() > k || all.now() > N {
                                violations.fetch_add(1, Ordering::SeqCst);
                            }
                            tokio::task::yield_now().await;
                        });
                    if n % 11 == 0 {
                        handle.cancel();
                    }
                }
            })
        })
        .collect();
    let changer = {
        let limiter = limiter.clone();
        std::thread::spawn(move || {
            for i in 0..2000 {
                limiter.set_limit([N, 3, N, 1, 0, N][i % 6]);
            }
            limiter.set_limit(N);
        })
    };
    for t in threads {
        join_bounded(t);
    }
    join_bounded(changer);
    for (g, k, mine) in &groups {
        timeout(Duration::from_secs(30), g.wait())
            .await
            .expect("a group stalled: a limiter slot or grant was lost")
            .unwrap();
        let s = g.stats();
        assert_adds_up(s);
        assert_eq!(s.scheduled, per_group as u64);
        assert_eq!(
            s.completed + s.cancelled,
            s.scheduled,
            "every task ran or was cancelled"
        );
        assert!(mine.max() <= *k);
    }
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert!(all.max() <= N);
    assert_eq!((limiter.running(), limiter.waiting()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn history_counts_then_rolls_off_for_groups_and_their_limiter() {
    let limiter = Limiter::new(3);
    let (a, b) = (group(2, &limiter), group(2, &limiter));
    for g in [&a, &b] {
        for _ in 0..4 {
            g.delay(Duration::ZERO, async {
                tokio::time::sleep(Duration::from_secs(2)).await;
            });
        }
    }
    settle().await;
    let now = limiter.history();
    assert_eq!((now.running, now.limit), (3, 3));
    assert_eq!(
        now.waiting, 1,
        "the group with a free slot of its own waits in line"
    );
    let ha = a.history();
    assert_eq!(ha.running + b.history().running, 3);
    assert!(
        ha.waiting >= 2,
        "a's other due tasks wait for a slot: {}",
        ha.waiting
    );
    for g in [&a, &b] {
        bounded(g.wait()).await.unwrap();
    }
    let l = limiter.history();
    assert_eq!((l.running, l.waiting), (0, 0));
    assert_eq!(
        (
            l.windows[0].started,
            l.windows[0].freed,
            l.windows[0].peak_running
        ),
        (8, 8, 3)
    );
    assert_eq!(a.history().windows[0].started, 4);
    // 15 s later the 10 s window is empty; the 1 min window still has everything.
    tokio::time::advance(Duration::from_secs(15)).await;
    let l = limiter.history();
    assert_eq!((l.windows[0].started, l.windows[0].peak_running), (0, 0));
    assert_eq!(l.windows[0].mean_running, 0.0);
    assert_eq!((l.windows[1].started, l.windows[1].peak_running), (8, 3));
    // 16 task-seconds over the minute window: 60 s and up to a tenth more (its 6 s steps).
    let mean = l.windows[1].mean_running;
    assert!(16.0 / 66.0 < mean && mean <= 16.0 / 60.0, "{mean}");
    tokio::time::advance(Duration::from_secs(300)).await;
    assert_eq!(limiter.history().windows[2].started, 0, "gone from 5 min");
}
