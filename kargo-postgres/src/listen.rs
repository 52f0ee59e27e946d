//! Other replicas' writes, heard through PostgreSQL `LISTEN kargo_state`: a connection of
//! its own (outside the pool) whose notifications bump a counter in a watch channel. When
//! the connection drops it is opened again after a pause; meanwhile the service loop
//! falls back to polling.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel every write notifies.
pub(crate) const CHANNEL: &str = "kargo_state";

/// The sending side, kept by every handle; the listener stops when the last is dropped.
#[derive(Clone)]
pub(crate) struct Changes {
    tx: std::sync::Arc<watch::Sender<u64>>,
}

impl Changes {
    /// Starts listening on `config`'s database (in the background, on the current tokio
    /// runtime).
    pub(crate) fn start(config: tokio_postgres::Config, name: String) -> Self {
        let (tx, _) = watch::channel(0u64);
        let tx = std::sync::Arc::new(tx);
        let weak = std::sync::Arc::downgrade(&tx);
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(200);
            loop {
                match listen(&config, &weak).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(database = %name, %error, "lost the notification connection; polling until it is back");
                    }
                }
                if weak.upgrade().is_none() {
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        });
        Self { tx }
    }

    /// A receiver of the change count.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

/// Listens until the connection fails (`Err`) or every handle is gone (`Ok`).
async fn listen(
    config: &tokio_postgres::Config,
    changes: &std::sync::Weak<watch::Sender<u64>>,
) -> Result<(), String> {
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| crate::target::db_error(&e))?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed();
    let statement = format!("LISTEN {CHANNEL}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            r = &mut listen, if !listening => {
                r.map_err(|e| crate::target::db_error(&e))?;
                listening = true;
                // Writes made before LISTEN took effect are not announced: wake anyway.
                match changes.upgrade() {
                    Some(tx) => tx.send_modify(|n| *n += 1),
                    None => return Ok(()),
                }
            }
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(_))) => match changes.upgrade() {
                    Some(tx) => tx.send_modify(|n| *n += 1),
                    None => return Ok(()),
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(crate::target::db_error(&e)),
                None => return Err("the connection closed".into()),
            },
            () = tokio::time::sleep(Duration::from_secs(5)) => {
                if changes.upgrade().is_none() {
                    return Ok(());
                }
            }
        }
    }
}
