//! `PUT /v1/failpoints`: sets the node's failpoints (`strata_adapters::failpoint`),
//! a test switch. Answers 404 unless the configuration has `testing.failpoints =
//! true` (whatever the body), 400 naming the first unknown failpoint or bad action
//! (nothing is set then), and otherwise 200 with every failpoint now on. Like every
//! route that is not open, it needs an admin token when auth is on.

use super::{ApiJson, AppState, HttpError, Rejected, bad_request};
use crate::openapi::{self, ErrorBody};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response as HttpResponse};
use strata_adapters::failpoint::{Action, FailpointError, Failpoints};
use strata_core::node::api::ApiError;

#[utoipa::path(put, path = "/v1/failpoints", tag = "node",
    request_body(content = Vec<openapi::FailpointSetting>, description = "Failpoints to set, in order; `off` removes one."),
    responses(
        (status = 200, description = "every failpoint now on", body = Vec<openapi::FailpointSetting>),
        (status = 404, description = "failpoints are off (`testing.failpoints` is not set)", body = ErrorBody),
    ))]
pub(crate) async fn put_failpoints(
    State(state): State<AppState>,
    body: Result<ApiJson<Vec<openapi::FailpointSetting>>, Rejected>,
) -> HttpResponse {
    let Some(failpoints) = &state.failpoints else {
        let off = "failpoints are off: the node's configuration has no testing.failpoints = true";
        return HttpError(ApiError::NotFound(off.into())).into_response();
    };
    // A body that does not parse keeps its status (400, 413, 415, 422).
    let settings = match body {
        Ok(ApiJson(settings)) => settings,
        Err(rejected) => return rejected.into_response(),
    };
    let parsed = settings
        .iter()
        .map(|s| Ok((Failpoints::site(&s.name)?, s.action.parse::<Action>()?)))
        .collect::<Result<Vec<_>, FailpointError>>();
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return bad_request(e).into_response(),
    };
    for (site, action) in parsed {
        if let Err(e) = failpoints.set(site, action) {
            return bad_request(e).into_response();
        }
    }
    let active = failpoints
        .active()
        .into_iter()
        .map(|(name, action)| openapi::FailpointSetting {
            name: name.to_string(),
            action: action.to_string(),
        })
        .collect::<Vec<_>>();
    Json(active).into_response()
}
