//! face-enroll: registers reference face images with Alibaba Cloud MTS and ICE, exactly once,
//! paced at the service's limit, recorded in an append-only ledger that makes every re-run resume.
//!
//! The data's trip: `manifest` (CSV → rows) → `plan` (rows − `ledger` → work per person) →
//! `pipeline` (pacing, concurrency, retries) → `api` (one signed attempt) → back to `ledger`.

// The ledger's field list (`ledger::record`) is expanded one field at a time.
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod backend;
pub mod caller;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod connect;
pub mod credentials;
pub mod exit;
pub mod image;
pub mod ledger;
pub mod manifest;
pub mod net;
pub mod pacer;
pub mod pipeline;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod report_html;
pub mod retry;
pub mod sandbox;
pub mod say;
pub mod sign;
pub mod stop;
pub mod upload;
