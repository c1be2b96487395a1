//! Paused-time tests of the shared limiter on a memory store.
