//! The signed client for MTS and ICE: one call is one attempt.
