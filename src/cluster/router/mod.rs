//! The cluster traffic routers, each a [`crate::ports::TrafficRouter`] over
//! a `kube::Client`:
//!
//! * [`gateway::GatewayApiRouter`]: the weights of the stable and canary
//!   `backendRefs` of one rule of a Gateway API HTTPRoute the user owns;
//!   canaryd JSON-patches only those two weights, guarded by `test` ops.
//! * [`smi::SmiRouter`]: an SMI TrafficSplit canaryd owns, written whole by
//!   server-side apply (`force`, so a hand edit is taken back).
//! * [`replicas::ReplicasRouter`]: no mesh: the replica counts of the primary
//!   and the canary Deployment behind one Service (resolution 1/replicas).
//!
//! All three are idempotent (they read first and write only a difference),
//! read back what the API server holds, and report health from the
//! Deployments' available replicas.

pub mod gateway;
pub mod replicas;
pub mod smi;
pub mod tracks;

pub use gateway::GatewayApiRouter;
pub use replicas::ReplicasRouter;
pub use smi::SmiRouter;
pub use tracks::Tracks;

use crate::spec::units::Weight;

/// Total of the two backend weights canaryd writes for a weight: whole
/// percents as `95`/`5` (readable in `kubectl get -o yaml`), finer weights in
/// basis points (`9550`/`450`); both read back exactly.
pub fn backend_weights(weight: Weight) -> (u32, u32) {
    let bp = u32::from(weight.basis_points());
    if bp % 100 == 0 {
        (100 - bp / 100, bp / 100)
    } else {
        (10_000 - bp, bp)
    }
}

/// The canary's share given the two backend weights (nearest 0.01%); no
/// weight at all means no traffic to the canary.
pub fn weight_of(stable: u64, canary: u64) -> Weight {
    let total = stable + canary;
    if total == 0 {
        return Weight::ZERO;
    }
    let bp = (canary * 10_000 + total / 2) / total;
    Weight::from_basis_points(u16::try_from(bp).unwrap_or(10_000)).unwrap_or(Weight::FULL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_percents_are_written_as_percents_and_read_back_exactly() {
        let w = Weight::parse("5%").expect("weight");
        assert_eq!(backend_weights(w), (95, 5));
        assert_eq!(weight_of(95, 5), w);
        let fine = Weight::parse("12.25%").expect("weight");
        assert_eq!(backend_weights(fine), (8775, 1225));
        assert_eq!(weight_of(8775, 1225), fine);
        assert_eq!(backend_weights(Weight::ZERO), (100, 0));
        assert_eq!(weight_of(0, 0), Weight::ZERO);
        assert_eq!(weight_of(1, 1), Weight::parse("50%").expect("weight"));
    }
}
