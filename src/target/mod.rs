//! The two services a manifest can go to — MTS custom faces and ICE recognition libraries — and
//! everything that differs between them: planning rules, default budget, default ledger, regions.

use std::path::{Path, PathBuf};

use crate::api::Algorithm;
use crate::exit::UsageError;
use crate::plan;

/// The regions that offer MTS custom faces (smart tagging).
pub const MTS_REGIONS: [&str; 3] = ["cn-beijing", "cn-shanghai", "cn-hangzhou"];
/// The regions that offer ICE recognition libraries.
pub const ICE_REGIONS: [&str; 4] = ["cn-beijing", "cn-shanghai", "cn-hangzhou", "cn-shenzhen"];

/// Where the images go: MTS custom faces, or ICE recognition libraries of one algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    Mts,
    Ice(Algorithm),
}

impl TargetKind {
    /// `mts` or `ice`, as the ledger records it.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Mts => "mts",
            TargetKind::Ice(_) => "ice",
        }
    }

    /// The target as the ledger records it.
    pub fn ledger_name(self) -> crate::ledger::TargetName {
        match self {
            TargetKind::Mts => crate::ledger::TargetName::Mts,
            TargetKind::Ice(_) => crate::ledger::TargetName::Ice,
        }
    }

    pub fn algorithm(self) -> Option<Algorithm> {
        match self {
            TargetKind::Mts => None,
            TargetKind::Ice(algorithm) => Some(algorithm),
        }
    }

    /// The planning rules (the 10-image limit is MTS's; ICE counts names in bytes).
    pub fn rules(self) -> plan::Rules {
        match self {
            TargetKind::Mts => plan::Rules::MTS,
            TargetKind::Ice(_) => crate::ice::plan_rules(),
        }
    }

    /// The account's budget per operation: 100/s for MTS, 50/s for ICE.
    pub fn default_qps(self) -> u32 {
        match self {
            TargetKind::Mts => 100,
            TargetKind::Ice(_) => crate::ice::DEFAULT_QPS,
        }
    }

    /// The ledger beside the manifest: `.ledger.jsonl`, `.ice.ledger.jsonl`, with `.sandbox`
    /// before `ledger` for the built-in sandbox, so no two kinds of import ever share one.
    pub fn default_ledger(self, manifest: &Path, sandbox: bool) -> PathBuf {
        let suffix = match (self, sandbox) {
            (TargetKind::Mts, false) => "ledger.jsonl",
            (TargetKind::Mts, true) => "sandbox.ledger.jsonl",
            (TargetKind::Ice(_), false) => "ice.ledger.jsonl",
            (TargetKind::Ice(_), true) => "ice.sandbox.ledger.jsonl",
        };
        manifest.with_extension(suffix)
    }

    /// Refuses a region that does not offer the target's operations (only when no
    /// `--endpoint` names the service directly).
    pub fn check_region(self, region: &str) -> Result<(), UsageError> {
        let (regions, what) = match self {
            TargetKind::Mts => (&MTS_REGIONS[..], "MTS custom faces"),
            TargetKind::Ice(_) => (&ICE_REGIONS[..], "ICE recognition libraries"),
        };
        if regions.contains(&region) {
            return Ok(());
        }
        Err(UsageError::new(format!(
            "region {region} has no {what}; use one of {} (--region), or --endpoint for a sandbox",
            regions.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_import_has_its_own_default_ledger() {
        let m = Path::new("data/faces.csv");
        let ice = TargetKind::Ice(Algorithm::Face);
        assert_eq!(
            TargetKind::Mts.default_ledger(m, false),
            PathBuf::from("data/faces.ledger.jsonl")
        );
        assert_eq!(
            TargetKind::Mts.default_ledger(Path::new("faces.csv"), true),
            PathBuf::from("faces.sandbox.ledger.jsonl")
        );
        assert_eq!(
            ice.default_ledger(m, false),
            PathBuf::from("data/faces.ice.ledger.jsonl")
        );
        assert_eq!(
            ice.default_ledger(m, true),
            PathBuf::from("data/faces.ice.sandbox.ledger.jsonl")
        );
    }

    #[test]
    fn regions_are_checked_per_target() {
        let ice = TargetKind::Ice(Algorithm::Face);
        assert!(ice.check_region("cn-shenzhen").is_ok());
        assert!(TargetKind::Mts.check_region("cn-shenzhen").is_err());
        assert!(
            ice.check_region("us-west-1")
                .unwrap_err()
                .0
                .contains("cn-beijing")
        );
    }
}
