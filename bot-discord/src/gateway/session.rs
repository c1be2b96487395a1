//! A gateway session: what a resume needs.

/// The session a shard resumes after a reconnection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `session_id` from READY.
    pub id: String,
    /// `resume_gateway_url` from READY: where to resume (resuming elsewhere disconnects more).
    pub resume_url: String,
    /// The sequence of the last dispatch handed to the runtime.
    pub sequence: u64,
}
