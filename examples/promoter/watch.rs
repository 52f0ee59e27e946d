//! `run` (one pass, or `--watch`: the library's service loop until Ctrl-C) and what a pass
//! prints.

use std::time::Duration;

use kargo::controller::PromotionReport;
use kargo::service::{PassReport, Service, ServiceOptions};

use crate::cli::{Cli, Failure, Result};
use crate::ui::Ui;
use crate::{controller, render};

pub(crate) fn pass_failure(
    promotions: &[PromotionReport],
    failed: &[(String, String)],
) -> Option<Failure> {
    if let Some((w, e)) = failed.first() {
        return Some(Failure::Runtime(format!(
            "refreshing Warehouse {w} failed: {e}"
        )));
    }
    let failed: Vec<&PromotionReport> = promotions.iter().filter(|r| !r.succeeded()).collect();
    failed.first().map(|f| {
        Failure::Runtime(format!(
            "{} promotion(s) failed; first: {} in Stage {}: {}",
            failed.len(),
            f.request.name,
            f.request.stage,
            f.result.message.as_deref().unwrap_or("(no message)")
        ))
    })
}

/// Prints what a pass of the service did (nothing for an empty pass).
pub(crate) fn print_pass(ui: &Ui, pass: &PassReport) {
    if !pass.is_empty() {
        let state = pass.state.clone().unwrap_or_default();
        let shown = ui.emit(
            &render::pass_json(&pass.refreshed, &pass.promotions),
            || {
                for (w, o) in &pass.refreshed {
                    println!("{}", render::outcome_text(ui, w, o));
                }
                render::print_reports(ui, &pass.promotions, &state);
            },
        );
        if let Err(f) = shown {
            eprintln!("{} {}", ui.err.red("error:"), f.message());
        }
    }
    if let Some(e) = &pass.error {
        eprintln!("{} {e}", ui.err.red("error:"));
    }
    if let Some(f) = pass_failure(&pass.promotions, &pass.failed) {
        eprintln!("{} {}", ui.err.red("error:"), f.message());
    }
    for r in &pass.requests {
        ui.progress(&format!(
            "{}: refreshed {} and auto-promoted ({} promotion(s)) {} ms after the request",
            r.why,
            r.warehouses.join(", "),
            pass.promotions.len(),
            r.received.elapsed().as_millis()
        ));
    }
}

/// Runs `service` until Ctrl-C: the first calls `on_stop` and stops the service once the
/// running promotion has finished, a second one aborts.
pub(crate) async fn run_until_ctrl_c(
    ui: &Ui,
    service: Service,
    on_stop: impl FnOnce(),
) -> Result<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut task = tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    tokio::select! {
        done = &mut task => return done.map_err(|e| Failure::Runtime(format!("the service failed: {e}"))),
        _ = tokio::signal::ctrl_c() => {}
    }
    ui.progress("stopping once the running promotion has finished (Ctrl-C again to abort)");
    on_stop();
    let _ = stop.send(());
    tokio::select! {
        done = task => done.map_err(|e| Failure::Runtime(format!("the service failed: {e}")))?,
        _ = tokio::signal::ctrl_c() => {
            ui.progress("aborted");
            return Err(Failure::Runtime("aborted during a pass".into()));
        }
    }
    ui.progress("stopped");
    Ok(())
}

pub(crate) async fn run(
    cli: &Cli,
    ui: &Ui,
    watch: bool,
    refresh_all: bool,
    max_sleep: u64,
) -> Result<()> {
    let c = controller(cli).await?;
    if !watch || refresh_all {
        let pass = ui
            .with_progress("reconciling", c.reconcile(refresh_all))
            .await?;
        let state = c.state().await?;
        ui.emit(
            &render::pass_json(&pass.refreshed, &pass.promotions),
            || {
                for (w, o) in &pass.refreshed {
                    println!("{}", render::outcome_text(ui, w, o));
                }
                render::print_reports(ui, &pass.promotions, &state);
                if pass.refreshed.is_empty() && pass.failed.is_empty() && pass.promotions.is_empty()
                {
                    println!("nothing to do: no Warehouse is due and no Stage needs promoting");
                }
            },
        )?;
        if let Some(f) = pass_failure(&pass.promotions, &pass.failed) {
            if !watch {
                return Err(f);
            }
            eprintln!("{} {}", ui.err.red("error:"), f.message());
        }
        if !watch {
            return Ok(());
        }
    }
    ui.progress("watching (Ctrl-C stops)");
    let options = ServiceOptions::default().with_max_sleep(Duration::from_secs(max_sleep.max(1)));
    let ui2 = *ui;
    let service = Service::new(c, options).on_pass(move |pass| print_pass(&ui2, pass));
    run_until_ctrl_c(ui, service, || {}).await
}
