//! Outputs back to the requester: four clients send requests through one capped group, and
//! each gets its own replies back; an audit then checks that every request was answered once.
//!
//! The group is a backend that runs at most 8 requests at once. Each request may start after a
//! random 0-50 ms and then takes 1-8 ms. Of each client's 25 requests, 3 return `Err` as their
//! output, 2 panic, and 1 is slow (2 s): the client gives up on it 200 ms after sending and
//! cancels it by its handle. Clients 0 and 2 keep a `JoinHandle` per request
//! (`delay_join`) and await each in the order they sent them; clients 1 and 3 send through
//! their own `Results` and collect `(TaskId, result)` pairs with `join_next`, in the order the
//! requests end.
//!
//! At the end it prints, per client and in total, how many requests were sent and how many
//! replies came back (ok, `Err` output, cancelled, panicked), and checks them against the
//! group's `stats()`: it prints `audit: received = done`, or exits with status 1. The
//! deliberate panics are kept off stderr by a panic hook that lets every other panic through.
//! A seeded RNG draws the requests, so every run sends the same ones. It takes about 0.2 s:
//!
//! ```text
//! cargo run --example results
//! ```

use std::any::Any;
use std::collections::HashSet;
use std::ops::AddAssign;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use schedgroup::{CancelledBy, Group, JoinError};
use tokio::time::{Instant, sleep, sleep_until, timeout_at};

const CLIENTS: u64 = 4;
const REQUESTS: usize = 25;
const GIVE_UP: Duration = Duration::from_millis(200);
const CRASH: &str = "simulated backend crash";

/// A request's reply, when the backend answers at all.
type Reply = Result<u64, &'static str>;

/// How one request will go, drawn by its client up front.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Ok,
    Refused,
    Panics,
    Slow,
}

/// The request: a simulated latency, then the reply its fate says.
async fn serve(n: u64, fate: Fate, latency: Duration) -> Reply {
    sleep(latency).await;
    match fate {
        Fate::Ok => Ok(n * n),
        Fate::Refused => Err("refused: quota exceeded"),
        Fate::Panics => panic!("{CRASH}"),
        Fate::Slow => {
            sleep(Duration::from_secs(2)).await;
            Ok(n)
        }
    }
}

/// A client's requests, in a random order: their fates, start delays and latencies.
fn requests(rng: &mut StdRng) -> Vec<(Fate, Duration, Duration)> {
    let bad = [Fate::Refused; 3].into_iter().chain([Fate::Panics; 2]);
    let mut fates: Vec<Fate> = bad.chain([Fate::Slow]).collect();
    fates.resize(REQUESTS, Fate::Ok);
    fates.shuffle(rng);
    let mut ms = |range| Duration::from_millis(rng.random_range(range));
    fates
        .into_iter()
        .map(|f| (f, ms(0..=50), ms(1..=8)))
        .collect()
}

/// What a client sent and got back.
#[derive(Default, Clone, Copy)]
struct Tally {
    sent: u64,
    ok: u64,
    refused: u64,
    cancelled: u64,
    panicked: u64,
}

impl Tally {
    fn received(&self) -> u64 {
        self.ok + self.refused + self.cancelled + self.panicked
    }

    /// Counts one reply; an error must be a cancellation by handle or one of our panics.
    fn count(&mut self, result: Result<Reply, JoinError>) {
        match result {
            Ok(Ok(_)) => self.ok += 1,
            Ok(Err(_)) => self.refused += 1,
            Err(e) if e.cancelled_by() == Some(CancelledBy::Handle) => self.cancelled += 1,
            Err(e) => {
                assert!(is_crash(&*e.into_panic()), "only our own panics");
                self.panicked += 1;
            }
        }
    }
}

impl AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.sent += o.sent;
        self.ok += o.ok;
        self.refused += o.refused;
        self.cancelled += o.cancelled;
        self.panicked += o.panicked;
    }
}

/// Whether a panic's payload is one of ours.
fn is_crash(payload: &(dyn Any + Send)) -> bool {
    let message = payload.downcast_ref::<String>().map(String::as_str);
    message.or_else(|| payload.downcast_ref::<&str>().copied()) == Some(CRASH)
}

/// Awaits each reply in the order sent, giving up on those not in by `GIVE_UP`.
async fn client_join(backend: Group, rng: &mut StdRng) -> (Tally, String) {
    let mut tally = Tally::default();
    let give_up = Instant::now() + GIVE_UP;
    let mut handles = Vec::new();
    for (n, (fate, delay, latency)) in (0..).zip(requests(rng)) {
        handles.push(backend.delay_join(delay, serve(n, fate, latency)));
        tally.sent += 1;
    }
    for mut handle in handles {
        let id = handle.id();
        let result = match timeout_at(give_up, &mut handle).await {
            Ok(result) => result,
            Err(_elapsed) => {
                handle.cancel();
                handle.await
            }
        };
        if let Err(e) = &result {
            assert_eq!(e.id(), id, "an error names its task");
        }
        tally.count(result);
    }
    (tally, "awaited in the order sent".into())
}

/// Collects replies in the order the requests end, with their ids; the slow ones are cancelled
/// from another task when the client gives up on them.
async fn client_results(backend: Group, rng: &mut StdRng) -> (Tally, String) {
    let mut tally = Tally::default();
    let give_up = Instant::now() + GIVE_UP;
    let mut results = backend.results::<Reply>();
    let (mut sent, mut slow) = (HashSet::new(), Vec::new());
    for (n, (fate, delay, latency)) in (0..).zip(requests(rng)) {
        let handle = results.delay(delay, serve(n, fate, latency));
        sent.insert(handle.id());
        if fate == Fate::Slow {
            slow.push(handle);
        }
        tally.sent += 1;
    }
    tokio::spawn(async move {
        sleep_until(give_up).await;
        for handle in slow {
            handle.cancel();
        }
    });
    let mut first = Vec::new();
    while let Some((id, result)) = results.join_next().await {
        assert!(sent.remove(&id), "task {id}: not sent, or received twice");
        if first.len() < 5 {
            first.push(id.to_string());
        }
        tally.count(result);
    }
    (
        tally,
        format!("ended first: tasks {}, ...", first.join(", ")),
    )
}

#[tokio::main]
async fn main() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_crash(info.payload()) {
            previous(info);
        }
    }));

    let backend = Group::builder().name("backend").max_concurrent(8).build();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(10 + c);
                if c % 2 == 0 {
                    ("join", client_join(backend, &mut rng).await)
                } else {
                    ("results", client_results(backend, &mut rng).await)
                }
            })
        })
        .collect();

    let row = |name: &str, t: &Tally, note: &str| {
        let (s, r) = (t.sent, t.received());
        let (ok, err, c, p) = (t.ok, t.refused, t.cancelled, t.panicked);
        let line = format!("{name:<16} {s:>4} {ok:>4} {err:>4} {c:>9} {p:>8} {r:>8}  {note}");
        println!("{}", line.trim_end());
    };
    println!("client            sent   ok  err cancelled panicked received");
    let mut total = Tally::default();
    for (c, client) in clients.into_iter().enumerate() {
        let (via, (tally, note)) = client.await.expect("a client panicked");
        row(&format!("{c} ({via})"), &tally, &note);
        total += tally;
    }
    row("total", &total, "");

    // Every reply is in, so the group has counted every request's end already (a requester
    // hears only after that); and the clients received every panic, so `wait()` reports none.
    let stats = backend.stats();
    println!("{stats:?}");
    let waited = backend.wait().await;
    println!(
        "wait(): {}",
        waited
            .as_ref()
            .map_or_else(|e| e.to_string(), |()| "ok".into())
    );
    let t = &total;
    let checks = [
        ("received == sent", t.received() == t.sent),
        ("scheduled == sent", stats.scheduled == t.sent),
        ("completed == ok + err", stats.completed == t.ok + t.refused),
        ("cancelled", stats.cancelled == t.cancelled),
        ("panicked", stats.panicked == t.panicked),
        ("nothing left", stats.pending + stats.running == 0),
        ("wait() ok", waited.is_ok()),
    ];
    let failed: Vec<&str> = checks.iter().filter(|c| !c.1).map(|c| c.0).collect();
    if failed.is_empty() {
        println!("audit: received = done");
    } else {
        eprintln!("audit failed: {}", failed.join(", "));
        std::process::exit(1);
    }
}
