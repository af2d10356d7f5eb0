pub mod yaml;
pub mod units;
pub mod diagnostic;
pub mod model;
pub mod policy;
pub mod reader;
