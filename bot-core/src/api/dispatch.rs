//! [`Dispatch`]: whether the calls of a scope got as far as writing a request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

tokio::task_local! {
    /// Set by the client core when a call made within a [`Dispatch::scope`] writes a request.
    static DISPATCHED: Arc<AtomicBool>;
}

/// Notes, for the [`Dispatch`] scope around the current call, that a request is being written.
pub(crate) fn note_dispatched() {
    let _ = DISPATCHED.try_with(|flag| flag.store(true, Ordering::Release));
}

/// Whether the API calls made within [`Dispatch::scope`] got as far as writing a request: until
/// then nothing can have reached the platform (the call was waiting for a rate limit, or cut off
/// before it left the process).
#[derive(Debug, Clone, Default)]
pub struct Dispatch(Arc<AtomicBool>);

impl Dispatch {
    /// A scope in which nothing was written yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `calls`, noting whether any of them writes a request.
    ///
    /// Not an `async fn`: one would hold `calls` twice in its state (the argument, and the
    /// task-local future it moves into), which doubled the size of every send that uses a mark
    /// (BENCHMARKS.md, issue 14's slow-api memory).
    pub fn scope<F: std::future::Future>(
        &self,
        calls: F,
    ) -> impl std::future::Future<Output = F::Output> + use<F> {
        DISPATCHED.scope(self.0.clone(), calls)
    }

    /// Whether a request was written.
    pub fn happened(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_holds_its_calls_once() {
        // Held for every in-flight send: an `async fn` wrapper stored the calls twice.
        let calls = async {
            let buffer = [0u8; 1024];
            std::future::ready(()).await;
            buffer.len()
        };
        let calls_size = std::mem::size_of_val(&calls);
        let scoped = Dispatch::new().scope(calls);
        assert!(
            std::mem::size_of_val(&scoped) < calls_size + 64,
            "{} bytes to scope a future of {calls_size}",
            std::mem::size_of_val(&scoped)
        );
    }
}
