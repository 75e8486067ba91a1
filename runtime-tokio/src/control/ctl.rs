//! `strata ctl …`: the admin API of `strata control` from the command line.
//!
//! Every verb is one HTTP call; the answer's JSON is printed on stdout, an error
//! (`{"msg"}` and its status) on stderr with exit code 1. `migrate` ([`migrate`])
//! starts a migration and follows it: each step is printed on stderr as it happens
//! (polled every [`FOLLOW_POLL`]), the final state as JSON on stdout once it is done.
//! While following, an unreachable control plane (restarting) is retried for up to
//! [`FOLLOW_UNREACHABLE`]; stopping `strata ctl` does not stop the migration.

use super::wire;
use std::time::Duration;

/// How long one `strata ctl` call may take (a tenant create waits for the node).
pub const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often `migrate` asks for the migration's new events.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// How long `migrate` keeps asking an unreachable control plane.
pub const FOLLOW_UNREACHABLE: Duration = Duration::from_secs(120);

/// One admin verb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verb {
    RegisterNode { node_id: u64, address: String },
    ListNodes,
    CreateTenant { tenant_id: String, node_id: u64 },
    ListTenants,
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CTL_TIMEOUT))
            .build(),
    )
}

/// The answer's body on a 2xx, else a message naming the status.
fn answer(
    base: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, String> {
    let mut response = result.map_err(|e| format!("control plane at {base}: {e}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if (200..300).contains(&status) {
        Ok(text)
    } else {
        Err(format!("control plane answered {status}: {text}"))
    }
}

/// `strata ctl migrate TENANT --to NODE`: starts the migration, prints each step
/// through `progress` as it happens, and returns the final state (JSON) once done.
pub fn migrate(
    url: &str,
    token: Option<&str>,
    tenant_id: &str,
    node_id: u64,
    origin_after: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<String, String> {
    let base = url.trim_end_matches('/');
    let auth = token.map(|t| format!("Bearer {t}"));
    let body = wire::StartMigration {
        tenant_id: tenant_id.to_string(),
        node_id,
        origin_after: origin_after.map(str::to_string),
    };
    let mut r = agent().post(format!("{base}/admin/migrations"));
    if let Some(a) = &auth {
        r = r.header("Authorization", a);
    }
    let text = answer(base, r.send_json(body))?;
    let mut row: wire::MigrationRow =
        serde_json::from_str(&text).map_err(|e| format!("answer {text:?}: {e}"))?;
    let (mut incarnation, mut since) = (row.incarnation, 0);
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        if row.incarnation != incarnation {
            progress("(the control plane restarted; the migration resumes from its stored phase)");
            incarnation = row.incarnation;
            since = 0;
        }
        let from = since;
        for e in row.events.iter().filter(|e| e.seq >= from) {
            progress(&format!("[{:>7.3}s] {}", e.at_ms as f64 / 1000.0, e.what));
            since = e.seq + 1;
        }
        if !row.active {
            return serde_json::to_string(&wire::MigrationRow { events: Vec::new(), ..row })
                .map_err(|e| e.to_string());
        }
        std::thread::sleep(FOLLOW_POLL);
        let mut r = agent().get(format!("{base}/admin/migrations/{tenant_id}?since={since}"));
        if let Some(a) = &auth {
            r = r.header("Authorization", a);
        }
        match answer(base, r.call()) {
            Ok(text) => {
                unreachable_since = None;
                row = serde_json::from_str(&text).map_err(|e| format!("answer {text:?}: {e}"))?;
                if row.incarnation != incarnation {
                    since = 0;
                }
            }
            Err(e) => {
                let first = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if first.elapsed() > FOLLOW_UNREACHABLE {
                    return Err(e);
                }
                if first.elapsed() < FOLLOW_POLL * 2 {
                    progress(&format!("(following: {e}; retrying)"));
                }
            }
        }
    }
}

/// Runs `verb` against the control plane at `url`; Ok(the answer's body) or
/// Err(a message naming the status).
pub fn run(url: &str, token: Option<&str>, verb: &Verb) -> Result<String, String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CTL_TIMEOUT))
            .build(),
    );
    let base = url.trim_end_matches('/');
    let auth = token.map(|t| format!("Bearer {t}"));
    let result = match verb {
        Verb::RegisterNode { node_id, address } => {
            let body = wire::RegisterNode { node_id: *node_id, address: address.clone() };
            let mut r = agent.post(format!("{base}/admin/nodes"));
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send_json(body)
        }
        Verb::CreateTenant { tenant_id, node_id } => {
            let body = wire::CreateTenant { tenant_id: tenant_id.clone(), node_id: *node_id };
            let mut r = agent.post(format!("{base}/admin/tenants"));
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send_json(body)
        }
        Verb::ListNodes | Verb::ListTenants => {
            let path = if *verb == Verb::ListNodes { "nodes" } else { "tenants" };
            let mut r = agent.get(format!("{base}/admin/{path}"));
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
    };
    let mut response = result.map_err(|e| format!("control plane at {base}: {e}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if (200..300).contains(&status) {
        Ok(text)
    } else {
        Err(format!("control plane answered {status}: {text}"))
    }
}
