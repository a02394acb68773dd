//! Command-line flags (clap) and their conversion into validated configuration.
//!
//! Doc comments here are the `--help` text. Nothing outside this module sees clap types.

pub mod library;
pub mod ops;
pub mod sandbox;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::backend::TargetKind;
use crate::exit::UsageError;
use crate::report::ProgressMode;

/// Register reference face images with Alibaba Cloud MTS, exactly once, paced, resumable.
#[derive(Parser, Debug)]
#[command(name = "face-enroll", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr (every command): `json` writes every line as a JSON event.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Register every image of a manifest; re-run to resume where the last run stopped.
    Run(RunArgs),
    /// Validate a manifest and print the plan; sends nothing.
    Check(CheckArgs),
    /// Run the local emulator of the MTS and ICE APIs.
    Sandbox(sandbox::SandboxArgs),
    /// ICE custom recognition libraries: create, list, delete; list entities and samples.
    Lib(library::LibArgs),
    /// What the ledger says: images per status and library, the last run, what is left to do.
    Status(ops::StatusArgs),
    /// One row per registered image with its FaceId, as CSV or JSON Lines.
    Export(ops::ExportArgs),
    /// One HTML page of the import: every photo with its person, status and reason.
    Report(ops::ReportArgs),
    /// Compare the server with the manifest and the ledger; optionally repair the ledger.
    Verify(ops::VerifyArgs),
    /// Unregister, by FaceId, the faces one run (or every run) registered.
    Rollback(ops::RollbackArgs),
    /// The ledger's runs: id, start, end, command, target, counts, exit.
    Runs(ops::RunsArgs),
    /// Print a folder of photos as the CSV manifest it is read as (to edit, or to see what a
    /// run of the folder would send).
    Scan(ScanArgs),
    /// Print shell completions.
    Completions(ops::CompletionsArgs),
    /// Write the manual pages (the tool and each subcommand) into a directory.
    #[command(hide = true)]
    Man(ops::ManArgs),
}

/// How a command reaches the service: where, as whom, how fast, how patiently. One set of flags,
/// shared by `run`, `verify`, `rollback` and `lib`; the defaults that depend on the target (the
/// budget) come from the target.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Service endpoint URL overriding the regional one (e.g. a standalone sandbox at
    /// http://127.0.0.1:8686/).
    #[arg(long, conflicts_with = "region")]
    pub endpoint: Option<String>,
    /// Region [default: ALIBABA_CLOUD_REGION_ID, the profile's region_id, else cn-shanghai].
    #[arg(long)]
    pub region: Option<String>,
    /// Profile of ~/.aliyun/config.json to use (any mode the credentials chain knows).
    #[arg(long)]
    pub profile: Option<String>,
    /// Request signature: v3 (ACS3-HMAC-SHA256, the official SDKs' default) or v1 (HMAC-SHA1).
    #[arg(long, value_name = "v1|v3", default_value_t = crate::sign::SignatureVersion::V3)]
    pub signature: crate::sign::SignatureVersion,
    /// Requests per second, retries and look-ups included; 0 = unlimited
    /// [default: 100 for MTS, 50 for ICE].
    #[arg(long)]
    pub qps: Option<u32>,
    /// Listings per second (look-ups, reconciliation, verify) [default: as --qps's default].
    #[arg(long)]
    pub read_qps: Option<u32>,
    /// Removals per second (rollback, pruning) [default: as --qps's default].
    #[arg(long)]
    pub remove_qps: Option<u32>,
    /// `action`: each operation has its own budget, as the services count; `account`: one
    /// budget for every call (a gateway that counts the account's calls together).
    #[arg(long, value_enum, default_value_t = QpsScope::Action)]
    pub qps_scope: QpsScope,
    /// Requests in flight at most [default: half the --qps, at least 8; 64 when unlimited].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Attempts per request, the first included.
    #[arg(long, default_value_t = 8)]
    pub max_attempts: u32,
    /// Seconds to wait for one answer before giving the attempt up.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Seed for the backoff jitter (reproducible runs in tests).
    #[arg(long, hide = true, env = "FACE_ENROLL_SEED")]
    pub seed: Option<u64>,
}

impl ConnectArgs {
    /// Checks the numbers once; the message names the flag and what is allowed.
    pub fn settings(&self) -> Result<crate::connect::Settings, UsageError> {
        let bad = |m: String| Err(UsageError(m));
        for (flag, value) in [
            ("--qps", self.qps),
            ("--read-qps", self.read_qps),
            ("--remove-qps", self.remove_qps),
        ] {
            if let Some(qps) = value
                && qps > Limits::MAX_QPS
            {
                return bad(format!(
                    "{flag} {qps}: at most {} (0 = unlimited)",
                    Limits::MAX_QPS
                ));
            }
        }
        if !(1..=Limits::MAX_ATTEMPTS).contains(&self.max_attempts) {
            return bad(format!(
                "--max-attempts {}: between 1 and {}",
                self.max_attempts,
                Limits::MAX_ATTEMPTS
            ));
        }
        if !(1..=Limits::MAX_TIMEOUT_S).contains(&self.timeout) {
            return bad(format!(
                "--timeout {}: between 1 and {} seconds",
                self.timeout,
                Limits::MAX_TIMEOUT_S
            ));
        }
        if let Some(c) = self.concurrency
            && !(1..=Limits::MAX_CONCURRENCY).contains(&c)
        {
            return bad(format!(
                "--concurrency {c}: between 1 and {}",
                Limits::MAX_CONCURRENCY
            ));
        }
        Ok(crate::connect::Settings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
            qps: self.qps,
            read_qps: self.read_qps,
            remove_qps: self.remove_qps,
            qps_scope: match self.qps_scope {
                QpsScope::Action => crate::pacer::Scope::Action,
                QpsScope::Account => crate::pacer::Scope::Account,
            },
            max_attempts: self.max_attempts,
            timeout: std::time::Duration::from_secs(self.timeout),
            concurrency: self.concurrency,
            seed: self.seed,
            signature: self.signature,
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// CSV manifest with columns category_id, person_id, image_url [, person_name].
    pub manifest: PathBuf,
    /// Ledger file [default: the manifest's path with extension .ledger.jsonl, or
    /// .sandbox.ledger.jsonl with --sandbox; .ice.ledger.jsonl / .ice.sandbox.ledger.jsonl for
    /// --target ice].
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Start no new work after this long (e.g. 50m, 1h30m), finish what is in flight, exit 5.
    #[arg(long, value_parser = parse_duration)]
    pub max_duration: Option<std::time::Duration>,
    /// Send rows again whose last record is `failed`.
    #[arg(long)]
    pub retry_failed: bool,
    /// When to read what the server already holds before sending: `auto` whenever the ledger
    /// does not prove it (a person it has no record of, a pending record), `always`, or
    /// `never` (only after an unknown outcome).
    #[arg(long, value_enum, default_value_t = ReconcileArg::Auto)]
    pub reconcile: ReconcileArg,
    #[command(flatten)]
    pub sync: SyncArgs,
    #[command(flatten)]
    pub oss: OssArgs,
    /// Upload the local photos the manifest names (file:// or paths relative to it) to this
    /// bucket and prefix, each as PREFIX/<sha256>.jpg|png (never over an existing object), and
    /// send them as those oss:// objects.
    #[arg(long, value_name = "oss://BUCKET/PREFIX/")]
    pub upload_to: Option<crate::upload::Destination>,
    /// Uploads in flight at most.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub upload_concurrency: usize,
    /// Refuse (as invalid rows) local paths that leave the manifest's folder (`../…`, or an
    /// absolute path elsewhere); nothing of them is read. A folder given as the manifest never
    /// names a file outside it.
    #[arg(long)]
    pub no_escape: bool,
    #[command(flatten)]
    pub preflight: PreflightArgs,
    /// Run against the built-in sandbox (in-process, realistic latency, a few 500s); no credentials.
    #[arg(long, conflicts_with_all = ["endpoint", "region"])]
    pub sandbox: bool,
    /// Progress display: a bar on a terminal, a log line every 10 s otherwise.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Exit 1 for any row not registered, even one an earlier run already recorded (by
    /// default only rows this run found make the exit 1).
    #[arg(long)]
    pub strict: bool,
    /// With nothing to send, skip the one cheap authenticated read a run makes to prove the
    /// endpoint answers and the credentials are accepted.
    #[arg(long)]
    pub no_probe: bool,
    /// Character encoding of the manifest.
    #[arg(long, value_enum, default_value_t = EncodingArg::Auto)]
    pub encoding: EncodingArg,
    /// Which headers hold which field, for a file with headers of its own, e.g.
    /// `category_id=部门,person_id=工号,person_name=姓名,image_url=照片1,照片2,照片3` (several
    /// image headers: one image per non-empty cell, in order). Unmapped fields keep their names.
    #[arg(long, value_name = "FIELD=HEADER,…")]
    pub columns: Option<crate::manifest::ColumnMap>,
    /// The sheet of an .xlsx workbook to read [default: the first].
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
    /// How a folder given as the manifest holds its photos, one pattern per path level:
    /// `{category_id}`, `{person_id}`, `{person_name}`, `*` and text, e.g.
    /// `{category_id}/{person_id}_{person_name}/*` [default: {category_id}/{person_id}/*].
    #[arg(long, value_name = "PATTERN")]
    pub layout: Option<crate::manifest::Layout>,
    /// Print only warnings and errors (no progress, no summary on stderr).
    #[arg(short, long)]
    pub quiet: bool,
    /// Also write the summary as JSON to this file (`-`: standard output).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Write rows that were not registered (invalid, over the limit, refused by the service) to
    /// this CSV file (`-`: standard output), earlier runs' refusals still not registered included.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Write the run's figures to this Prometheus text file (node_exporter textfile collector),
    /// atomically.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
}

/// `--preflight` and its limits: shared by `run` and `check`. Every limit has the documented
/// default of the sibling face API (the most conservative guide there is).
#[derive(clap::Args, Debug, Clone)]
pub struct PreflightArgs {
    /// Read each image to send first (oss:// through a signed GET with the run's credentials,
    /// http(s) as it is; capped at --max-image-bytes + 1 byte) and check it: an image by its
    /// first bytes, its format, size and header dimensions, its EXIF orientation, its suffix,
    /// and the same photo under two persons. `run` sends none of the images it refuses (each is
    /// recorded `invalid` for this run, and checked again by the next). `run` does this by
    /// default for oss:// objects and local photos, whose bytes it can read anyway; this flag
    /// adds public links.
    #[arg(long)]
    pub preflight: bool,
    /// `run`: no pre-flight, not even of oss:// objects and local photos.
    #[arg(long, conflicts_with = "preflight")]
    pub no_preflight: bool,
    /// Formats accepted, comma-separated (jpeg, png, gif, webp, bmp, tiff, heif).
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "jpeg,png",
          value_parser = parse_format)]
    pub accept_formats: Vec<crate::preflight::Format>,
    /// Largest image in bytes [default: 5 MB, 5242880].
    #[arg(long, value_name = "BYTES", default_value_t = crate::preflight::DEFAULT_MAX_BYTES)]
    pub max_image_bytes: u64,
    /// Refuse an image whose shorter side is under this many pixels.
    #[arg(long, value_name = "PX", default_value_t = crate::preflight::DEFAULT_MIN_SIDE)]
    pub min_side: u32,
    /// Warn about an image whose shorter side is under this many pixels.
    #[arg(long, value_name = "PX", default_value_t = crate::preflight::DEFAULT_WARN_SIDE)]
    pub warn_side: u32,
    /// Refuse an image whose longer side is over this many pixels.
    #[arg(long, value_name = "PX", default_value_t = crate::preflight::DEFAULT_MAX_SIDE)]
    pub max_side: u32,
    /// Images read per second by pre-flight (its own budget: OSS and web servers, not the
    /// face service; 0 = unpaced).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub preflight_qps: u32,
    /// Images read at once by pre-flight.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub preflight_in_flight: usize,
    /// The longest one image's download may take.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    pub preflight_timeout: std::time::Duration,
}

fn parse_format(text: &str) -> Result<crate::preflight::Format, UsageError> {
    crate::preflight::Format::parse(text).ok_or_else(|| {
        UsageError::new(format!(
            "`{text}` is not a format pre-flight knows (jpeg, png, gif, webp, bmp, tiff, heif)"
        ))
    })
}

impl PreflightArgs {
    /// The sweep's settings when pre-flight is on, the limits checked for sense. `private`: on
    /// without `--preflight` for oss:// objects and local photos (`run`), unless
    /// `--no-preflight`.
    pub fn settings(
        &self,
        private: bool,
    ) -> Result<Option<crate::preflight::Settings>, UsageError> {
        if self.no_preflight || !(self.preflight || private) {
            return Ok(None);
        }
        if self.min_side > self.max_side {
            return Err(UsageError::new(format!(
                "--min-side {} is over --max-side {}: no image could pass",
                self.min_side, self.max_side
            )));
        }
        if self.preflight_in_flight == 0 {
            return Err(UsageError::new("--preflight-in-flight must be at least 1"));
        }
        let mut formats = self.accept_formats.clone();
        formats.dedup();
        Ok(Some(crate::preflight::Settings {
            limits: crate::preflight::Limits {
                max_bytes: self.max_image_bytes,
                min_side: self.min_side,
                warn_side: self.warn_side,
                max_side: self.max_side,
                formats,
            },
            qps: self.preflight_qps,
            in_flight: self.preflight_in_flight,
            timeout: self.preflight_timeout,
            every_image: self.preflight,
        }))
    }
}

/// How `oss://BUCKET/KEY` images are handed to the service: as a signed link made for every
/// attempt, with the same credentials as the request.
#[derive(clap::Args, Debug, Clone)]
pub struct OssArgs {
    /// The buckets' region [default: the run's region].
    #[arg(long, value_name = "REGION")]
    pub oss_region: Option<String>,
    /// The OSS endpoint links are made on [default: oss-REGION.aliyuncs.com; with --sandbox,
    /// the sandbox's own]. An IP address or localhost is addressed path-style (plain http only
    /// on loopback), any other host virtual-hosted (https://BUCKET.HOST/KEY).
    #[arg(long, value_name = "HOST")]
    pub oss_endpoint: Option<String>,
    /// How long each signed link is valid (at most 7d; never past the expiry of temporary
    /// credentials, less a minute). A link is made for each attempt, so it only has to outlive
    /// the service's download.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub link_ttl: std::time::Duration,
}

impl OssArgs {
    /// The link settings for a client in `region`, with `sandbox` (a base URL) as the endpoint
    /// when no other is given.
    pub fn links(
        &self,
        region: &str,
        sandbox: Option<&str>,
    ) -> Result<crate::api::links::OssLinks, UsageError> {
        let region = self.oss_region.as_deref().unwrap_or(region).to_string();
        if !crate::sign::oss::is_region(&region) {
            return Err(UsageError::new(format!(
                "--oss-region: `{region}` is not a region (e.g. cn-shanghai)"
            )));
        }
        let endpoint = match (self.oss_endpoint.as_deref(), sandbox) {
            (Some(text), _) => text.parse(),
            (None, Some(url)) => url.trim_end_matches('/').parse(),
            (None, None) => crate::sign::oss::Endpoint::for_region(&region),
        }
        .map_err(|e| UsageError::new(format!("--oss-endpoint: {e}")))?;
        Ok(crate::api::links::OssLinks {
            region,
            endpoint,
            ttl: self.link_ttl,
        })
    }

    /// `--link-ttl` within what a V4 link can carry.
    pub fn check(&self) -> Result<(), UsageError> {
        if self.link_ttl < std::time::Duration::from_secs(1)
            || self.link_ttl > crate::api::links::MAX_TTL
        {
            return Err(UsageError::new(
                "--link-ttl must be from 1s to 7d (a V4 link lives at most 7 days)",
            ));
        }
        if let Some(region) = &self.oss_region
            && !crate::sign::oss::is_region(region)
        {
            return Err(UsageError::new(format!(
                "--oss-region: `{region}` is not a region (e.g. cn-shanghai)"
            )));
        }
        if let Some(endpoint) = &self.oss_endpoint {
            endpoint
                .parse::<crate::sign::oss::Endpoint>()
                .map_err(|e| UsageError::new(format!("--oss-endpoint: {e}")))?;
        }
        Ok(())
    }
}

/// Which service, and for ICE which algorithm.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct TargetArgs {
    /// Where to register: MTS custom faces, or ICE custom recognition libraries.
    #[arg(long, value_enum, default_value_t = TargetArg::Mts)]
    pub target: TargetArg,
    /// ICE only: the recognition algorithm of the libraries (landmark, object, logo, face, label)
    /// [default: face].
    #[arg(long, value_parser = library::parse_algorithm)]
    pub algorithm: Option<crate::api::Algorithm>,
}

impl TargetArgs {
    pub fn kind(&self) -> TargetKind {
        match self.target {
            TargetArg::Mts => TargetKind::Mts,
            TargetArg::Ice => {
                TargetKind::Ice(self.algorithm.unwrap_or(crate::api::Algorithm::Face))
            }
        }
    }

    /// `--algorithm` means something only for ICE: given without `--target ice`, it is refused.
    pub fn check(&self) -> Result<(), UsageError> {
        match (self.target, self.algorithm) {
            (TargetArg::Mts, Some(a)) => Err(UsageError::new(format!(
                "--algorithm {a} applies to ICE only: add --target ice, or drop --algorithm"
            ))),
            _ => Ok(()),
        }
    }
}

/// `--encoding`: how the manifest's bytes are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EncodingArg {
    /// A BOM names it; else UTF-8 when valid; else GB18030 when it decodes without errors.
    Auto,
    #[value(name = "utf-8")]
    Utf8,
    Gb18030,
    #[value(name = "utf-16")]
    Utf16,
}

impl From<EncodingArg> for crate::manifest::Encoding {
    fn from(value: EncodingArg) -> crate::manifest::Encoding {
        match value {
            EncodingArg::Auto => crate::manifest::Encoding::Auto,
            EncodingArg::Utf8 => crate::manifest::Encoding::Utf8,
            EncodingArg::Gb18030 => crate::manifest::Encoding::Gb18030,
            EncodingArg::Utf16 => crate::manifest::Encoding::Utf16,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// The folder of photos.
    pub dir: PathBuf,
    /// How the folder holds its photos (as for `run`) [default: {category_id}/{person_id}/*].
    #[arg(long, value_name = "PATTERN")]
    pub layout: Option<crate::manifest::Layout>,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// CSV manifest to validate.
    pub manifest: PathBuf,
    /// Ledger to plan against [default: the manifest's path with extension .ledger.jsonl, or
    /// .ice.ledger.jsonl with --target ice].
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Plan for MTS custom faces (10 images per person) or ICE recognition libraries (names of
    /// at most 64 bytes, no per-person limit).
    #[command(flatten)]
    pub target: TargetArgs,
    /// As for `run`: which persons the estimate counts a server read for.
    #[arg(long, value_enum, default_value_t = ReconcileArg::Auto)]
    pub reconcile: ReconcileArg,
    #[command(flatten)]
    pub sync: SyncArgs,
    /// Print the plan as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// Plan against the sandbox's ledger (the one `run --sandbox` writes).
    #[arg(long)]
    pub sandbox: bool,
    /// Character encoding of the manifest.
    #[arg(long, value_enum, default_value_t = EncodingArg::Auto)]
    pub encoding: EncodingArg,
    /// Which headers hold which field, for a file with headers of its own, e.g.
    /// `category_id=部门,person_id=工号,person_name=姓名,image_url=照片1,照片2,照片3` (several
    /// image headers: one image per non-empty cell, in order). Unmapped fields keep their names.
    #[arg(long, value_name = "FIELD=HEADER,…")]
    pub columns: Option<crate::manifest::ColumnMap>,
    /// The sheet of an .xlsx workbook to read [default: the first].
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
    /// How a folder given as the manifest holds its photos, one pattern per path level:
    /// `{category_id}`, `{person_id}`, `{person_name}`, `*` and text, e.g.
    /// `{category_id}/{person_id}_{person_name}/*` [default: {category_id}/{person_id}/*].
    #[arg(long, value_name = "PATTERN")]
    pub layout: Option<crate::manifest::Layout>,
    /// Ask OSS whether each `oss://` object a run would send is there and readable with these
    /// credentials (a signed HEAD per object, paced at --qps): missing objects and access
    /// refusals are listed by line. Needs credentials; sends nothing to the face service.
    #[arg(long, conflicts_with = "sandbox")]
    pub probe: bool,
    /// With --probe: where and how to reach the service's credentials; --qps also paces the
    /// estimate [default: 100 for MTS, 50 for ICE].
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub oss: OssArgs,
    /// `--preflight`: as for `run`, and nothing is sent to the face service. Needs credentials.
    #[command(flatten)]
    pub preflight: PreflightArgs,
    /// As for `run`: the bucket and prefix local photos go to. `check` reads and names each
    /// photo by its content (PREFIX/<sha256>.jpg|png) and plans it as that object; nothing is
    /// uploaded.
    #[arg(long, value_name = "oss://BUCKET/PREFIX/")]
    pub upload_to: Option<crate::upload::Destination>,
    /// With --upload-to: photos read and hashed at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub upload_concurrency: usize,
}

impl CheckArgs {
    pub fn ledger_path(&self) -> PathBuf {
        self.ledger.clone().unwrap_or_else(|| {
            self.target
                .kind()
                .default_ledger(&self.manifest, self.sandbox)
        })
    }

    pub fn qps(&self) -> u32 {
        self.connect
            .qps
            .unwrap_or_else(|| self.target.kind().default_qps())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// MTS custom faces (RegisterCustomFace).
    Mts,
    /// ICE custom recognition libraries (libraries, entities, samples).
    Ice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReconcileArg {
    Auto,
    Always,
    Never,
}

impl From<ReconcileArg> for crate::plan::Reconcile {
    fn from(value: ReconcileArg) -> crate::plan::Reconcile {
        match value {
            ReconcileArg::Auto => crate::plan::Reconcile::Auto,
            ReconcileArg::Always => crate::plan::Reconcile::Always,
            ReconcileArg::Never => crate::plan::Reconcile::Never,
        }
    }
}

/// `--sync`, `--sync-scope`, `--max-delete`: shared by `run` and `check`.
#[derive(clap::Args, Debug, Clone)]
pub struct SyncArgs {
    /// Also remove what the manifest no longer holds, in the libraries it names: the manifest
    /// is the roster. Additions for a person come before its removals.
    #[arg(long)]
    pub sync: bool,
    /// With --sync: `ledger` removes only images this tool registered or adopted (the ledger
    /// records them); `library` removes everything in the manifest's libraries that the
    /// manifest does not hold, whoever registered it.
    #[arg(long, value_enum, default_value_t = SyncScopeArg::Ledger, requires = "sync")]
    pub sync_scope: SyncScopeArg,
    /// With --sync: when more than N images would be removed, remove none, say how many, and
    /// exit 8 (additions still happen). 0 allows no removal.
    #[arg(long, value_name = "N", default_value_t = 100, requires = "sync")]
    pub max_delete: u64,
}

impl SyncArgs {
    pub fn settings(&self) -> Option<crate::plan::SyncSettings> {
        self.sync.then_some(crate::plan::SyncSettings {
            scope: match self.sync_scope {
                SyncScopeArg::Ledger => crate::plan::SyncScope::Ledger,
                SyncScopeArg::Library => crate::plan::SyncScope::Library,
            },
            max_delete: self.max_delete,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SyncScopeArg {
    Ledger,
    Library,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum QpsScope {
    Action,
    Account,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Bar,
    Log,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl From<ProgressArg> for ProgressMode {
    fn from(value: ProgressArg) -> ProgressMode {
        match value {
            ProgressArg::Auto => ProgressMode::Auto,
            ProgressArg::Bar => ProgressMode::Bar,
            ProgressArg::Log => ProgressMode::Log,
            ProgressArg::Off => ProgressMode::Off,
        }
    }
}

/// A duration with its unit (`90s`, `50m`, `1h30m`): a bare number is refused, since nobody
/// can tell whether `50` means seconds or minutes.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, UsageError> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UsageError::new(format!(
            "'{text}' has no unit: say {text}s or {text}m"
        )));
    }
    humantime::parse_duration(text)
        .map_err(|e| UsageError::new(format!("'{text}': {e} (e.g. 90s, 50m, 1h30m)")))
}

/// The limits on numeric flags, checked once.
pub struct Limits;

impl Limits {
    pub const MAX_QPS: u32 = 10_000;
    pub const MAX_CONCURRENCY: usize = 1024;
    pub const MAX_ATTEMPTS: u32 = 100;
    pub const MAX_TIMEOUT_S: u64 = 600;
}

impl RunArgs {
    /// Checks the numeric flags; the message says which flag and what is allowed.
    pub fn validate(&self) -> Result<crate::connect::Settings, UsageError> {
        let settings = self.connect.settings()?;
        self.target.check()?;
        self.oss.check()?;
        self.preflight.settings(true)?;
        if self.max_duration.is_some_and(|d| d.is_zero()) {
            return Err(UsageError::new("--max-duration must be longer than zero"));
        }
        Ok(settings)
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.ledger.clone().unwrap_or_else(|| {
            self.target
                .kind()
                .default_ledger(&self.manifest, self.sandbox)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("face-enroll").chain(args.iter().copied()))
    }

    fn run(args: &[&str]) -> RunArgs {
        let mut all = vec!["run", "m.csv"];
        all.extend_from_slice(args);
        match parse(&all).unwrap().command {
            Command::Run(run) => run,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn algorithm_without_the_ice_target_is_refused() {
        let err = run(&["--algorithm", "logo"]).validate().unwrap_err();
        assert!(err.0.contains("--target ice"), "{err}");
        assert!(
            run(&["--algorithm", "logo", "--target", "ice"])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn log_format_is_taken_by_every_command() {
        for args in [
            &["--log-format", "json", "status", "m.csv"][..],
            &["verify", "m.csv", "--log-format", "json"],
            &["lib", "list", "--algorithm", "face", "--log-format", "json"],
            &["rollback", "--ledger", "l", "--all", "--log-format", "json"],
        ] {
            assert_eq!(parse(args).unwrap().log_format, LogFormat::Json, "{args:?}");
        }
    }

    #[test]
    fn run_defaults_match_the_documented_ones() {
        let run = run(&[]);
        let settings = run.validate().unwrap();
        let mts = TargetKind::Mts;
        assert_eq!(
            (settings.qps(mts), settings.max_attempts, settings.timeout),
            (100, 8, std::time::Duration::from_secs(10))
        );
        assert_eq!(settings.concurrency(mts), 50);
        assert_eq!(run.ledger_path(), PathBuf::from("m.ledger.jsonl"));
    }

    #[test]
    fn endpoint_and_sandbox_cannot_be_combined() {
        assert!(
            parse(&[
                "run",
                "m.csv",
                "--sandbox",
                "--endpoint",
                "http://127.0.0.1:1/"
            ])
            .is_err()
        );
    }

    #[test]
    fn out_of_range_numbers_name_the_flag() {
        let err = run(&["--max-attempts", "0"]).validate().unwrap_err();
        assert!(err.0.contains("--max-attempts"));
        let settings = run(&["--qps", "0"]).validate().unwrap();
        assert_eq!(settings.concurrency(TargetKind::Mts), 64);
    }

    #[test]
    fn the_ice_target_defaults_to_50_qps_face_and_its_own_ledger() {
        let ice = run(&["--target", "ice"]);
        let kind = ice.target.kind();
        assert_eq!(kind, TargetKind::Ice(crate::api::Algorithm::Face));
        assert_eq!(ice.validate().unwrap().qps(kind), 50);
        assert_eq!(ice.ledger_path(), PathBuf::from("m.ice.ledger.jsonl"));
        let given = run(&["--target", "ice", "--qps", "20"]);
        assert_eq!(
            given.validate().unwrap().qps(kind),
            20,
            "a given --qps wins"
        );
        assert_eq!(run(&[]).target.kind(), TargetKind::Mts);
    }

    #[test]
    fn max_duration_takes_units() {
        let fifty = run(&["--max-duration", "50m"]);
        assert_eq!(
            fifty.max_duration,
            Some(std::time::Duration::from_secs(3000))
        );
        assert!(parse(&["run", "m.csv", "--max-duration", "50 parsecs"]).is_err());
        let hours = run(&["--max-duration", "1h30m"]);
        assert_eq!(
            hours.max_duration,
            Some(std::time::Duration::from_secs(5400))
        );
        let bare = parse(&["run", "m.csv", "--max-duration", "50"]).unwrap_err();
        assert!(bare.to_string().contains("say 50s or 50m"), "{bare}");
    }
}
