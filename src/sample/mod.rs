//! The sample service and load generator that the demo, the end-to-end tests
//! and the benchmarks run: a small HTTP app with a settable error ratio and
//! latency distribution that exports the `http-red` metric contract.

pub mod app;
pub mod behaviour;
pub mod load;

pub use app::{SampleApp, SampleAppConfig};
pub use behaviour::{Behaviour, BehaviourPatch};
pub use load::{LoadConfig, LoadReport};
