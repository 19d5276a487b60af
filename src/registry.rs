//! [`Registry`]: an opt-in list of groups and limiters, for a dashboard or an exporter that
//! wants to show every one of them without being handed each.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::history::History;
use crate::limiter::Limiter;
use crate::shared::{Domain, Shared};
use crate::stats::Stats;

/// A list of groups and limiters to show together, by their names.
///
/// A registry holds them weakly: registering keeps nothing alive, and a group or limiter that
/// is gone leaves the list at the next [`snapshot`](Registry::snapshot) or registration. (A group is gone
/// once its last handle is dropped and nothing of it is pending or running: its monitor and
/// running tasks hold it too.)
/// Clones share the list. Register a group with [`Builder::registry`](crate::Builder::registry)
/// or [`Registry::add_group`], a limiter with [`Registry::add_limiter`].
///
/// [`Group::name`]: crate::Group::name
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use schedgroup::{Group, Kind, Limiter, Registry};
/// use std::time::Duration;
///
/// let registry = Registry::new();
/// let db = Limiter::named("db", 4);
/// registry.add_limiter(&db);
/// let group = Group::builder().name("sync").limiter(&db).registry(&registry).build();
/// group.delay(Duration::from_secs(1), async {});
///
/// let components = registry.snapshot();
/// assert_eq!(components.len(), 2);
/// assert_eq!((components[0].kind, components[0].name.as_deref()), (Kind::Limiter, Some("db")));
/// assert_eq!((components[1].kind, components[1].name.as_deref()), (Kind::Group, Some("sync")));
/// assert_eq!(components[1].stats.unwrap().pending, 1);
///
/// group.wait().await.unwrap();
/// drop(group); // its last handle: the group is gone
/// assert_eq!(registry.snapshot().len(), 1);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<List>>,
}

#[derive(Default)]
struct List {
    next_id: u64,
    entries: Vec<(u64, Entry)>,
}

enum Entry {
    Group(Weak<Shared>),
    Limiter(Weak<Domain>, Option<Arc<str>>),
}

impl Entry {
    fn is_alive(&self) -> bool {
        match self {
            Entry::Group(weak) => weak.strong_count() > 0,
            Entry::Limiter(weak, _) => weak.strong_count() > 0,
        }
    }
}

/// An entry whose target was alive when the snapshot was taken.
enum Alive {
    Group(Arc<Shared>),
    Limiter(Arc<Domain>, Option<Arc<str>>),
}

/// What a [`Registry::snapshot`] says of one group or limiter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Component {
    /// Given by the registry when the component was added, in order, never reused: a key for
    /// a dashboard's series.
    pub id: u64,
    /// A group or a limiter.
    pub kind: Kind,
    /// [`Group::name`](crate::Group::name) or [`Limiter::name`].
    pub name: Option<String>,
    /// Its [`History`]: running, waiting and limit now, and the last 10 s, 1 min and 5 min.
    pub history: History,
    /// A group's [`Stats`]; `None` for a limiter.
    pub stats: Option<Stats>,
}

/// What a [`Component`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A [`Group`](crate::Group).
    Group,
    /// A [`Limiter`].
    Limiter,
}

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn list(&self) -> std::sync::MutexGuard<'_, List> {
        // Nothing under this lock can panic midway: the list is sound.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add_shared(&self, shared: &Arc<Shared>) -> bool {
        let weak = Arc::downgrade(shared);
        self.add(
            |entry| matches!(entry, Entry::Group(w) if w.ptr_eq(&weak)),
            || Entry::Group(weak.clone()),
        )
    }

    /// Adds `limiter` (all its clones). Returns `false` if it was registered already.
    pub fn add_limiter(&self, limiter: &Limiter) -> bool {
        let weak = Arc::downgrade(limiter.domain());
        let name = limiter.shared_name();
        self.add(
            |entry| matches!(entry, Entry::Limiter(w, _) if w.ptr_eq(&weak)),
            || Entry::Limiter(weak.clone(), name.clone()),
        )
    }

    fn add(&self, same: impl Fn(&Entry) -> bool, entry: impl FnOnce() -> Entry) -> bool {
        let mut list = self.list();
        // Entries whose target is gone go now, so that groups made and dropped between
        // snapshots do not pile up. (Dropping a `Weak` frees memory only: no user code.)
        list.entries.retain(|(_, entry)| entry.is_alive());
        if list.entries.iter().any(|(_, e)| same(e)) {
            return false;
        }
        let id = list.next_id;
        list.next_id += 1;
        list.entries.push((id, entry()));
        true
    }

    /// Every registered group and limiter still alive, in the order they were added, each
    /// read under its own lock (the snapshot is not one instant across components).
    #[must_use]
    pub fn snapshot(&self) -> Vec<Component> {
        // Strong handles are taken under the registry's lock and read and dropped after it:
        // dropping the last handle to a group drops its tasks, which is user code.
        let alive: Vec<(u64, Alive)> = {
            let mut list = self.list();
            let mut alive = Vec::with_capacity(list.entries.len());
            list.entries.retain(|(id, entry)| {
                let strong = match entry {
                    Entry::Group(weak) => weak.upgrade().map(Alive::Group),
                    Entry::Limiter(weak, name) => {
                        weak.upgrade().map(|d| Alive::Limiter(d, name.clone()))
                    }
                };
                let kept = strong.is_some();
                alive.extend(strong.map(|strong| (*id, strong)));
                kept
            });
            alive
        };
        alive
            .into_iter()
            .map(|(id, alive)| match alive {
                Alive::Group(shared) => Component {
                    id,
                    kind: Kind::Group,
                    name: shared.name.as_deref().map(str::to_owned),
                    history: shared.history(),
                    stats: Some(shared.stats()),
                },
                Alive::Limiter(domain, name) => Component {
                    id,
                    kind: Kind::Limiter,
                    name: name.as_deref().map(str::to_owned),
                    history: Limiter::history_of(&domain),
                    stats: None,
                },
            })
            .collect()
    }

    /// How many groups and limiters are registered, counting any whose last handle is gone
    /// and that the next snapshot will drop.
    #[must_use]
    pub fn len(&self) -> usize {
        self.list().entries.len()
    }

    /// Whether nothing is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.len();
        f.debug_struct("Registry").field("len", &len).finish()
    }
}
