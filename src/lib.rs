//! canaryd: a progressive-delivery canary controller.
#![forbid(unsafe_code)]

pub mod api;
pub mod backtest;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod daemon;
pub mod delivery;
pub mod demo;
pub mod deploy_dir;
pub mod engine;
pub mod import;
pub mod notify;
pub mod ports;
pub mod provider;
pub mod router;
pub mod sample;
pub mod spec;
pub mod store;
