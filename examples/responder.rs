//! A router's advertisement responder in the style of CoreRAD, following RFC 4861 6.2.6.
//!
//! Each router solicitation is answered after a random delay of 0-500 ms
//! (`MAX_RA_DELAY_TIME`), and multicast answers are rate limited to one every 3 s
//! (`MIN_DELAY_BETWEEN_RAS`): a solicitation that arrives while a multicast answer is already
//! scheduled is folded into it, and a new one is pushed back to 3 s after the last. Unicast
//! answers are capped at 4 in flight. Shutdown cancels everything still pending.
//!
//! The router also sends unsolicited multicast advertisements (RFC 4861 6.2.4) with
//! `Group::every_at`: one as the interface comes up, then one every `ADVERT_INTERVAL`. RFC 4861
//! asks for a random interval between MinRtrAdvInterval and MaxRtrAdvInterval and for faster
//! initial adverts; this example keeps a fixed period, which `every` gives as is. The adverts
//! share the solicited answers' rate limit: each records when it went out, and a solicited
//! answer is pushed back to 3 s after it. The shutdown's cancellation stops the series.
//!
//! Solicitations are simulated (a burst, then a steady trickle); nothing touches the network.
//! Run it with:
//!
//! ```text
//! cargo run --example responder
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use schedgroup::{Every, Group, TaskHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const MAX_RA_DELAY: Duration = Duration::from_millis(500);
const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// A fixed advert period: RFC 4861's smallest allowed MaxRtrAdvInterval, so that the short
/// demo shows a few.
const ADVERT_INTERVAL: Duration = Duration::from_secs(4);

/// The state of the multicast rate limit.
struct Multicast {
    /// The scheduled multicast answer, if one is pending.
    next: Option<TaskHandle>,
    /// When the last multicast answer went out.
    last_sent: Option<Instant>,
}

struct Responder {
    start: Instant,
    multicast_group: Group,
    unicast_group: Group,
    multicast: Arc<Mutex<Multicast>>,
}

impl Responder {
    fn new(shutdown: &CancellationToken) -> Self {
        Self {
            start: Instant::now(),
            multicast_group: Group::builder()
                .name("ra-multicast")
                .cancellation_token(shutdown.clone())
                .build(),
            unicast_group: Group::builder()
                .name("ra-unicast")
                .max_concurrent(4)
                .cancellation_token(shutdown.clone())
                .build(),
            multicast: Arc::new(Mutex::new(Multicast {
                next: None,
                last_sent: None,
            })),
        }
    }

    /// Starts the unsolicited adverts: now, then every `ADVERT_INTERVAL`. Runs never overlap,
    /// and an advert delayed past its tick is sent once, late, rather than in a burst.
    fn advertise(&self) -> Every {
        let (start, shared) = (self.start, self.multicast.clone());
        let adverts = self
            .multicast_group
            .every_at(Instant::now(), ADVERT_INTERVAL, move || {
                let shared = shared.clone();
                async move {
                    shared.lock().unwrap().last_sent = Some(Instant::now());
                    println!(
                        "{:>6} ms  unsolicited multicast RA to all-nodes",
                        start.elapsed().as_millis()
                    );
                }
            });
        adverts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        adverts
    }

    fn elapsed(&self) -> u128 {
        self.start.elapsed().as_millis()
    }

    /// A solicitation from `from`; `unicast` if the host asked for a unicast answer.
    fn solicit(&self, from: &'static str, unicast: bool) {
        let delay = rand::rng().random_range(Duration::ZERO..=MAX_RA_DELAY);
        if unicast {
            let start = self.start;
            self.unicast_group.delay(delay, async move {
                println!(
                    "{:>6} ms  unicast RA to {from}",
                    start.elapsed().as_millis()
                );
            });
            return;
        }
        let mut state = self.multicast.lock().unwrap();
        if state.next.as_ref().is_some_and(TaskHandle::is_pending) {
            println!(
                "{:>6} ms  RS from {from}: folded into the pending multicast RA",
                self.elapsed()
            );
            return;
        }
        let mut at = Instant::now() + delay;
        if let Some(last) = state.last_sent {
            at = at.max(last + MIN_DELAY_BETWEEN_RAS);
        }
        println!(
            "{:>6} ms  RS from {from}: multicast RA at {} ms",
            self.elapsed(),
            (at - self.start).as_millis()
        );
        let (start, shared) = (self.start, self.multicast.clone());
        let handle = self.multicast_group.schedule(at, async move {
            shared.lock().unwrap().last_sent = Some(Instant::now());
            println!(
                "{:>6} ms  multicast RA to all-nodes",
                start.elapsed().as_millis()
            );
        });
        state.next = Some(handle);
    }
}

#[tokio::main]
async fn main() {
    let shutdown = CancellationToken::new();
    let responder = Responder::new(&shutdown);
    let adverts = responder.advertise();

    // A burst of hosts coming up at once, then one solicitation every 700 ms.
    let hosts = ["a", "b", "c", "d", "e", "f"];
    for (i, host) in hosts.iter().enumerate() {
        responder.solicit(host, i % 3 == 0);
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(700));
    ticker.tick().await;
    for i in 0..10 {
        ticker.tick().await;
        responder.solicit(hosts[i % hosts.len()], i % 4 == 0);
    }

    // Shut down with answers still pending: they are dropped, not sent.
    println!("{:>6} ms  shutting down", responder.elapsed());
    shutdown.cancel();
    assert!(
        adverts.is_stopped(),
        "the group's cancellation stops the series"
    );
    for group in [&responder.multicast_group, &responder.unicast_group] {
        let result = group.wait().await;
        let stats = group.stats();
        println!(
            "{:?}: {} sent, {} cancelled at shutdown ({})",
            group.name().unwrap_or("?"),
            stats.completed,
            stats.cancelled,
            match result {
                Ok(()) => "ok".to_string(),
                Err(e) => e.to_string(),
            }
        );
    }
}
