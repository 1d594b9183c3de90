//! Answering while the application starts.
//!
//! The listener is bound first and, while the application is being built
//! (database pool, migrations, keys, the GraphQL schema, Redis), a small
//! server on it answers `GET /healthz` (the process is alive) and `503` with
//! `Retry-After: 1` to everything else, `/readyz` included. An orchestrator
//! thus sees a live process within milliseconds of exec, and traffic waits
//! for readiness as it should. When the application is built, the small
//! server stops accepting and the application's own server takes over the
//! same socket: connections that arrive in between wait in the kernel's
//! backlog, and none is refused.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;

/// A bound listening socket, shared by the start-up server and the
/// application's server in turn.
pub struct Listening {
    socket: std::net::TcpListener,
}

impl Listening {
    /// Binds `address`.
    pub fn bind(address: SocketAddr) -> std::io::Result<Self> {
        let socket = std::net::TcpListener::bind(address)?;
        socket.set_nonblocking(true)?;
        Ok(Self { socket })
    }

    /// The bound address (the port, when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Answers probes on the socket until `built` resolves, then hands the
    /// socket back for the application's server.
    pub async fn answer_while<T>(
        self,
        built: impl Future<Output = T>,
    ) -> std::io::Result<(T, tokio::net::TcpListener)> {
        let interim = tokio::net::TcpListener::from_std(self.socket.try_clone()?)?;
        let (done, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(interim, starting_router())
                .with_graceful_shutdown(async move {
                    let _ = stop.await;
                })
                .await
        });
        let value = built.await;
        let _ = done.send(());
        // Its in-flight answers end (each is immediate); its connections close.
        let _ = server.await;
        Ok((value, tokio::net::TcpListener::from_std(self.socket)?))
    }
}

/// What answers while the application starts.
fn starting_router() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "starting",
            )
                .into_response()
        })
}
