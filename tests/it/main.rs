//! The integration tests, compiled as one test binary: the real binary and the real client
//! against the sandbox on 127.0.0.1 over TCP, asserting on what the sandbox really holds.

// Tests time the real binary with the real clock.
#![allow(clippy::disallowed_methods)]

mod common;

mod client_sandbox;
mod credentials;
mod docs;
mod ice;
mod manifests;
mod operator;
mod ops;
mod oss;
mod oss_sdk;
mod oss_sources;
mod outage;
mod preflight;
mod properties;
mod reliability;
mod report;
mod run;
mod secrets;
mod server_truth;
mod spreadsheets;
mod sync;
mod uploads;
