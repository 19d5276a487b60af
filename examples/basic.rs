//! The smallest useful group: print a number every 500 ms, then wait for all of them.
//!
//! All five tasks are scheduled up front; the group's one monitor task sleeps until each
//! deadline in turn. Run it with:
//!
//! ```text
//! cargo run --example basic
//! ```

use std::time::Duration;

use schedgroup::Group;
use tokio::time::Instant;

#[tokio::main]
async fn main() {
    let group = Group::new();
    let start = Instant::now();
    // Scheduled out of order on purpose: the group runs them by deadline.
    for n in [3u64, 1, 5, 2, 4] {
        group.delay(Duration::from_millis(500 * n), async move {
            println!("{n} (at {:>4} ms)", start.elapsed().as_millis());
        });
    }
    println!("scheduled 5 tasks: {:?}", group.stats());
    group.wait().await.expect("no task panicked");
    println!("all done after {:?}", start.elapsed());
}
