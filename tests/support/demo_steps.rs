//! Small steps the server tests' projects use.

use async_trait::async_trait;
use kargo::core::step::{Step, StepContext, StepError, StepOutcome};

/// Answers its `tag` as an output at once.
pub struct Echo;

/// [`Echo`]'s configuration.
#[derive(serde::Deserialize)]
pub struct EchoConfig {
    tag: String,
}

#[async_trait]
impl Step for Echo {
    const KIND: &'static str = "echo";
    type Config = EchoConfig;

    async fn run(&self, _ctx: &StepContext, cfg: EchoConfig) -> Result<StepOutcome, StepError> {
        Ok(StepOutcome::succeeded().with_output("tag", cfg.tag))
    }
}

/// Serves `app` on a free loopback port; returns the address.
pub async fn listen(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Waits, pass by pass, until the state holds `count` Freight (a refresh asked for
/// during a pass runs in the next one); at most 20 passes.
pub async fn until_freight(handle: &kargo::service::ServiceHandle, count: usize) {
    for _ in 0..20 {
        let passes = handle.status().passes;
        if handle.controller().state().await.unwrap().freight.len() >= count {
            return;
        }
        handle.wait_until_sleeping(passes + 1).await;
    }
    panic!("the state never held {count} Freight");
}
