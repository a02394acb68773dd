//! `verify` and `rollback` on an ICE ledger: the same commands, answered by the ICE functions in
//! `crate::ice::ops`, with the same output conventions and exit codes as the MTS side.

use std::path::Path;

use crate::api::{Client, ErrorClass};
use crate::exit::Exit;
use crate::ice::ops::{self, Finding, IceOpsError, IceOpsOptions, RollbackOptions};
use crate::ledger::LedgerError;
use crate::ops::rollback::{RollbackConfig, Scope};
use crate::ops::verify::VerifyConfig;

/// Whether the ledger at `path` records an ICE import (its last run's target says so).
pub fn is_ice_ledger(path: &Path) -> bool {
    crate::ledger::replay(path)
        .ok()
        .and_then(|replay| replay.last_run_start)
        .and_then(|run| run.target)
        .is_some_and(|target| target == crate::ledger::TargetName::Ice)
}

fn options(qps: u32, max_attempts: u32) -> IceOpsOptions {
    IceOpsOptions {
        algorithm: None,
        qps: if qps == 0 {
            0
        } else {
            qps.min(crate::ice::DEFAULT_QPS)
        },
        max_attempts,
    }
}

pub async fn verify(config: VerifyConfig, client: Client) -> Exit {
    if config.repair {
        eprintln!(
            "face-enroll: --repair and --prune-duplicates work on MTS ledgers only. For an ICE \
             ledger, run `face-enroll run MANIFEST --target ice` again: it settles pending \
             samples by listing and sends what is missing."
        );
        return Exit::Usage;
    }
    let options = options(config.qps, config.max_attempts);
    let report = match ops::verify(&client, &config.ledger, &options).await {
        Ok(report) => report,
        Err(error) => return failed(error),
    };
    if config.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!(
            "ICE ledger {}: {} images checked, {} agree with the server, {} pending but present",
            config.ledger.display(),
            report.checked,
            report.ok,
            report.unsettled
        );
        list("missing on the server", &report.missing);
        list("held more than once", &report.duplicated);
        list("on the server, unknown to the ledger", &report.orphaned);
        list("in the ledger, gone from the server", &report.vanished);
    }
    if report.is_clean() {
        Exit::Success
    } else {
        Exit::RowsNotRegistered
    }
}

pub async fn rollback(config: RollbackConfig, client: Client) -> Exit {
    let run = match &config.scope {
        Scope::Run(id) => Some(id.clone()),
        Scope::All => None,
    };
    let options = RollbackOptions {
        run,
        dry_run: !config.yes,
        ops: options(config.qps, config.max_attempts),
    };
    let report = match ops::rollback(&client, &config.ledger, &options).await {
        Ok(report) => report,
        Err(error) => return failed(error),
    };
    let verb = if config.yes {
        "deleted"
    } else {
        "would delete"
    };
    println!(
        "ICE ledger {}: {verb} {} samples ({} already gone); entities {verb}: {}; libraries {verb}: {}",
        config.ledger.display(),
        report.removed,
        report.already_gone,
        report.entities_deleted.len(),
        report.libs_deleted.len()
    );
    if !report.kept_not_empty.is_empty() {
        println!(
            "  kept (created by the run but holding other samples): {}",
            report.kept_not_empty.join(", ")
        );
    }
    list(
        "not deleted (refused or unconfirmed; the ledger keeps them)",
        &report.failed,
    );
    if !config.yes {
        println!("nothing was changed; add --yes to delete");
    }
    if report.failed.is_empty() {
        Exit::Success
    } else {
        Exit::RowsNotRegistered
    }
}

fn list(title: &str, findings: &[Finding]) {
    const SHOWN: usize = 20;
    if findings.is_empty() {
        return;
    }
    println!("  {title}: {}", findings.len());
    for f in findings.iter().take(SHOWN) {
        let url = f.image_url.as_deref().unwrap_or("-");
        println!(
            "    {} / {} / {url}: {}",
            f.category_id, f.person_id, f.detail
        );
    }
    if findings.len() > SHOWN {
        println!(
            "    … and {} more (--json lists them all)",
            findings.len() - SHOWN
        );
    }
}

fn failed(error: IceOpsError) -> Exit {
    eprintln!("face-enroll: {error}");
    match &error {
        IceOpsError::Ledger(LedgerError::Locked { .. }) => Exit::Locked,
        IceOpsError::Api(api) if api.class() == ErrorClass::RunFatal => {
            if let Some(hint) = api.hint() {
                eprintln!("  what to do: {hint}");
            }
            Exit::ServiceFatal
        }
        IceOpsError::Api(_) => Exit::StoppedEarly,
        _ => Exit::Usage,
    }
}
