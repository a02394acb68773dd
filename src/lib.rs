//! face-enroll: registers reference face images with Alibaba Cloud MTS and ICE, exactly once,
//! paced at the service's limit, recorded in an append-only ledger that makes every re-run resume.

pub mod api;
pub mod cli;
pub mod credentials;
pub mod manifest;
pub mod sandbox;
pub mod sign;
