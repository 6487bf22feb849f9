//! The listener: accepts connections up to `max.connections` and runs each on its own
//! task; on shutdown stops accepting, lets connections finish their current request,
//! and returns.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::connection;
use crate::broker::Broker;

/// A bound listener, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    broker: Arc<Broker>,
    max_connections: usize,
    max_request_bytes: usize,
    shutdown: CancellationToken,
}

/// Stops a running server.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shutdown: CancellationToken,
}

impl ServerHandle {
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Server {
    /// Serves on a bound listener. Binding comes first so that a broker asked to listen
    /// on port 0 advertises the port it really got.
    pub fn new(listener: TcpListener, broker: Arc<Broker>, max_connections: usize, max_request_bytes: usize) -> Self {
        Self { listener, broker, max_connections, max_request_bytes, shutdown: CancellationToken::new() }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle { shutdown: self.shutdown.clone() }
    }

    /// Serves until [`ServerHandle::shutdown`], then waits for connections to finish.
    ///
    /// # Cancel safety
    /// Dropping the future drops every connection abruptly; use the handle instead.
    pub async fn run(self) {
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let mut connections = JoinSet::new();
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => permit.expect("semaphore never closes"),
                () = self.shutdown.cancelled() => break,
            };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = self.shutdown.cancelled() => break,
            };
            match accepted {
                Ok((stream, _)) => {
                    let broker = Arc::clone(&self.broker);
                    let shutdown = self.shutdown.clone();
                    let max_request_bytes = self.max_request_bytes;
                    connections.spawn(async move {
                        connection::serve(stream, broker, max_request_bytes, shutdown).await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
            // Reap finished connections so the set does not grow without bound.
            while connections.try_join_next().is_some() {}
        }
        while connections.join_next().await.is_some() {}
    }
}
