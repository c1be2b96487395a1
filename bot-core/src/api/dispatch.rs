//! [`Dispatch`]: whether the calls of a scope got as far as writing a request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

tokio::task_local! {
    /// Set by the client core when a call made within a [`Dispatch::scope`] writes a request.
    static DISPATCHED: Arc<Flag>;
}

/// One scope's flag, and the flag of the scope it was made in: a request written in a scope is
/// written in every scope around it.
#[derive(Debug, Default)]
struct Flag {
    written: AtomicBool,
    outer: Option<Arc<Flag>>,
}

/// Notes, for the [`Dispatch`] scopes around the current call, that a request is being written.
pub(crate) fn note_dispatched() {
    let _ = DISPATCHED.try_with(|flag| {
        let mut flag = Some(flag);
        while let Some(f) = flag {
            f.written.store(true, Ordering::Release);
            flag = f.outer.as_ref();
        }
    });
}

/// Whether the API calls made within [`Dispatch::scope`] got as far as writing a request: until
/// then nothing can have reached the platform (the call was waiting for a rate limit, or cut off
/// before it left the process). A scope made within another's (a send's parts within a whole
/// send) reports its writes to that one too.
#[derive(Debug, Clone)]
pub struct Dispatch(Arc<Flag>);

impl Default for Dispatch {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatch {
    /// A scope in which nothing was written yet, within the scope of the current task if any.
    pub fn new() -> Self {
        Self(Arc::new(Flag {
            written: AtomicBool::new(false),
            outer: DISPATCHED.try_with(Arc::clone).ok(),
        }))
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
        self.0.written.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_in_an_inner_scope_is_a_write_in_the_outer_one() {
        let outer = Dispatch::new();
        let (inner, untouched) = outer
            .scope(async {
                // Made within the outer scope, as a send's parts are within the whole send.
                let inner = Dispatch::new();
                inner.scope(async { note_dispatched() }).await;
                let untouched = Dispatch::new();
                untouched.scope(async {}).await;
                (inner, untouched)
            })
            .await;
        assert!(inner.happened());
        assert!(!untouched.happened());
        assert!(
            outer.happened(),
            "the outer scope saw the inner one's write"
        );
        // A scope made outside any other reports to none.
        let alone = Dispatch::new();
        let other = Dispatch::new();
        alone.scope(async { note_dispatched() }).await;
        assert!(alone.happened() && !other.happened());
    }

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
