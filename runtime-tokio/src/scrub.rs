//! `strata scrub`: checks that remote storage holds what its indexes say, and
//! with `--purge` removes orphans safely. The decisions are core's
//! (`strata_core::scrub`), the walk is `strata_adapters::scrub` through the same
//! remote-storage trait the node uses; this module picks the store and the control
//! plane from the command line, draws the progress bar and prints the report.
//!
//! Exit codes: 0 clean (orphans allowed: they are counted), 1 problems found,
//! 2 the scrubber's own error (bad arguments, the store or the control plane
//! failing).
//!
//! The control plane a purge asks ([`Control`]):
//! - `--control-url URL [--control-token T]`: a `strata control` service
//!   (`GET /admin/tenants`), asked per tenant before its walk and again before
//!   every delete batch;
//! - `--control-db PATH`: the single-node default's SQLite store, **opened
//!   read-only** (`strata_adapters::sqlite_store::read_tenants_read_only`) and read
//!   afresh at every question, so a grant the running node commits meanwhile is
//!   seen;
//! - `--config FILE`: the node's configuration names both the store and the
//!   control plane.
//!
//! Without one of them `--purge` refuses (exit 2): a purge never runs without a
//! control plane's word.

use crate::config::{ControlPlaneConfig, FileConfig, RemoteStorageConfig};
use crate::server::NodeRemote;
use camino::{Utf8Path, Utf8PathBuf};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use strata_adapters::local_fs::LocalFs;
use strata_adapters::s3::{S3Config, S3Remote};
use strata_adapters::scrub::{GenerationOracle, PurgeRequest, ScrubOptions, scrub};
use strata_core::generation::Generation;
use strata_core::id::TenantId;
use strata_core::scrub::purge::PurgeRules;
use strata_core::time::WallTime;

/// `strata scrub`'s arguments.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ScrubArgs {
    /// A LocalFs directory, or s3://BUCKET[/PREFIX].
    #[arg(long)]
    pub remote: Option<String>,
    /// The endpoint of an S3-compatible server (with an s3:// --remote).
    #[arg(long)]
    pub s3_endpoint: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    pub s3_region: String,
    /// A node configuration: its remote storage and control plane.
    #[arg(long)]
    pub config: Option<Utf8PathBuf>,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Also read every referenced layer and check its CRC32C and format.
    #[arg(long)]
    pub deep: bool,
    /// The report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Delete orphans the safety rules allow (a dry run without --yes).
    #[arg(long, requires = "older_than")]
    pub purge: bool,
    /// Only orphans at least this old (e.g. 7d, 36h; at least 24h).
    #[arg(long)]
    pub older_than: Option<String>,
    /// Really delete (with --purge).
    #[arg(long, requires = "purge")]
    pub yes: bool,
    /// A `strata control` service to ask for generations.
    #[arg(long)]
    pub control_url: Option<String>,
    #[arg(long)]
    pub control_token: Option<String>,
    /// The node's SQLite control-plane store, read read-only.
    #[arg(long)]
    pub control_db: Option<Utf8PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Where a purge asks for generations.
#[derive(Clone, Debug)]
pub enum Control {
    Url { url: String, token: Option<String> },
    SqliteReadOnly(Utf8PathBuf),
}

impl GenerationOracle for Control {
    async fn latest_generation(&self, tenant: TenantId) -> Result<Option<Generation>, String> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.ask(tenant))
            .await
            .map_err(|e| format!("control plane question: {e}"))?
    }
}

impl Control {
    fn ask(&self, tenant: TenantId) -> Result<Option<Generation>, String> {
        match self {
            Control::Url { url, token } => {
                use crate::control::ctl::{Verb, run};
                let text = run(url, token.as_deref(), &Verb::ListTenants)?;
                let rows: Vec<crate::control::wire::TenantRow> =
                    serde_json::from_str(&text).map_err(|e| format!("tenant list: {e}"))?;
                let id = tenant.to_string();
                Ok(rows
                    .iter()
                    .find(|r| r.tenant_id == id)
                    .and_then(|r| Generation::new(r.generation)))
            }
            Control::SqliteReadOnly(path) => {
                let records = strata_adapters::sqlite_store::read_tenants_read_only(path)
                    .map_err(|e| format!("{path}: {e}"))?;
                Ok(records.iter().find(|r| r.tenant == tenant).map(|r| r.generation))
            }
        }
    }
}

/// Parses `30d`, `36h`, `90m`, `86400s` (a number and one unit).
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 =
        n.parse().map_err(|_| format!("{s:?}: expected a number and a unit (d, h, m, s)"))?;
    let unit_ms = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1000,
        _ => return Err(format!("{s:?}: unit must be d, h, m or s")),
    };
    n.checked_mul(unit_ms).ok_or_else(|| format!("{s:?}: too long"))
}

/// The store and control plane the arguments name.
fn resolve(args: &ScrubArgs) -> Result<(NodeRemote, Option<Control>), String> {
    let from_config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let base = path.parent().unwrap_or(Utf8Path::new("."));
            Some(FileConfig::parse(path, &text).map_err(|e| e.to_string())?.resolve_paths(base))
        }
        None => None,
    };
    let remote = match (&args.remote, &from_config) {
        (Some(r), _) => remote_from_arg(r, args)?,
        (None, Some(config)) => match &config.remote_storage {
            RemoteStorageConfig::Local { path } => NodeRemote::Local(LocalFs::new(path.clone())),
            RemoteStorageConfig::S3(s3) => {
                NodeRemote::S3(S3Remote::new(s3.clone()).map_err(|e| e.to_string())?)
            }
        },
        (None, None) => return Err("name the remote storage: --remote or --config".into()),
    };
    let control = match (&args.control_url, &args.control_db, &from_config) {
        (Some(url), _, _) => {
            Some(Control::Url { url: url.clone(), token: args.control_token.clone() })
        }
        (None, Some(db), _) => Some(Control::SqliteReadOnly(db.clone())),
        (None, None, Some(config)) => Some(match &config.control_plane {
            ControlPlaneConfig::Embedded { sqlite_path } => {
                Control::SqliteReadOnly(sqlite_path.clone())
            }
            ControlPlaneConfig::Remote { url, token, .. } => {
                Control::Url { url: url.clone(), token: token.clone() }
            }
        }),
        (None, None, None) => None,
    };
    Ok((remote, control))
}

fn remote_from_arg(remote: &str, args: &ScrubArgs) -> Result<NodeRemote, String> {
    let Some(rest) = remote.strip_prefix("s3://") else {
        return Ok(NodeRemote::Local(LocalFs::new(Utf8PathBuf::from(remote))));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let mut config = S3Config::new(args.s3_region.clone(), bucket);
    config.prefix = prefix.trim_end_matches('/').to_owned();
    config.endpoint = args.s3_endpoint.clone();
    S3Remote::new(config).map(NodeRemote::S3).map_err(|e| e.to_string())
}

fn options(args: &ScrubArgs) -> Result<ScrubOptions, String> {
    let tenant = match &args.tenant {
        Some(t) => Some(t.parse::<TenantId>().map_err(|e| format!("--tenant: {e}"))?),
        None => None,
    };
    let purge = if args.purge {
        let Some(older_than) = &args.older_than else {
            return Err("--purge needs --older-than DURATION".into());
        };
        let rules = PurgeRules::new(parse_duration_ms(older_than)?).map_err(|e| e.to_string())?;
        Some(PurgeRequest { rules, execute: args.yes })
    } else {
        None
    };
    Ok(ScrubOptions { tenant, deep: args.deep, purge, ..ScrubOptions::default() })
}

fn wall_now() -> WallTime {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    WallTime::from_unix_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Runs `strata scrub`; the exit code is the report's (0/1) or 2.
pub fn run(args: &ScrubArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("strata scrub: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(args: &ScrubArgs) -> Result<u8, String> {
    let options = options(args)?;
    let (remote, control) = resolve(args)?;
    if options.purge.is_some() && control.is_none() {
        return Err("--purge asks the control plane before deleting: give --control-url, --control-db (the node's SQLite store, read read-only) or --config; refusing to purge".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let bar = if !args.no_progress { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut progress = |r: &strata_core::scrub::Report| {
        bar.set_message(format!(
            "{} objects, {} timelines, {} problems, {} orphans",
            r.objects,
            r.timelines,
            r.problems(),
            r.orphans()
        ));
    };
    let outcome = runtime.block_on(async {
        match &control {
            Some(c) => scrub(&remote, &options, c, wall_now(), &mut progress).await,
            None => {
                let none = strata_adapters::scrub::NoOracle;
                scrub(&remote, &options, &none, wall_now(), &mut progress).await
            }
        }
    });
    bar.finish_and_clear();
    let outcome = outcome.map_err(|e| e.to_string())?;
    if args.json {
        let json = serde_json::to_string_pretty(&outcome.report).map_err(|e| e.to_string())?;
        println!("{json}");
    } else {
        print!("{}", outcome.report.human());
    }
    Ok(outcome.report.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_one_unit() {
        assert_eq!(parse_duration_ms("2d"), Ok(2 * 86_400_000));
        assert_eq!(parse_duration_ms("36h"), Ok(36 * 3_600_000));
        assert_eq!(parse_duration_ms("90m"), Ok(90 * 60_000));
        assert_eq!(parse_duration_ms("5s"), Ok(5000));
        assert!(parse_duration_ms("5").is_err());
        assert!(parse_duration_ms("h").is_err());
        assert!(parse_duration_ms("5w").is_err());
    }
}
