//! The spec source, looked at on a task of its own: at 10,000 deploy files a
//! full rescan reads for most of a second, and the control loop answers
//! commands meanwhile. The loop starts a look, goes on, and applies the
//! changes when the look hands the source back.

use tokio::sync::oneshot;

use crate::ports::{SpecEvent, SpecSource, SpecSourceError};
use crate::spec::model::RolloutId;

/// What a look found, with the source handed back.
type Looked = (Box<dyn SpecSource>, Result<Vec<SpecEvent>, SpecSourceError>);

/// The spec source: at hand, or looking for changes on its own task.
pub(super) struct Specs {
    source: Option<Box<dyn SpecSource>>,
    looking: Option<oneshot::Receiver<Looked>>,
    /// Retries asked for while the source was away.
    retries: Vec<RolloutId>,
}

impl Specs {
    /// `source`, at hand.
    pub fn new(source: Box<dyn SpecSource>) -> Specs {
        Specs {
            source: Some(source),
            looking: None,
            retries: Vec::new(),
        }
    }

    /// Whether a look is under way.
    pub fn looking(&self) -> bool {
        self.looking.is_some()
    }

    /// Starts a look on its own task, unless one is under way.
    pub fn start(&mut self) {
        let Some(mut source) = self.source.take() else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let found = source.changes().await;
            let _ = tx.send((source, found));
        });
        self.looking = Some(rx);
    }

    /// The changes the look under way found, once it ends (cancel-safe:
    /// dropped before then, the look goes on). `None` when no look is under
    /// way, or the look's task died with the source (a bug, logged).
    pub async fn looked(&mut self) -> Option<Result<Vec<SpecEvent>, SpecSourceError>> {
        let rx = self.looking.as_mut()?;
        let outcome = rx.await;
        self.looking = None;
        match outcome {
            Ok((mut source, found)) => {
                for id in self.retries.drain(..) {
                    source.retry(&id);
                }
                self.source = Some(source);
                Some(found)
            }
            Err(_) => {
                tracing::error!(
                    "the spec source's task ended without handing it back (a bug); specs are no longer read"
                );
                None
            }
        }
    }

    /// What changed, looked at now (waiting for a look under way first).
    pub async fn changes_now(&mut self) -> Result<Vec<SpecEvent>, SpecSourceError> {
        if self.looking() {
            return self.looked().await.unwrap_or(Ok(Vec::new()));
        }
        match self.source.as_mut() {
            Some(source) => source.changes().await,
            None => Ok(Vec::new()),
        }
    }

    /// Offers `id`'s spec again on the next look.
    pub fn retry(&mut self, id: &RolloutId) {
        match self.source.as_mut() {
            Some(source) => source.retry(id),
            None => self.retries.push(id.clone()),
        }
    }
}
