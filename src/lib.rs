//! Run futures at or after a point in time, with a cap on how many run at once.
//!
//! A [`Group`] holds futures that must not run yet: a reply delayed by a random 0-500 ms, a
//! retry after a backoff, a cache entry's expiry, a batch of requests to send gently. It keeps
//! them in one deadline-ordered queue and runs one monitor task that sleeps on a single timer
//! until the earliest deadline. When tasks fall due it starts them in deadline order, as many as
//! the group's cap allows; the rest wait in the queue. [`Group::wait`] resolves when nothing is
//! pending or running. Repeating work (a router advertisement every 4 s) is a series of such
//! tasks, one at a time: [`Group::every`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use schedgroup::Group;
//! use std::time::Duration;
//! use tokio::time::Instant;
//!
//! let group = Group::builder().max_concurrent(16).build();
//! for n in 0..1000u64 {
//!     group.delay(Duration::from_millis(n % 500), async move {
//!         // send the reply, retry the request, evict the entry...
//!     });
//! }
//! let expiry = group.schedule(Instant::now() + Duration::from_secs(30), async {});
//! expiry.cancel();
//!
//! group.wait().await.unwrap();
//! assert_eq!(group.stats().completed, 1000);
//! # }
//! ```
//!
//! Groups that share a machine can share a [`Limiter`] too: a pool of `N` running tasks of
//! which each group takes at most its own `k`, the earliest deadline first. A controller can
//! change limits at run time ([`Limiter::set_limit`], [`Limiter::throttle_down`] and
//! [`throttle_up`](Limiter::throttle_up) within a [`Throttle`]'s floor, ceiling and hold), and a
//! dashboard can show [`History`]: running, waiting and limit now, and over the last 10 s, 1 min
//! and 5 min the peak and mean running, tasks started and ended.
//!
//! # What a pending task costs
//!
//! A pending task is its future, stored inline in the group's queue (one slab per future type)
//! beside an 8-byte stamp, and a 16-byte entry in a deadline heap: no allocation of its own, no
//! tokio task, no timer, no polling. A future that captures one `Arc` costs 40 bytes in all. A
//! future is boxed only when it starts, or when it is scheduled if it is larger than 256 bytes.
//! A million pending tasks are one tokio task and one timer. `BENCHMARKS.md`
//! in the repository measures this against the alternatives below.
//!
//! # When to use it instead of...
//!
//! | you would write | what it costs per pending task | what a `Group` adds |
//! |---|---|---|
//! | `tokio::spawn(async { sleep(d).await; work().await })` | a tokio task and a timer entry, polled once when it fires | one task and one timer per group; a cap that keeps due work queued instead of parked on a semaphore; `wait()`; cancel and reschedule by handle |
//! | a [`JoinSet`] of sleeping futures | the same, plus the set's bookkeeping | the same; outputs in the order tasks end, with ids, through [`Results`] (no allocation per task), or one task's through a [`JoinHandle`] |
//! | [`TaskTracker`] + spawn + sleep | the same | the same; `wait()` also says whether tasks panicked or the group was cancelled |
//! | `tokio::spawn(async { let mut i = interval(p); loop { i.tick().await; work().await } })` | a tokio task and a timer per series | [`Group::every`]: each run is a task of the group (counted, under the cap, cancelled with it), a series is one pending task; [`Every::stop`] by handle; the same [`MissedTickBehavior`] choices |
//! | one task driving a [`DelayQueue`] and spawning what expires | a queue entry; you write the driver loop, the cap and the shutdown | the driver, the cap, cancellation, `wait()`, handles that can never name the wrong entry |
//!
//! Use `DelayQueue` when you want expired *values* handed to your own loop rather than futures
//! run for you.
//!
//! # Outputs
//!
//! [`Group::delay`] and [`Group::schedule`] drop a task's output when it ends: nothing is kept
//! for it. To have it back, schedule with [`Group::delay_join`] / [`Group::schedule_join`]
//! (a [`JoinHandle`], awaited like tokio's), or through a [`Results`] from [`Group::results`]
//! (outputs in the order the tasks end, each with its [`TaskId`], like
//! `JoinSet::join_next_with_id`). Either says how a task that gave no output ended: a
//! [`JoinError`], cancelled (by its handle or with the group: [`CancelledBy`]) or panicked
//! (with the payload). [`TaskHandle::cancel`] stops a task whatever its state.
//!
//! Why three ways rather than one: most scheduled work (a delayed reply, an expiry) has no
//! output anyone waits for, and it costs nothing extra: no channel, no slot for a result. An
//! awaited task is stored like any other, inline, with one pointer beside its future: to its
//! own channel (a `JoinHandle`: one allocation per task, as tokio's is) or to the `Results` it
//! was scheduled through (no allocation per task; results queue in one buffer). Unlike a
//! `JoinSet`'s, tasks scheduled through a `Results` belong to the group: they count in its
//! stats, run under its cap and limiter, keep `wait()` waiting, and run on if the `Results` is
//! dropped (their outputs are then dropped). The future is always dropped before its requester
//! hears how it ended. `BENCHMARKS.md` measures each against a `JoinSet`.
//!
//! # Adaptive limits
//!
//! A limit need not be a guess: [`Limiter::set_adaptive`] (or [`Builder::adaptive`] for a
//! group's own cap) lets an [`Adaptive`] controller move it from what the tasks measure, with
//! nothing for the tasks to do: each task's run time, timed by the group, and overload, which
//! a task shows by panicking, by an output a [`Results::overload_when`] classifier picks, or by
//! calling [`Group::overloaded`]. AIMD ([`Algorithm::Aimd`]) and a gradient
//! ([`Algorithm::Gradient`]) keep the limit just past the backend's knee, cut it at once on
//! overload, raise it only while the limit is reached and due work waits, and re-measure the
//! backend's no-load time as it changes. Being deadline-scheduled, the crate also sees how
//! late work starts ([`Window::start_lateness`]); the controller lets lateness allow a raise
//! and the run time permit it, so late work never raises a limit the backend cannot take.
//! `cargo run --release --example adaptive` compares them, on a simulated backend whose
//! capacity moves, with fixed limits and the published defaults of other controllers
//! (`BENCHMARKS.md`, "Adaptive limits").
//!
//! # Seeing inside: history, a registry, tracing and metrics
//!
//! Without any feature: [`Group::history`] and [`Limiter::history`] give running, waiting and
//! the limit now, and over the last 10 s, 1 min and 5 min the peak and mean running, tasks
//! started and ended, how late they started and how long they ran (p50, p99, max: see
//! [`Percentiles`]) and how many waited on average. A [`Registry`] lists groups and limiters
//! by name for a dashboard (`examples/dashboard` serves one).
//!
//! With the feature **`tracing`** (off by default; the default build has no `tracing`
//! dependency), the crate reports to [`tracing`](https://docs.rs/tracing) under the target
//! `schedgroup`:
//!
//! | what | level | name | fields |
//! |---|---|---|---|
//! | a span per run of a task, entered while the task is polled and when its future is dropped, so the task's own events nest under it | INFO | `task` | `group` (its name, or `"unnamed"`), `task_id`, `deadline` (the `Instant`, as `Debug`), `lateness_us` (deadline to start) |
//! | a task started; ended | DEBUG | `task started`; `task ended` | in the task's span; `run_us`, `outcome` (`completed`, `cancelled` with `by` = `handle` or `group`) |
//! | a task panicked | WARN | `task panicked` | in the task's span; `run_us`, `outcome = "panicked"`, `payload` (the message, if the payload is a `&str` or a `String`) |
//! | a group cancelled | INFO | `group cancelled` | `group` |
//! | a limit set by hand | INFO | `limit changed` | `group` or `limiter`, `from`, `to` (only if it changed) |
//! | a throttle's decision | INFO | `throttle` | `group` or `limiter`, `direction` (`up`, `down`), `outcome` (the [`ThrottleOutcome`], as `Debug`, applied or refused) |
//! | an adaptive controller's change | INFO | `adaptive decision` | `group` or `limiter`, `algorithm`, `from`, `to`, `reason` (`overload`, `latency`, `room`, `probe`), `latency_us` (the mean run time it decided on), `no_load_us` (its no-load estimate) |
//!
//! Filter with the target: `schedgroup=warn` keeps panics and drops the per-task span.
//!
//! With the feature **`metrics`**, the crate reports through the
//! [`metrics`](https://docs.rs/metrics) facade to whatever recorder is installed (a
//! Prometheus exporter, say). Install it before building groups and limiters: each takes its
//! handles when it is built. Group metrics carry the label `group`, limiter metrics
//! `limiter` (the name, or `"unnamed"`):
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `schedgroup_tasks_scheduled_total`, `_started_total`, `_completed_total`, `_cancelled_total`, `_panicked_total` | counter | as in [`Stats`] (started: taken from the queue to run) |
//! | `schedgroup_tasks_pending`, `schedgroup_tasks_running`, `schedgroup_tasks_waiting` | gauge | not started; running; due and waiting for a slot |
//! | `schedgroup_group_limit` | gauge | the group's cap (`+Inf`: none) |
//! | `schedgroup_task_start_lateness_seconds` | histogram | deadline to start, per task |
//! | `schedgroup_task_run_seconds` | histogram | start to end, per task |
//! | `schedgroup_limiter_limit`, `schedgroup_limiter_running`, `schedgroup_limiter_waiting` | gauge | a limiter's limit, slots taken, waiters in line |
//!
//! Groups with the same name report into one series (every unnamed group into `"unnamed"`):
//! counters and gauges are their sums (a limit: `+Inf` if one of them has none), and a group
//! that is dropped takes its gauges out and leaves its counts in. Counters are handed to the
//! recorder as what they grew by (`increment`), so they never go back, also when the last
//! group of a name is dropped and another is built. A recorder is told apart by its address:
//! groups built under a local recorder (`metrics::with_local_recorder`) report to it, but one
//! made where an earlier one was, while groups built under the earlier one live, is taken for
//! it. A recorder that panics while registering leaves the group without metrics, not
//! without a build. Counters and gauges are read
//! under the group's lock after each change (a schedule, a start, an end, a cancel, a limit)
//! and on each [`Group::history`] read, and handed to the recorder after the lock is
//! released, one thread at a time per name, so they always add up as [`Stats`] does, a
//! counter never goes back, and a gauge ends at the latest reading. The waiting gauge is the
//! count [`History::waiting`] reads (amortized O(log n) per task, once in its life); tasks
//! that fall due while the group is at its cap and nothing else happens show at the next
//! change or read.
//!
//! Neither feature runs the subscriber or the recorder under a lock, and one that panics
//! loses that one report: the task, its slot and the group carry on. Start lateness and run
//! time are measured on the group's own clock, also when another group's task freed the
//! slot.
//!
//! # Guarantees
//!
//! Each line names the tests (`tests/<file>.rs`) that prove it. `model::*` is a property test
//! that checks random operation sequences against a reference model after every step.
//!
//! - A task never starts before its deadline; on a paused clock it starts at it:
//!   `timing::task_starts_at_its_deadline_and_never_before`, `model::*`.
//! - Due tasks start in deadline order, equal deadlines in schedule order:
//!   `timing::equal_deadlines_start_in_schedule_order`,
//!   `timing::cap_one_runs_in_deadline_then_schedule_order_even_when_all_are_due`,
//!   `model::with_cap_one_and_no_cap_changes_starts_follow_deadline_then_schedule_order`.
//! - A past deadline or zero delay runs at once: `timing::past_deadline_and_zero_delay_run_as_soon_as_possible`,
//!   `bad_input::an_instant_far_in_the_past_runs_at_once_and_first`.
//! - Odd input never panics: `timing::huge_delays_never_panic_and_simply_wait`,
//!   `bad_input::caps_beyond_a_semaphores_limit_work`,
//!   `bad_input::a_very_large_batch_scheduled_then_cancelled_leaves_nothing` (10,000,000 tasks
//!   with `SCHEDGROUP_HEAVY=1`).
//! - A task runs at most once, and ends exactly once: completed, panicked or cancelled (a task
//!   cancelled while it ran had begun; one whose cancel failed had run):
//!   `stress::scheduling_from_threads_while_tasks_fire_loses_and_repeats_nothing`,
//!   `stress::a_task_is_either_run_or_cancelled_never_both_never_neither`, `model::*`.
//! - Running tasks never exceed the cap, even while it changes:
//!   `cap::running_tasks_never_exceed_the_cap`,
//!   `stress::cap_changes_racing_with_completions_never_exceed_the_cap_or_stall`, `model::*`.
//! - Due tasks beyond the cap wait in the queue, not as tokio tasks (at most cap + 1 live):
//!   `cap::due_tasks_beyond_the_cap_wait_in_the_queue_not_as_tokio_tasks`.
//! - Raising the cap starts waiting tasks at once; lowering it aborts nothing; 0 pauses:
//!   `cap::raising_the_cap_starts_waiting_tasks_at_once`,
//!   `cap::lowering_the_cap_aborts_nothing_and_starts_nothing_until_below_it`,
//!   `cap::a_cap_of_zero_pauses_starts_until_raised`.
//! - `wait()` resolves exactly when nothing is pending or running, for every waiter, and covers
//!   work scheduled while it waits: `wait::*`,
//!   `stress::wait_never_hangs_when_tasks_fire_microseconds_apart`, `model::*`.
//! - `wait()` is cancel safe: `wait::dropping_a_wait_loses_nothing`.
//! - Cancellation drops pending futures before `cancel()` returns, aborts running ones, drops
//!   later schedules at once, and never cancels the parent token:
//!   `cancel::cancel_drops_pending_futures_before_returning`,
//!   `cancel::cancel_aborts_running_tasks_at_their_next_await`,
//!   `cancel::a_task_scheduled_after_cancellation_is_dropped_at_once`,
//!   `cancel::parent_token_cancels_the_group_but_the_group_never_cancels_the_parent`.
//! - After cancellation, `wait()` returns only once every future is gone:
//!   `stress::a_parent_cancelled_from_a_plain_thread_stops_everything`.
//! - A handle's `cancel` drops a pending task's future before returning, and stops a running
//!   one at its next `.await`; `reschedule` moves a pending task; a stale handle can never
//!   reach another task: `outputs::cancel_stops_a_running_task_at_its_await_and_frees_its_slot`,
//!   `hostile_outputs::an_abort_is_never_lost_by_a_runner_polled_while_another_abort_is_published`,
//!   `hostile_outputs2::an_abort_storm_from_many_threads_never_leaves_a_runner_deaf`,
//!   `cancel::handle_cancel_drops_the_future_before_returning`,
//!   `cancel::reschedule_moves_a_pending_task_later_or_earlier`,
//!   `cancel::a_stale_handle_never_touches_a_task_that_reused_its_slot`,
//!   `stress::reschedule_racing_with_the_deadline_either_moves_the_task_or_finds_it_started`.
//! - Every task scheduled for its output yields exactly one result, after the group counted its
//!   end and before `wait()` returns: `model::*` (every `JoinHandle` and `Results` against the
//!   model), `outputs::a_received_output_finds_the_task_counted_finished_and_not_cancellable`,
//!   `outputs::wait_returns_after_every_result_is_delivered`,
//!   `hostile_outputs::results_get_exactly_one_result_per_task_with_the_right_cause`,
//!   `hostile_outputs2::wait_never_returns_before_a_result_the_runtimes_shutdown_delivers`,
//!   `hostile_outputs2::a_join_handle_dropped_as_its_task_panics_never_loses_the_panic`,
//!   `hostile_outputs3::wait_names_every_unreported_panic_after_a_taken_panic_leaves_the_list`,
//!   `hostile_outputs3::stats_completed_never_goes_backwards`.
//! - A panic in a task, or in its `Drop`, is contained, counted and reported:
//!   `cap::a_panicking_task_frees_its_slot`, `faults::a_panic_while_others_run_disturbs_nothing`,
//!   `faults::drops_that_panic_on_group_cancel_are_contained_pending_and_running`.
//! - A future's `Drop` may schedule into or cancel its own group without deadlock:
//!   `cancel::a_cancelled_futures_drop_may_use_the_group`,
//!   `faults::a_drop_that_cancels_its_own_group_does_not_deadlock`.
//! - Dropping every clone cancels nothing: `lifecycle::dropping_every_clone_cancels_nothing`.
//! - When `wait()` returns, every future of the group has been dropped and the group holds no
//!   slot; the group's last tokio tasks (the runner that ended the last task, a monitor about
//!   to exit) poll no future of the group again and exit as soon as the runtime runs them, with
//!   no time passing: `after_wait::item6_*`.
//! - Nothing leaks: the monitor exits when the queue empties, and heap bytes and live tokio
//!   tasks return to baseline after `wait()` (and a turn of the runtime), cancellation and
//!   dropping every clone:
//!   `lifecycle::the_monitor_exits_when_runners_take_the_last_tasks_under_a_cap`,
//!   `cancel::cancelling_every_pending_task_by_handle_lets_the_monitor_exit`,
//!   `leaks::memory_and_tokio_tasks_return_to_their_baseline`, and at a million tasks,
//!   `leaks::a_million_cancelled_tasks_give_back_every_byte` (release mode, `--ignored`).
//! - The counters add up in every snapshot: `stats::*`,
//!   `stress::counters_add_up_in_every_snapshot_under_load`, `model::*`.
//! - Any thread can schedule and cancel, with or without a runtime, and another runtime can
//!   wait: `lifecycle::plain_threads_schedule_and_cancel_without_a_runtime_context`,
//!   `faults::a_group_built_on_one_runtime_is_used_from_another`.
//! - With a [`Limiter`], no group exceeds its `k` and all together never exceed `N`:
//!   `limiter::k_per_group_and_n_overall_are_never_exceeded`,
//!   `limiter::eight_groups_under_random_load_keep_k_and_n_on_every_start`,
//!   `limiter_stress::limit_storms_never_exceed_k_or_n_strand_a_task_or_leak_a_slot`, and the
//!   models below.
//! - The slot protocol (a group's cap, a shared limiter, `acquire()`) is one runtime-free state
//!   machine, checked after every step of a property model with several groups, random caps,
//!   `acquire()` callers, cancels, drops, limit changes and throttles, for safety (k, N, never
//!   early, never twice, earliest deadline first by current heads) and liveness (a free slot
//!   goes to due work, every timer is set, every slot comes back):
//!   `pool::model::many_groups_and_acquirers_on_one_pool_follow_the_protocol` (unit test), and
//!   on a real runtime `model_limiter::groups_sharing_a_limiter_match_the_model`.
//! - Work conservation: whenever every task has yielded, a limiter with a free slot has no group
//!   with a due task below its own cap and no `acquire()` waiting:
//!   `limiter_defects::free_slots_never_sit_idle_while_a_group_has_due_work`, the models.
//! - A freed limiter slot goes to the earliest *current* due head among every group and
//!   `acquire()` in line, ties to whoever waited first; a group at its own cap holds no slot
//!   back: `limiter::the_earliest_deadline_among_all_groups_wins_a_freed_slot`,
//!   `limiter::equal_deadlines_go_to_the_group_that_started_waiting_first`,
//!   `limiter::acquire_waits_in_the_same_line_as_the_groups`,
//!   `limiter::a_group_at_its_own_cap_holds_no_slot_back_from_others`,
//!   `limiter_defects::a_cancelled_heads_deadline_never_jumps_the_line`,
//!   `limiter_defects::cancelling_the_due_head_while_its_group_waits_in_line_strands_nothing`.
//! - A task starts at or after its deadline on its own group's clock, whoever frees the slot:
//!   `limiter_defects::a_slot_freed_on_a_clock_that_is_ahead_never_starts_a_task_early`.
//! - Limiter limits change at run time (raising starts waiters at once, lowering aborts
//!   nothing, 0 pauses), and no limiter slot is ever leaked; cancelled and dropped groups leave
//!   the line: `limiter::limiter_limits_change_at_run_time`,
//!   `limiter::a_dropped_acquire_gives_up_its_place_and_leaks_no_slot`,
//!   `limiter::cancelled_or_dropped_groups_in_line_leak_no_slot`,
//!   `limiter_defects::raising_a_limit_after_a_declined_grant_leaks_no_slot`,
//!   `limiter_defects::cancelled_or_dropped_groups_leave_the_line`, `limiter_stress::*`.
//! - After `wait()` returns, the group holds no limiter slot:
//!   `limiter_defects::after_wait_returns_the_group_holds_no_limiter_slot`.
//! - Dropping a runtime with any number of groups in a limiter's line neither recurses nor
//!   aborts, and hands the slots on:
//!   `limiter_defects::dropping_a_runtime_with_thousands_of_groups_in_line_neither_recurses_nor_aborts`,
//!   `limiter_stress::a_runtime_shut_down_mid_work_hands_its_slots_to_groups_on_another_runtime`.
//! - Throttling follows its step, floor, ceiling and hold rules and says why it refuses:
//!   `throttle::*`; a limit of `usize::MAX` (no cap) is refused as `Uncapped` and left alone:
//!   `api_tidy::throttling_an_uncapped_group_is_refused_as_uncapped_and_changes_nothing`,
//!   `api_tidy::throttling_a_limiter_of_usize_max_is_refused_as_uncapped_and_changes_nothing`.
//! - History counts and rolls off its windows: `limiter::history_counts_then_rolls_off_for_groups_and_their_limiter`;
//!   a window's `completed`, `panicked` and `cancelled` mean what [`Stats`]'s do, `ended` is
//!   their sum and a limiter counts slots `freed`:
//!   `api_tidy::window_completed_panicked_cancelled_mean_what_stats_say_and_ended_is_their_sum`.
//! - History reports start lateness, run time and waiting exactly on the paused clock, and
//!   its percentiles stay in the exact percentile's bin: `history::windows_report_*`,
//!   `history::a_limiters_windows_*`, `history::tests::windows_agree_with_a_model_that_keeps_every_event`
//!   (unit test). The `tracing` feature's spans and events, and the `metrics` feature's
//!   counters, gauges and histograms through a real Prometheus exporter, match what happened
//!   and what [`Stats`] says: `observe_tracing::*`, `observe_metrics::*` (with the features).
//! - The README's example compiles, runs, and ends a shutdown on purpose with `Ok`: the
//!   `ReadmeDoctests` doc test.
//! - A repeating series ([`Group::every`], [`Group::every_at`]) runs at `start`, `start +
//!   period`, ... on the paused clock, its runs never overlap, a missed tick does what it does
//!   in a loop over tokio's `Interval` with the same [`MissedTickBehavior`], each run is one
//!   task of the group under its cap, and a series costs one pending task and no tokio task:
//!   `every::runs_happen_exactly_at_start_and_every_period_after`, `every::missed_ticks_*`,
//!   `every::cap_one_is_shared_with_other_tasks_and_a_run_waits_for_its_slot`,
//!   `every::many_series_cost_one_pending_task_each_and_no_tokio_task`. After
//!   [`Every::stop`] returns no run starts (one that began on another thread just before may
//!   still be calling `make()`), the pending run is dropped and a started run finishes; the group's cancellation stops the series; dropping the handle detaches it;
//!   `wait()` waits while a series is live: `every::stop_*`,
//!   `every::a_run_the_group_already_took_from_the_queue_calls_no_make_after_stop`,
//!   `every::group_cancel_stops_the_series_pending_or_running`,
//!   `every::dropping_the_handle_detaches_the_series_until_the_group_is_cancelled`,
//!   `every::wait_waits_while_a_series_is_live_and_resolves_once_it_is_stopped`.
//! - A runtime shutdown cancels the group instead of hanging `wait()`:
//!   `lifecycle::runtime_shutdown_with_pending_and_running_tasks_cancels_the_group`.
//! - Only documented behaviour of tokio and tokio-util is relied on: the lock-free
//!   cancellation check is used only after a run-time probe sees tokio-util wake waiters inside
//!   `cancel()`, and runners follow the waker of their latest poll: `cancel::tests::item7_*`.
//! - User code that panics (a future, its `Drop`, a panic payload's `Drop`, a waker) is
//!   caught; the task counts as panicked or cancelled and no slot is lost:
//!   `hardening_panics::*`, `hostile_resume::a_panicking_waker_*`.
//! - Task ids are unique within a group, even for refused tasks and reused slots, and a running
//!   task sees its own: `identity::*`, `hostile_identity::*`.
//! - Each panic is reported by one `wait()`, with the ids of the first eight:
//!   `faults::each_panic_is_reported_once_with_its_task_id`,
//!   `hostile_identity::concurrent_waiters_report_each_panic_exactly_once`.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.86 (edition 2024). Raising it is a minor-version change.
//!
//! [`MissedTickBehavior`]: tokio::time::MissedTickBehavior
//! [`JoinSet`]: tokio::task::JoinSet
//! [`TaskTracker`]: https://docs.rs/tokio-util/latest/tokio_util/task/task_tracker/struct.TaskTracker.html
//! [`DelayQueue`]: https://docs.rs/tokio-util/latest/tokio_util/time/delay_queue/struct.DelayQueue.html

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod adaptive;
mod cancel;
mod clock;
mod directory;
mod driver;
mod error;
mod every;
mod group;
mod handle;
mod history;
mod id;
mod limit;
mod limiter;
mod observe;
mod ops;
mod output;
mod pool;
mod queue;
mod registry;
mod shared;
mod stats;
mod task;
mod throttle;

pub use crate::adaptive::{Adaptive, AdaptiveState, Algorithm, Decision, Reason};
pub use crate::error::{CancelledBy, JoinError, WaitError};
pub use crate::every::Every;
pub use crate::group::{Builder, Group};
pub use crate::handle::TaskHandle;
pub use crate::history::{History, Percentiles, Window};
pub use crate::id::{TaskId, task_id};
pub use crate::limiter::{Limiter, LimiterPermit};
pub use crate::output::{JoinHandle, Results};
pub use crate::registry::{Component, Kind, Registry};
pub use crate::stats::Stats;
pub use crate::throttle::{Throttle, ThrottleOutcome};

/// The README's code blocks, run as doc tests so they keep compiling and keep saying what
/// holds.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
