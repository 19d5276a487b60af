//! Run futures at or after a point in time, with a cap on how many run at once.
//!
//! A [`Group`] holds futures that must not run yet: a reply delayed by a random 0-500 ms, a
//! retry after a backoff, a cache entry's expiry, a batch of requests to send gently. It keeps
//! them in one deadline-ordered queue and runs one monitor task that sleeps on a single timer
//! until the earliest deadline. When tasks fall due it starts them in deadline order, as many as
//! the group's cap allows; the rest wait in the queue. [`Group::wait`] resolves when nothing is
//! pending or running.
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
//! # What a pending task costs
//!
//! A pending task is its boxed future plus 32 bytes in the group's queue: no tokio task, no
//! timer, no polling. A million pending tasks are one tokio task and one timer. `BENCHMARKS.md`
//! in the repository measures this against the alternatives below.
//!
//! # When to use it instead of...
//!
//! | you would write | what it costs per pending task | what a `Group` adds |
//! |---|---|---|
//! | `tokio::spawn(async { sleep(d).await; work().await })` | a tokio task and a timer entry, polled once when it fires | one task and one timer per group; a cap that keeps due work queued instead of parked on a semaphore; `wait()`; cancel and reschedule by handle |
//! | a [`JoinSet`] of sleeping futures | the same, plus the set's bookkeeping | the same; results are not collected (a task is `Future<Output = ()>`) |
//! | [`TaskTracker`] + spawn + sleep | the same | the same; `wait()` also says whether tasks panicked or the group was cancelled |
//! | one task driving a [`DelayQueue`] and spawning what expires | a queue entry; you write the driver loop, the cap and the shutdown | the driver, the cap, cancellation, `wait()`, handles that can never name the wrong entry |
//!
//! Use a `JoinSet` when you need each task's output, and `DelayQueue` when you want expired
//! *values* handed to your own loop rather than futures run for you.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.85 (edition 2024). Raising it is a minor-version change.
//!
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

mod cancel;
mod clock;
mod error;
mod group;
mod handle;
mod limit;
mod monitor;
mod queue;
mod runner;
mod shared;
mod stats;
mod task;

pub use crate::error::WaitError;
pub use crate::group::{Builder, Group};
pub use crate::handle::TaskHandle;
pub use crate::stats::Stats;
