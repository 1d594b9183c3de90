//! The axum router: GraphQL over HTTP and websockets, probes, and the layers
//! every request passes (request id, tracing, body limit, timeout).

use crate::app::App;
use crate::caller::{Origin, authorization, caller_from_authorization};
use crate::health;
use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use domain::settings::Mode;
use schema::RequestCaller;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Largest accepted request body.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest a request may run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole HTTP surface of an API instance.
pub fn router(app: App) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/graphql/ws", get(crate::ws::graphql_ws))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(crate::telemetry::metrics))
        .with_state(app)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// `POST /graphql`.
async fn graphql(
    State(app): State<App>,
    headers: HeaderMap,
    Origin(meta): Origin,
    request: GraphQLRequest,
) -> Response {
    let caller = caller_from_authorization(&app.services, authorization(&headers), meta);
    let response: GraphQLResponse = app
        .schema
        .execute(request.into_inner().data(RequestCaller(caller)))
        .await
        .into();
    let mut response = response.into_response();
    // Responses may carry PHI: never cache them anywhere.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /graphql`: GraphiQL in development, nothing in production.
async fn graphiql(State(app): State<App>) -> Response {
    if app.settings.mode == Mode::Production {
        return StatusCode::NOT_FOUND.into_response();
    }
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
    .into_response()
}
