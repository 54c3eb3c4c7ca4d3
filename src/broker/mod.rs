//! The AWS service broker: an Open Service Broker API v2.17 server whose service
//! instances are CloudFormation stacks. `catalog` (pure) reads the service templates,
//! `store` keeps operation state, `server` speaks OSB; the CloudFormation calls are in
//! `deploy::broker`, the DynamoDB store in `aws::dynamodb`.

pub mod catalog;
pub mod server;
pub mod store;

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
    pub auth: server::Auth,
    pub broker_id: String,
    pub catalog_dir: Option<PathBuf>,
    pub services: Vec<String>,
    pub state: StateLocation,
    pub region: String,
}

/// Runs the broker until SIGINT or SIGTERM, then lets in-flight requests finish.
pub async fn serve(o: ServeOptions) -> Result<()> {
    let mut catalog =
        catalog::Catalog::load(o.catalog_dir.as_deref()).map_err(anyhow::Error::msg)?;
    catalog.only(&o.services);
    let sdk = crate::aws::sdk_config(&o.region, None).await;
    let store = match &o.state {
        StateLocation::Dir(d) => store::AnyStore::File(store::FileStore::open(d.clone())?),
        StateLocation::DynamoDb(t) => {
            store::AnyStore::Dynamo(crate::aws::dynamodb::DynamoStore::new(&sdk, t))
        }
    };
    let app = Arc::new(server::App::new(
        catalog,
        store,
        crate::deploy::broker::CfnBackend::new(&sdk),
        o.broker_id.clone(),
        o.region.clone(),
        o.auth.clone(),
    ));
    let router = server::router(app.clone());
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("shutting down: finishing requests in flight");
        h.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    let names: Vec<&str> = app
        .catalog
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
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
                "kube-aws broker {} listening on https://{} ({} services: {})",
                o.broker_id,
                o.listen,
                names.len(),
                names.join(", ")
            );
            axum_server::bind_rustls(o.listen, cfg)
                .handle(handle)
                .serve(router.into_make_service())
                .await
                .context("serving")?;
        }
        None => {
            eprintln!(
                "kube-aws broker {} listening on http://{} ({} services: {}); plain HTTP: use --tls-cert/--tls-key beyond loopback",
                o.broker_id,
                o.listen,
                names.len(),
                names.join(", ")
            );
            axum_server::bind(o.listen)
                .handle(handle)
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
