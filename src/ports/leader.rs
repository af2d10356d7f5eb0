//! Whether this process may act: in cluster mode only the holder of the
//! Lease writes; standalone, the one process always may.

/// Asked by the executor before every write (weights, state).
pub trait Leadership: Send + Sync {
    /// True while this process may write.
    fn may_act(&self) -> bool;
}

/// Standalone mode: always the leader.
pub struct AlwaysLeader;

impl Leadership for AlwaysLeader {
    fn may_act(&self) -> bool {
        true
    }
}

impl Leadership for tokio::sync::watch::Receiver<bool> {
    fn may_act(&self) -> bool {
        *self.borrow()
    }
}
