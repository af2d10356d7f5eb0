//! The HAProxy adapter: weights through the Runtime API (`set server
//! <backend>/<server> weight <n>`), confirmed by reading them back (`get
//! weight`), readiness from `show stat`. The socket is a Unix path or
//! `host:port`; each command is one connection (HAProxy's non-interactive mode).
//! A tick's readiness and weights come from a [`StatsReader`] shared by every
//! rollout on the socket, so it reads `show stat` once, not once (or three
//! times) per rollout.
//!
//! HAProxy weights are integers 0–256 per server, so the canary's share is
//! `canary / (stable + canary)` with the pair scaled to 256: 5% is 13 vs 243
//! (5.08%); the resolution is about 0.4 points.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::haproxy_stats::{FRESH_FOR, States, StatsReader};
use super::{Health, RouterError};
use crate::ports::RouterReading;
use crate::spec::units::Weight;

/// HAProxy's largest server weight.
const MAX: u32 = 256;

/// Where the servers of one rollout are.
#[derive(Clone, Debug)]
pub struct HaproxyConfig {
    /// Unix socket path, or `host:port`.
    pub socket: String,
    /// The backend holding both servers.
    pub backend: String,
    /// The stable server's name.
    pub stable_server: String,
    /// The canary server's name.
    pub canary_server: String,
}

/// A rollout's servers in a running HAProxy.
pub struct HaproxyRouter {
    config: HaproxyConfig,
    stats: StatsReader,
}

/// The server weights for a canary weight.
pub fn server_weights(weight: Weight) -> (u32, u32) {
    let canary = (u32::from(weight.basis_points()) * MAX + 5_000) / 10_000;
    (MAX - canary, canary)
}

/// The canary weight two server weights give.
pub fn canary_weight(stable: u32, canary: u32) -> Weight {
    let total = stable + canary;
    if total == 0 {
        return Weight::ZERO;
    }
    let bp = (u64::from(canary) * 10_000 + u64::from(total) / 2) / u64::from(total);
    Weight::from_basis_points(u16::try_from(bp).unwrap_or(10_000)).unwrap_or(Weight::FULL)
}

/// Sends one Runtime API command to `socket` and returns HAProxy's answer.
pub(super) async fn command(socket: &str, command: &str) -> Result<String, RouterError> {
    let run = async {
        let mut answer = String::new();
        if socket.starts_with('/') {
            let mut s = tokio::net::UnixStream::connect(socket).await?;
            s.write_all(format!("{command}\n").as_bytes()).await?;
            s.read_to_string(&mut answer).await?;
        } else {
            let mut s = tokio::net::TcpStream::connect(socket).await?;
            s.write_all(format!("{command}\n").as_bytes()).await?;
            s.read_to_string(&mut answer).await?;
        }
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(Duration::from_secs(2), run).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(RouterError::Io(e)),
        Err(_) => Err(RouterError::Refused(format!(
            "HAProxy runtime API did not answer `{command}` within 2s"
        ))),
    }
}

impl HaproxyRouter {
    /// An adapter for these servers with a stats reader of its own (nothing
    /// is sent until asked).
    pub fn new(config: HaproxyConfig) -> HaproxyRouter {
        let stats = StatsReader::new(config.socket.clone(), FRESH_FOR);
        HaproxyRouter { config, stats }
    }

    /// An adapter reading readiness through `stats`, shared with the other
    /// rollouts on the same socket (`stats` must read `config.socket`).
    pub fn with_stats(config: HaproxyConfig, stats: StatsReader) -> HaproxyRouter {
        HaproxyRouter { config, stats }
    }

    async fn command(&self, command: &str) -> Result<String, RouterError> {
        self::command(&self.config.socket, command).await
    }

    fn server(&self, name: &str) -> String {
        format!("{}/{}", self.config.backend, name)
    }

    /// Sets both servers' weights, then reads them back to confirm.
    pub async fn set_weight(&self, weight: Weight) -> Result<(), RouterError> {
        let (stable, canary) = server_weights(weight);
        for (server, w) in [
            (&self.config.stable_server, stable),
            (&self.config.canary_server, canary),
        ] {
            let answer = self
                .command(&format!("set server {} weight {w}", self.server(server)))
                .await?;
            // Success is an empty answer; anything else is HAProxy's refusal.
            if !answer.trim().is_empty() {
                return Err(RouterError::Refused(answer.trim().to_string()));
            }
        }
        let applied = self.weight().await?;
        if applied == canary_weight(stable, canary) {
            Ok(())
        } else {
            Err(RouterError::Refused(format!(
                "HAProxy reports canary weight {applied} after setting {weight}"
            )))
        }
    }

    async fn server_weight(&self, server: &str) -> Result<u32, RouterError> {
        let answer = self
            .command(&format!("get weight {}", self.server(server)))
            .await?;
        // "13 (initial 1)"
        answer
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<u32>().ok())
            .ok_or_else(|| RouterError::Refused(answer.trim().to_string()))
    }

    /// The canary weight HAProxy applies now.
    pub async fn weight(&self) -> Result<Weight, RouterError> {
        let stable = self.server_weight(&self.config.stable_server).await?;
        let canary = self.server_weight(&self.config.canary_server).await?;
        Ok(canary_weight(stable, canary))
    }

    /// Readiness from HAProxy's own health checks (`show stat`, shared): a
    /// server is ready when `UP` (or `no check`, when checks are off); none
    /// is when the stats cannot be read.
    pub async fn health(&self) -> Health {
        match self.stats.states().await {
            Ok(states) => self.readiness(&states).0,
            Err(_) => Health::default(),
        }
    }

    /// Both servers' readiness, and their weights when the snapshot has both.
    fn readiness(&self, states: &States) -> (Health, Option<(u32, u32)>) {
        let stable = states.get(&self.config.backend, &self.config.stable_server);
        let canary = states.get(&self.config.backend, &self.config.canary_server);
        let health = Health {
            stable: stable.is_some_and(|s| s.ready),
            canary: canary.is_some_and(|s| s.ready),
        };
        let weights = stable
            .and_then(|s| s.weight)
            .zip(canary.and_then(|c| c.weight));
        (health, weights)
    }

    /// Readiness and the canary weight from the shared `show stat` snapshot
    /// (its `weight` column: the servers' effective weights, the same as
    /// `get weight` outside slow start). A server missing from it, or
    /// without a weight, falls back to asking `get weight`.
    pub async fn observe(&self) -> RouterReading {
        let states = match self.stats.states().await {
            Ok(states) => states,
            Err(e) => {
                return RouterReading {
                    health: Health::default(),
                    weight: Err(RouterError::Refused(e)),
                };
            }
        };
        let (health, weights) = self.readiness(&states);
        let weight = match weights {
            Some((s, c)) => Ok(canary_weight(s, c)),
            None => self.weight().await,
        };
        RouterReading { health, weight }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_map_to_server_weights_and_back_within_half_a_point() {
        for bp in [0u16, 1, 50, 500, 2_500, 5_000, 9_999, 10_000] {
            let w = Weight::from_basis_points(bp).expect("weight");
            let (s, c) = server_weights(w);
            assert_eq!(s + c, MAX);
            let back = canary_weight(s, c);
            let diff = i32::from(back.basis_points()) - i32::from(bp);
            assert!(diff.abs() <= 20, "{bp} → {s}/{c} → {}", back.basis_points());
        }
        assert_eq!(server_weights(Weight::ZERO), (256, 0));
        assert_eq!(server_weights(Weight::FULL), (0, 256));
    }
}
