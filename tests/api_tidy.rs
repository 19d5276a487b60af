//! The 0.x API tidy-up (issue 10): one name per knob, one meaning per word, a clear outcome for
//! throttling what has no cap. On the paused clock.

mod common;

use std::time::Duration;

use common::{bounded, settle};
use schedgroup::Group;

/// `Group::set_limit`/`limit` are deprecated in favour of `set_max_concurrent`/`max_concurrent`
/// but keep working, on the same cap.
#[tokio::test(start_paused = true)]
#[allow(deprecated)]
async fn deprecated_group_set_limit_and_limit_still_name_the_max_concurrent_cap() {
    let group = Group::builder().max_concurrent(0).build();
    assert_eq!(group.limit(), 0);
    group.delay(Duration::ZERO, async {});
    settle().await;
    assert_eq!(group.stats().pending, 1, "a cap of 0 holds the task back");

    assert!(group.set_limit(3), "the cap changed");
    assert!(!group.set_limit(3), "the same cap again changes nothing");
    assert_eq!((group.limit(), group.max_concurrent()), (3, 3));
    bounded(group.wait()).await.unwrap();
    assert_eq!(
        group.stats().completed,
        1,
        "raising it through set_limit started the task"
    );

    assert!(group.set_max_concurrent(5));
    assert_eq!(
        group.limit(),
        5,
        "limit() reads the cap set_max_concurrent set"
    );
}
