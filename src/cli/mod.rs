//! Command-line flags (clap) and their conversion into validated configuration.
pub mod sandbox;
