//! The concurrency cap: how many of a group's tasks may run at once, and how many do.
//!
//! Plain bookkeeping, kept under the group's lock. Only the monitor and runners take slots, so
//! no semaphore is needed: a due task that finds no slot stays in the queue.

/// A cap on running tasks. `limit == 0` pauses starts; `usize::MAX` means no cap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cap {
    limit: usize,
    running: usize,
}

impl Cap {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, running: 0 }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Whether one more task may start now.
    pub(crate) fn has_room(&self) -> bool {
        self.running < self.limit
    }

    /// Takes a slot. The caller checked [`Cap::has_room`].
    pub(crate) fn acquire(&mut self) {
        debug_assert!(self.has_room());
        self.running += 1;
    }

    /// Gives a slot back.
    pub(crate) fn release(&mut self) {
        self.running = self
            .running
            .checked_sub(1)
            .expect("released a slot that was not taken");
    }

    /// Sets the limit; running tasks keep their slots. Returns the old limit.
    pub(crate) fn set_limit(&mut self, limit: usize) -> usize {
        std::mem::replace(&mut self.limit, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_below_running_blocks_starts_until_enough_finish() {
        let mut cap = Cap::new(3);
        for _ in 0..3 {
            cap.acquire();
        }
        assert!(!cap.has_room());
        assert_eq!(cap.set_limit(1), 3);
        cap.release();
        assert!(!cap.has_room(), "2 running, limit 1");
        cap.release();
        assert!(!cap.has_room(), "1 running, limit 1");
        cap.release();
        assert!(cap.has_room());
    }

    #[test]
    fn zero_pauses_and_max_is_unbounded() {
        assert!(!Cap::new(0).has_room());
        let mut cap = Cap::new(usize::MAX);
        for _ in 0..1000 {
            cap.acquire();
        }
        assert!(cap.has_room());
        assert_eq!(cap.running(), 1000);
    }
}
