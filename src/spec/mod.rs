pub mod yaml;
pub mod units;
