//! The AWS service broker: an Open Service Broker API v2.17 server whose service
//! instances are CloudFormation stacks.
//!
//! - `validate`: the request table (mandatory fields per endpoint), checked first;
//! - `state`: records, stack names and tags, the `OpState` machine (pure);
//! - `store`: versioned, conditional record storage (files or DynamoDB);
//! - `cloud`: CloudFormation and Secrets Manager behind a narrow trait (a fake in tests);
//! - `instances`, `bindings`: the handlers; `app`: what they share;
//! - `http`: routes, authentication, logging, timeouts and the connection limit;
//! - `error`: OSB error bodies, with internal causes kept in the log.
//!
//! The catalog is `crate::broker_catalog` (a leaf both render and the broker use); the
//! CloudFormation calls are in `deploy::broker`, the DynamoDB table in `aws::dynamodb`.

pub mod app;
pub mod bindings;
pub mod cloud;
pub mod error;
pub mod http;
pub mod instances;
pub mod state;
pub mod store;
pub mod validate;

pub use app::Auth;

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the broker keeps its state.
#[derive(Debug, Clone)]
pub enum StateLocation {
    Dir(PathBuf),
    DynamoDb(String),
}

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub auth: Auth,
    pub broker_id: String,
    pub catalog_dir: Option<PathBuf>,
    pub services: Vec<String>,
    pub state: StateLocation,
    pub region: String,
    pub permissions_boundary: Option<String>,
    /// The IAM principal the broker runs as; None: asked of STS at start.
    pub principal: Option<String>,
    pub timeouts: http::Timeouts,
    pub limits: app::Limits,
}

/// Runs the broker until SIGINT or SIGTERM, then lets in-flight requests finish. The
/// store is chosen here, where the broker starts: the handlers are generic over it.
pub async fn serve(o: ServeOptions) -> Result<()> {
    let mut catalog = crate::broker_catalog::Catalog::load(o.catalog_dir.as_deref())
        .map_err(anyhow::Error::msg)?;
    catalog.only(&o.services);
    let sdk = crate::aws::sdk_config(&o.region, None).await;
    let cloud = crate::deploy::broker::CfnBackend::new(&sdk);
    let needs_principal = catalog
        .services
        .iter()
        .any(|s| s.parameters.contains_key("KubeAwsBrokerPrincipal"));
    let principal = match &o.principal {
        Some(p) => Some(p.clone()),
        None if needs_principal => Some(
            crate::deploy::broker::caller_principal(&sdk)
                .await
                .context("finding the broker's IAM principal (or pass --principal)")?,
        ),
        None => None,
    };
    let o = &ServeOptions { principal, ..o };
    match &o.state {
        StateLocation::Dir(d) => {
            let store = store::FileStore::open(d.clone())?;
            run(o, catalog, store, cloud).await
        }
        StateLocation::DynamoDb(t) => {
            let store = store::DynamoStore(crate::aws::dynamodb::Table::new(&sdk, t));
            run(o, catalog, store, cloud).await
        }
    }
}

async fn run<S: store::StateStore, C: cloud::Cloud>(
    o: &ServeOptions,
    catalog: crate::broker_catalog::Catalog,
    store: S,
    cloud: C,
) -> Result<()> {
    let names: Vec<String> = catalog.services.iter().map(|s| s.name.clone()).collect();
    let app = Arc::new(app::App::new(
        catalog,
        store,
        cloud,
        o.broker_id.clone(),
        o.region.clone(),
        o.auth.clone(),
        o.permissions_boundary.clone(),
        o.principal.clone(),
        o.limits.clone(),
    ));
    let router = http::router(app, o.timeouts.request);
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("shutting down: finishing requests in flight");
        h.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    let t = &o.timeouts;
    let permits = Arc::new(tokio::sync::Semaphore::new(t.max_connections));
    let boundary = match &o.permissions_boundary {
        Some(b) => format!("binding users bounded by {b}"),
        None => "binding users without a permissions boundary".into(),
    };
    let what = format!(
        "{} services: {}; {boundary}; header-read timeout {:?}, idle {:?}, request {:?}, at most {} connections",
        names.len(),
        names.join(", "),
        t.header_read,
        t.idle,
        t.request,
        t.max_connections
    );
    match &o.tls {
        Some((cert, key)) => {
            // Several crypto providers are linked in; rustls must be told which one.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let cfg = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "loading --tls-cert {} and --tls-key {}",
                        cert.display(),
                        key.display()
                    )
                })?;
            eprintln!(
                "kube-aws broker {} listening on https://{} ({what})",
                o.broker_id, o.listen
            );
            let tls =
                axum_server::tls_rustls::RustlsAcceptor::new(cfg).handshake_timeout(t.header_read);
            let limited = http::Limited {
                inner: tls,
                permits,
                idle: t.idle,
            };
            http::server(o.listen, limited, handle, t)
                .serve(router.into_make_service())
                .await
                .context("serving")?;
        }
        None => {
            eprintln!(
                "kube-aws broker {} listening on http://{} ({what}); plain HTTP: use --tls-cert/--tls-key beyond loopback",
                o.broker_id, o.listen
            );
            let limited = http::Limited {
                inner: axum_server::accept::DefaultAcceptor,
                permits,
                idle: t.idle,
            };
            http::server(o.listen, limited, handle, t)
                .serve(router.into_make_service())
                .await
                .context("serving")?;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests;
