//! Flags of `face-enroll sandbox`.
