//! The axum router: GraphQL over HTTP and websockets, probes, and the layers
//! every request passes (request id, tracing, body limit, timeout).

use crate::app::App;
use crate::health;
use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use domain::Caller;
use domain::settings::Mode;
use schema::RequestCaller;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Largest accepted request body.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest a request may run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole HTTP surface of an API instance.
pub fn router(app: App) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let cors_origins = app.settings.cors_origins.clone();
    Router::new()
        .route(
            "/graphql",
            get(graphiql).post(graphql).layer(axum::middleware::from_fn_with_state(
                app.clone(),
                crate::limits::rate_limit,
            )),
        )
        .route("/graphql/ws", get(crate::ws::graphql_ws))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(crate::telemetry::metrics))
        .with_state(app)
        .layer(axum::middleware::from_fn(crate::limits::security_headers))
        .layer(cors(&cors_origins))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(axum::middleware::from_fn(crate::telemetry::track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(crate::telemetry::request_span)
                .on_response(crate::telemetry::record_status),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// CORS for the configured origins only; with none, browsers stay same-origin.
fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

/// `POST /graphql`. The caller was authenticated by the rate-limit layer.
async fn graphql(State(app): State<App>, Extension(caller): Extension<Caller>, request: GraphQLRequest) -> Response {
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
