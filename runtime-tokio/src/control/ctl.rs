//! `strata ctl …`: the admin API of `strata control` from the command line.
//!
//! Every verb is one HTTP call; the answer's JSON is printed on stdout, an error
//! (`{"msg"}` and its status) on stderr with exit code 1.

use super::wire;
use std::time::Duration;

/// How long one `strata ctl` call may take (a tenant create waits for the node).
pub const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// One admin verb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verb {
    RegisterNode { node_id: u64, address: String },
    ListNodes,
    CreateTenant { tenant_id: String, node_id: u64 },
    ListTenants,
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
