//! HTTP: the routes, the guard every `/v2` request passes (authentication, then the
//! version header), the request log, and the connection limits that hold before any
//! authentication: every pod can reach the broker.
//!
//! - header-read timeout: hyper closes a connection whose request head does not arrive
//!   in time; it needs a timer, which axum-server does not set, so without one a
//!   trickling client holds a connection forever (hyper-util `Http1Builder::
//!   header_read_timeout`: "Requires a Timer ... to take effect"). Since hyper 1.6 it
//!   also bounds the wait for the next request on a kept-alive connection.
//! - idle timeout: a connection that neither reads nor writes for this long is closed
//!   (any protocol, HTTP/2 included).
//! - request timeout: a request (body upload included) that takes longer gets 503.
//! - connection limit: beyond it, new connections are closed at once.

use super::app::{App, Auth};
use super::bindings;
use super::cloud::Cloud;
use super::error::{OsbError, escape};
use super::instances;
use super::store::StateStore;
use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Oldest and newest `X-Broker-API-Version` accepted.
pub const MIN_VERSION: (u32, u32) = (2, 13);
pub const MAX_VERSION: (u32, u32) = (2, 17);

#[derive(Clone, Debug)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
    pub request: Duration,
    pub max_connections: usize,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(120),
            // Longer than the longest synchronous wait (a bind's stack, 40 s).
            request: Duration::from_secs(90),
            max_connections: 512,
        }
    }
}

pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(auth: &Auth, headers: &HeaderMap) -> bool {
    match (
        auth,
        headers.get("authorization").and_then(|h| h.to_str().ok()),
    ) {
        (Auth::Bearer { token }, Some(h)) => h
            .strip_prefix("Bearer ")
            .is_some_and(|t| constant_eq(t.as_bytes(), token.as_bytes())),
        (Auth::Basic { username, password }, Some(h)) => h
            .strip_prefix("Basic ")
            .and_then(|b| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok()
            })
            .is_some_and(|d| constant_eq(&d, format!("{username}:{password}").as_bytes())),
        _ => false,
    }
}

/// Authentication, then the version header, for every `/v2` route; one log line per
/// request, with the platform's user escaped (a newline in it cannot forge a line).
async fn guard<S: StateStore, C: Cloud>(
    State(app): State<Arc<App<S, C>>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = escape(req.uri().path());
    if !authorized(&app.auth, &headers) {
        eprintln!("{method} {path} -> 401 (no valid credentials)");
        return (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                match app.auth {
                    Auth::Basic { .. } => "Basic realm=\"kube-aws broker\"",
                    Auth::Bearer { .. } => "Bearer",
                },
            )],
            Json(json!({"description": "authentication required"})),
        )
            .into_response();
    }
    match headers
        .get("x-broker-api-version")
        .and_then(|h| h.to_str().ok())
    {
        None => {
            return OsbError::bad("the X-Broker-API-Version header is missing").into_response();
        }
        Some(v) => match parse_version(v) {
            Some(x) if x >= MIN_VERSION && x <= MAX_VERSION => {}
            _ => {
                return OsbError::new(
                    StatusCode::PRECONDITION_FAILED,
                    None,
                    format!(
                        "X-Broker-API-Version {} is not supported; this broker speaks 2.13 to 2.17",
                        escape(v)
                    ),
                )
                .into_response();
            }
        },
    }
    let identity = headers
        .get("x-broker-api-originating-identity")
        .and_then(|h| h.to_str().ok())
        .map(originating_identity)
        .unwrap_or_else(|| "-".into());
    let resp = next.run(req).await;
    eprintln!(
        "{method} {path} -> {} identity={identity}",
        resp.status().as_u16()
    );
    resp
}

/// `platform base64(json)` → `platform:user` for the log, escaped. The Kubernetes
/// profile's identity is `{"username", "uid", "groups", "extra"}` (OSB profile.md,
/// "Originating Identity").
pub fn originating_identity(h: &str) -> String {
    let Some((platform, b)) = h.split_once(' ') else {
        return "malformed".into();
    };
    let user = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.trim())
        .ok()
        .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
        .and_then(|v| {
            v.get("username")
                .or_else(|| v.get("user_id"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into());
    escape(&format!(
        "{}:{}",
        platform.chars().take(64).collect::<String>(),
        user.chars().take(256).collect::<String>()
    ))
}

/// 503 for a request that outlives `limit`.
async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => OsbError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the request took too long; try again",
        )
        .into_response(),
    }
}

pub fn router<S: StateStore, C: Cloud>(app: Arc<App<S, C>>, request: Duration) -> Router {
    let v2 = Router::new()
        .route("/v2/catalog", get(catalog::<S, C>))
        .route(
            "/v2/service_instances/{iid}",
            get(instances::fetch::<S, C>)
                .put(instances::provision::<S, C>)
                .patch(instances::update::<S, C>)
                .delete(instances::deprovision::<S, C>),
        )
        .route(
            "/v2/service_instances/{iid}/last_operation",
            get(instances::last_operation::<S, C>),
        )
        .route(
            "/v2/service_instances/{iid}/service_bindings/{bid}",
            get(bindings::fetch::<S, C>)
                .put(bindings::bind::<S, C>)
                .delete(bindings::unbind::<S, C>),
        )
        .route(
            "/v2/service_instances/{iid}/service_bindings/{bid}/last_operation",
            get(bindings::last_operation::<S, C>),
        )
        .layer(middleware::from_fn_with_state(app.clone(), guard::<S, C>));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(v2)
        .with_state(app)
        .layer(middleware::from_fn_with_state(request, request_timeout))
}

async fn catalog<S: StateStore, C: Cloud>(State(app): State<Arc<App<S, C>>>) -> Response {
    (
        [("content-type", "application/json")],
        app.catalog_json.clone(),
    )
        .into_response()
}

/// Binds `listen` with `acceptor` (plain or TLS, wrapped in `Limited`) and arms hyper's
/// header-read timeout, which needs a timer that axum-server does not set.
pub fn server<A>(
    listen: std::net::SocketAddr,
    acceptor: Limited<A>,
    handle: axum_server::Handle,
    t: &Timeouts,
) -> axum_server::Server<Limited<A>> {
    let mut server = axum_server::bind(listen).acceptor(acceptor).handle(handle);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(t.header_read);
    server
}

/// An acceptor that admits at most `max` connections at once and closes idle ones;
/// wraps the plain or the TLS acceptor.
#[derive(Clone)]
pub struct Limited<A> {
    pub inner: A,
    pub permits: Arc<Semaphore>,
    pub idle: Duration,
}

impl<A, I, Svc> axum_server::accept::Accept<I, Svc> for Limited<A>
where
    A: axum_server::accept::Accept<Guarded<I>, Svc> + Clone + Send + 'static,
    A::Future: Send,
    I: Send + 'static,
    Svc: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future =
        Pin<Box<dyn std::future::Future<Output = io::Result<(A::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: I, service: Svc) -> Self::Future {
        let permit = self.permits.clone().try_acquire_owned();
        let inner = self.inner.clone();
        let idle = self.idle;
        Box::pin(async move {
            let Ok(permit) = permit else {
                return Err(io::Error::other("connection limit reached"));
            };
            inner
                .accept(Guarded::new(stream, permit, idle), service)
                .await
        })
    }
}

/// A connection holding its permit, closed (TimedOut) after `idle` without traffic.
pub struct Guarded<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<I> Guarded<I> {
    fn new(inner: I, permit: OwnedSemaphorePermit, idle: Duration) -> Self {
        Guarded {
            inner,
            _permit: permit,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle connection closed",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

use std::future::Future as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_identity() {
        assert_eq!(parse_version("2.17"), Some((2, 17)));
        assert_eq!(parse_version("x"), None);
        let id = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            r#"{"username":"alice"}"#,
        );
        assert_eq!(
            originating_identity(&format!("kubernetes {id}")),
            "kubernetes:alice"
        );
        let forged = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            r#"{"username":"alice\nGET /v2/catalog -> 200 identity=kubernetes:admin"}"#,
        );
        let logged = originating_identity(&format!("kubernetes {forged}"));
        assert!(!logged.contains('\n'), "{logged}");
        assert!(constant_eq(b"abc", b"abc") && !constant_eq(b"abc", b"abd"));
    }
}
