//! One managed rollout (its spec, state and router) and how deploy-file
//! changes add, update or remove it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Controller;
use super::view::{Event, LastDecision, RolloutView};
use crate::engine::{GateResult, RolloutState, Timestamp};
use crate::router::{BuiltinConfig, BuiltinRouter, HaproxyConfig, HaproxyRouter, Router};
use crate::spec::model::{DeploySpec, RolloutId, RouterSpec};

/// A rollout the controller drives.
pub(super) struct Managed {
    pub file: PathBuf,
    pub spec: DeploySpec,
    pub state: RolloutState,
    pub router: Router,
    pub next_tick: Timestamp,
    pub last_decision: Option<LastDecision>,
    pub gates: Vec<GateResult>,
    pub file_error: Option<String>,
    pub health: crate::router::Health,
}

impl Managed {
    pub fn view(&self) -> RolloutView {
        let mut v = RolloutView::of(&self.spec, &self.state, &self.file.display().to_string());
        v.last_decision = self.last_decision.clone();
        v.gates = self.gates.clone();
        // The `validate` report names the file by path: show its name instead.
        v.file_error = self
            .file_error
            .as_ref()
            .map(|report| report.replace(&v.file_path, &v.file));
        v.health = self.health;
        v
    }
}

/// Whether two specs need different routers (not just different weights).
fn same_router(a: &DeploySpec, b: &DeploySpec) -> bool {
    a.router == b.router
}

impl Controller {
    async fn make_router(&self, spec: &DeploySpec) -> Result<Router, String> {
        match &spec.router {
            RouterSpec::Builtin { listen } => {
                let listen = listen.parse().map_err(|_| {
                    format!("router.listen `{listen}` is not an address such as 127.0.0.1:8080")
                })?;
                let (Some(stable), Some(canary)) = (&spec.stable.address, &spec.canary.address)
                else {
                    return Err(
                        "the built-in router needs `stable.address` and `canary.address`"
                            .to_string(),
                    );
                };
                let config = BuiltinConfig {
                    listen,
                    namespace: spec.id.namespace.clone(),
                    route: spec.id.name.clone(),
                    stable: stable.clone(),
                    canary: canary.clone(),
                    health_interval: self.settings.health_interval,
                };
                BuiltinRouter::start(config, self.router_metrics.clone())
                    .await
                    .map(Router::Builtin)
                    .map_err(|e| format!("cannot listen on {listen}: {e}"))
            }
            RouterSpec::Haproxy {
                socket,
                backend,
                stable_server,
                canary_server,
            } => Ok(Router::Haproxy(HaproxyRouter::new(HaproxyConfig {
                socket: socket.clone(),
                backend: backend.clone(),
                stable_server: stable_server.clone(),
                canary_server: canary_server.clone(),
            }))),
            other => Err(format!(
                "router kind `{}` needs cluster mode; standalone mode drives `builtin` and `haproxy`",
                other.kind()
            )),
        }
    }

    pub(super) async fn file_changed(&mut self, path: PathBuf, spec: DeploySpec, now: Timestamp) {
        let id = spec.id.clone();
        if let Some(other) = self.rollouts.get(&id).filter(|m| m.file != path) {
            let report = format!(
                "rollout {id} is already declared in {}; this file is ignored",
                other.file.display()
            );
            self.file_rejected(&path, report);
            return;
        }
        // The file used to declare another rollout (its `service` changed).
        let previous: Vec<RolloutId> = self
            .rollouts
            .iter()
            .filter(|(other, m)| m.file == path && **other != id)
            .map(|(other, _)| other.clone())
            .collect();
        for old in previous {
            self.remove(&old);
        }
        if let Some(m) = self.rollouts.get(&id) {
            let restart = !same_router(&m.spec, &spec);
            let canary_changed = m.spec.canary != spec.canary;
            let addresses_moved = m.spec.stable.address != spec.stable.address || canary_changed;
            // Start the new router before letting go of the old one: if it
            // cannot start, the old spec and router keep running.
            let new_router = if restart {
                match self.make_router(&spec).await {
                    Ok(r) => Some(r),
                    Err(e) => {
                        self.dir.forget(&path);
                        self.file_rejected(&path, e);
                        return;
                    }
                }
            } else {
                None
            };
            let Some(m) = self.rollouts.get_mut(&id) else {
                return;
            };
            tracing::info!(rollout = %id, file = %path.display(), "deploy file changed; applies from the next tick");
            if canary_changed && m.state.weight > crate::spec::units::Weight::ZERO {
                // A different canary gets no traffic until the engine decides
                // its weight (a cut is always safe; the next tick comes now).
                if let Err(e) = m.router.set_weight(crate::spec::units::Weight::ZERO).await {
                    tracing::error!(rollout = %id, error = %e, "cannot cut the weight before switching canaries");
                }
            }
            if let Some(router) = new_router {
                m.router.stop();
                m.router = router;
            } else if addresses_moved
                && let (Router::Builtin(r), Some(s), Some(c)) =
                    (&m.router, &spec.stable.address, &spec.canary.address)
            {
                r.set_upstreams(s.clone(), c.clone()).await;
            }
            m.spec = spec;
            m.file_error = None;
            m.next_tick = now;
            self.view.put(m.view());
            return;
        }
        let router = match self.make_router(&spec).await {
            Ok(r) => r,
            Err(e) => {
                // Not the file's fault (a port in use…): try again next scan.
                self.dir.forget(&path);
                self.file_rejected(&path, e);
                return;
            }
        };
        let state = self
            .stored
            .remove(&id)
            .unwrap_or_else(|| RolloutState::new(&spec, now));
        // After a restart the router holds what was last committed.
        if let Err(e) = router.set_weight(state.weight).await {
            tracing::error!(rollout = %id, error = %e, "cannot re-apply the stored weight; retrying every tick");
        }
        let store = self.store.clone();
        let key = id.clone();
        let last = tokio::task::spawn_blocking(move || store.last_decision(&key))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        tracing::info!(rollout = %id, file = %path.display(), phase = ?state.phase, step = state.step + 1, weight = %state.weight, "managing rollout");
        let m = Managed {
            file: path,
            spec,
            state,
            router,
            next_tick: now,
            last_decision: last.map(|r| LastDecision {
                at: r.at,
                action: r.action.to_string(),
                reason: r.reason,
            }),
            gates: Vec::new(),
            file_error: None,
            health: Default::default(),
        };
        self.view.put(m.view());
        self.rollouts.insert(id, m);
    }

    pub(super) fn file_rejected(&mut self, path: &Path, report: String) {
        tracing::error!(file = %path.display(), "deploy file rejected; the previous version keeps running:\n{report}");
        for m in self.rollouts.values_mut().filter(|m| m.file == path) {
            m.file_error = Some(report.clone());
            self.view.put(m.view());
        }
        self.view.publish(Event::FileRejected {
            file: path.display().to_string(),
            errors: report,
        });
    }

    pub(super) fn file_removed(&mut self, path: &Path) {
        let ids: Vec<RolloutId> = self
            .rollouts
            .iter()
            .filter(|(_, m)| m.file == path)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            tracing::warn!(rollout = %id, file = %path.display(), "deploy file removed; no longer managing the rollout (its state and log are kept)");
            self.remove(&id);
        }
    }

    fn remove(&mut self, id: &RolloutId) {
        if let Some(m) = self.rollouts.remove(id) {
            m.router.stop();
            self.stored.insert(id.clone(), m.state);
        }
        self.view.remove(id);
    }
}

/// The interval a rollout is ticked at.
pub(super) fn interval(spec: &DeploySpec) -> Duration {
    spec.strategy.analysis.interval
}
