//! `promoter serve`: the library's HTTP routes ([`kargo::server::router`]) and service loop
//! ([`kargo::service::Service`]) on one address.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kargo::server::{ServerOptions, router};
use kargo::service::{Service, ServiceOptions};
use kargo::sources::webhook::WebhookRouter;

use crate::cli::{Cli, Failure, Result};
use crate::controller;
use crate::ui::Ui;
use crate::watch::{print_pass, run_until_ctrl_c};

/// Secrets as read from `--secrets`: name → key → value.
type Secrets = BTreeMap<String, BTreeMap<String, String>>;

fn load_secrets(path: &Path) -> Result<Secrets> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Input(format!("cannot read {}: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Ok(Secrets::new());
    }
    yaml_serde::from_str(&text).map_err(|e| {
        Failure::Input(format!(
            "{}: not a map of Secrets (`name: {{key: value}}`): {e}",
            path.display()
        ))
    })
}

pub(crate) async fn serve(
    cli: &Cli,
    ui: &Ui,
    listen: SocketAddr,
    secrets: Option<&Path>,
    (refresh_token, tokens, insecure): (Option<String>, Option<&Path>, bool),
    max_sleep: u64,
) -> Result<()> {
    if insecure && !listen.ip().is_loopback() {
        return Err(Failure::Input(format!(
            "--insecure-no-auth serves everything to anyone without a token: it is refused on {listen}, which is not a loopback address (use 127.0.0.1 or ::1, or --tokens FILE)"
        )));
    }
    // The API's token file first: a bad one stops before anything starts.
    let access = match tokens {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::Input(format!(
                    "cannot read the token file {}: {e}",
                    path.display()
                ))
            })?;
            Some(
                kargo::server::access::AccessTable::from_yaml_str(
                    &path.display().to_string(),
                    &text,
                )
                .map_err(|e| Failure::Input(e.to_string()))?,
            )
        }
        None => None,
    };
    let secrets = match secrets {
        Some(p) => load_secrets(p)?,
        None => Secrets::new(),
    };
    // `--secrets FILE` first, then the Secrets of the manifests (the project's namespace).
    let c = controller(cli).await?.with_secrets(Arc::new(secrets));
    let project = c.project().to_owned();
    let all_secrets = c.secrets().clone();
    let mut webhooks = match c.manifests().project_config(&project) {
        Some(cfg) => WebhookRouter::new(&project, cfg, all_secrets.as_ref()),
        None => WebhookRouter::from_receivers(&project, &[], all_secrets.as_ref()),
    };
    // A ClusterConfig's receivers are cluster-wide: here, this Project's Warehouses.
    if let Some(cluster) = c.manifests().cluster_config() {
        webhooks =
            webhooks.with_cluster_receivers(&cluster.spec.webhook_receivers, all_secrets.as_ref());
    }
    for r in webhooks.routes() {
        ui.progress(&format!(
            "webhook receiver {} ({}) at {}",
            r.name, r.provider, r.path
        ));
    }
    if refresh_token.is_none() {
        ui.progress("the refresh API is off (no --refresh-token or KARGO_REFRESH_TOKEN)");
    }
    let options = ServiceOptions::default().with_max_sleep(Duration::from_secs(max_sleep.max(1)));
    let ui2 = *ui;
    let service = Service::new(c, options).on_pass(move |pass| print_pass(&ui2, pass));
    let mut options = ServerOptions::default().with_refresh_token(refresh_token);
    if let Some(table) = access {
        ui.progress(&format!(
            "REST API at /v1beta1 and the web UI at /ui/ for {} token(s)",
            table.len()
        ));
        options = options.with_access(table);
    }
    if insecure {
        ui.progress("INSECURE: the REST API and the web UI are open to anyone on this machine without a token (--insecure-no-auth)");
        options = options.with_insecure_anonymous_access();
    }
    let routes = router(service.handle(), webhooks, options);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Runtime(format!("cannot listen on {listen}: {e}")))?;
    ui.progress(&format!("listening on http://{addr} (Ctrl-C stops)"));
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, routes)
            .with_graceful_shutdown(async move {
                let _ = http_stopped.await;
            })
            .await
    });
    // The first Ctrl-C stops accepting requests at once, then lets the service finish.
    let result = run_until_ctrl_c(ui, service, move || {
        let _ = stop_http.send(());
    })
    .await;
    match server.await {
        Ok(Ok(())) => result,
        Ok(Err(e)) => Err(Failure::Runtime(format!("the HTTP server failed: {e}"))),
        Err(e) => Err(Failure::Runtime(format!("the HTTP server failed: {e}"))),
    }
}
