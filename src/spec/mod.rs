//! The deploy-file model and everything that reads it.
//!
//! ```text
//! text ──yaml──▶ positioned tree ──decode/strategy/gate──▶ DeploySpec
//!                        ▲                  │
//!   JSON (CRD spec) ─────┘                  └─▶ Diagnostic (file:line:col, hint)
//! ```
//!
//! Everything here is pure except [`load`], which reads files.

pub mod decode;
pub mod diagnostic;
pub mod gate;
pub mod load;
pub mod model;
pub mod policy;
pub mod promql;
pub mod reader;
pub mod strategy;
pub mod template;
pub mod units;
pub mod yaml;
