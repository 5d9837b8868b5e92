//! The one way the node takes a `std::sync::Mutex`.
//!
//! Every mutex in the node guards data that is consistent after each statement (a counter,
//! a single insert or remove): a thread that panicked while holding one leaves nothing
//! half-done, so the others carry on with it rather than panic in turn.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locking that outlives a panic elsewhere.
pub trait LockExt<T: ?Sized> {
    /// The guard, taken even if another thread panicked while holding it.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_still_taken() {
        let counter = std::sync::Arc::new(Mutex::new(1));
        let holder = std::sync::Arc::clone(&counter);
        let panicked = std::thread::spawn(move || {
            let _guard = holder.locked();
            panic!("while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(counter.is_poisoned());
        *counter.locked() += 1;
        assert_eq!(*counter.locked(), 2);
    }
}
