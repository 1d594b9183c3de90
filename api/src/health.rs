//! Liveness and readiness probes.

use crate::app::App;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// `GET /healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database, its read replica and the bus (when it is
/// Redis) answer.
pub async fn readyz(State(app): State<App>) -> (StatusCode, Json<Value>) {
    let database = domain::db::ping(&app.services.db).await;
    let replica = domain::db::ping(&app.services.replica).await;
    let bus = app.services.bus.healthy().await;
    let status = if database && replica && bus {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "database": database, "replica": replica, "bus": bus })),
    )
}
