//! The admin endpoint's socket: its own small tokio runtime at a lower priority than the
//! shards, HTTP/1.1 (over TLS with the AdminEndpoint's SecurityProfile), each connection
//! served by hyper with the routes of [`routes`], within named bounds.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Request};
use axum::middleware::map_response;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::api::{Api, Peer};
use crate::error::{Code, Refusal};
use crate::{configuration, dashboard, metrics, monitor, service};

/// Connections served at once; more are closed at once. An operator, a shell, a dashboard and
/// a Prometheus server need a handful.
pub const CONNECTIONS_MAX: usize = 64;
/// The largest request body (a configuration change), in bytes.
pub const BODY_MAX: usize = 1024 * 1024;
/// How long a request's headers may take to arrive, and an idle connection may wait for its
/// next request.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Threads of the API's runtime: requests are short; password checks run on the blocking pool.
const WORKER_THREADS: usize = 1;
/// Threads that hash passwords and write the configuration file at once.
const BLOCKING_THREADS: usize = 2;

/// Every route, and the action it needs (see each handler).
pub fn routes(api: Arc<Api>) -> Router {
    Router::new()
        .route(
            "/ima/v1/configuration",
            get(configuration::get_all).post(configuration::post),
        )
        .route("/ima/v1/configuration/{type}", get(configuration::get_type))
        .route(
            "/ima/v1/configuration/{type}/{name}",
            get(configuration::get_object).delete(configuration::delete),
        )
        .route("/ima/v1/service/status", get(service::status))
        .route("/ima/v1/service/status/{service}", get(service::status_of))
        .route("/ima/v1/service/stop", post(service::stop))
        .route("/ima/v1/service/restart", post(service::restart))
        .route(
            "/ima/v1/service/MQTTClient/{client_id}",
            delete(service::delete_client),
        )
        .route(
            "/ima/v1/service/close/connection",
            post(service::close_connection),
        )
        .route("/ima/v1/monitor/{object}", get(monitor::monitor))
        .route("/metrics", get(metrics::metrics))
        .merge(dashboard::routes())
        .fallback(|| async {
            Refusal::new(
                Code::NotFound,
                "no such REST API call; the API is under /ima/v1/configuration, /ima/v1/service, /ima/v1/monitor and /metrics, the dashboard at /dashboard/",
            )
        })
        .method_not_allowed_fallback(|| async {
            Refusal::new(Code::MethodNotAllowed, "this REST API call does not take this method")
        })
        .layer(DefaultBodyLimit::max(BODY_MAX))
        .layer(map_response(common_headers))
        .with_state(api)
}

/// Headers of every answer: its type is the one it says (a browser must not take a JSON
/// refusal quoting a client id for HTML), and it is not kept by a browser or a proxy (it is
/// the broker's live state or configuration). The dashboard's files say how they are cached.
async fn common_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The running endpoint. Dropping it stops the runtime (requests in flight get a second).
pub struct Running {
    runtime: Option<tokio::runtime::Runtime>,
    pub addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Binds `addr` and serves `api` there.
pub fn start(
    api: Arc<Api>,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<Running, String> {
    let listener =
        StdTcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("ironsight-admin")
        .on_thread_start(ironsight_auth::service::lower_priority)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the admin endpoint's runtime: {e}"))?;
    let listener = {
        let _entered = runtime.enter();
        TcpListener::from_std(listener).map_err(|e| format!("cannot listen on {addr}: {e}"))?
    };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    runtime.spawn(accept_loop(listener, routes(api), acceptor));
    Ok(Running {
        runtime: Some(runtime),
        addr: bound,
    })
}

async fn accept_loop(listener: TcpListener, app: Router, tls: Option<tokio_rustls::TlsAcceptor>) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "admin endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = CONNECTIONS_MAX, "admin endpoint: too many connections; one refused");
            continue;
        };
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            match tls {
                None => serve(stream, peer, app).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve(stream, peer, app).await,
                        Ok(Err(error)) => {
                            tracing::info!(%peer, %error, "admin endpoint: TLS handshake failed")
                        }
                        Err(_) => tracing::info!(%peer, "admin endpoint: TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves one connection's requests, each told its peer.
async fn serve<S>(stream: S, peer: SocketAddr, app: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(Peer(peer));
        app.clone().oneshot(request)
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "admin endpoint: connection ended with an error");
    }
}
