//! An HTTP server that holds every request: it reads the request and then never answers
//! (`Stall::Silent`), or answers headers for a long body that comes one byte every
//! 200 ms (`Stall::Trickle`, which no read timeout catches). Each request it holds is
//! announced on the returned channel. For cancellation tests (chart discovery here; the
//! facade's service shutdown test includes this file too).

#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// How the server holds a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Not a byte of answer.
    Silent,
    /// A 200 with `Content-Length: 100000`, then a byte every 200 ms.
    Trickle,
}

/// Starts the server on 127.0.0.1; returns `http://127.0.0.1:<port>` and the channel.
pub async fn stalling_server(stall: Stall) -> (String, UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tx.send(());
                if stall == Stall::Silent {
                    // Hold the connection open until the client goes away.
                    let _ = sock.read(&mut chunk).await;
                    return;
                }
                let headers = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
                if sock.write_all(headers.as_bytes()).await.is_err() {
                    return;
                }
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    if sock.write_all(b"#").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://127.0.0.1:{}", addr.port()), rx)
}
