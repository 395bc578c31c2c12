//! The accept loop the hub and the agent share: HTTP/1.1 with a deadline for each request's
//! head, a cap on open connections, optional TLS, the peer address as `ConnectInfo`, and a
//! graceful shutdown.
//!
//! Why not `axum::serve` (or axum-server): neither bounds how long a client may take to send
//! its request head, nor how many connections are open at once. Forty clients that each send
//! one header byte every few seconds then hold their connections, and with them file
//! descriptors, for ever, until nobody else gets in.
//!
//! Why HTTP/1.1 only: hyper's header-read timeout exists for HTTP/1 alone, and its
//! HTTP/1-or-2 detection waits without a deadline for the first bytes. No client of ours
//! needs HTTP/2: browsers speak it only over TLS, which the hub leaves to a reverse proxy,
//! and the hub's agent client speaks HTTP/1.1.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// What a slow or greedy client may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From the first byte of a request (or from connecting, or from the end of the previous
    /// answer on a kept-alive connection) to the end of its head; the TLS handshake gets the
    /// same time. A connection that misses it is closed.
    pub header_read_timeout: Duration,
    /// Connections served at once. The next one is accepted when one closes; until then it
    /// waits in the kernel's listen queue.
    pub max_connections: usize,
}

/// A connection's byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets every
/// connection finish its current request, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    warn_if_over_file_limit(max);
    let permits = Arc::new(Semaphore::new(max));
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let (stop, stopping) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // The permit comes first: at the cap, nothing more is accepted (so no descriptor is
        // spent) until a connection closes.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (app, tls, builder, stopping) =
            (app.clone(), tls.clone(), builder.clone(), stopping.clone());
        tokio::spawn(async move {
            // Held until the connection is closed, whichever way it ends.
            let _permit = permit;
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                        Ok(Ok(stream)) => Box::new(stream),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake too slow; closed");
                            return;
                        }
                    }
                }
            };
            serve_connection(&builder, io, peer, app, stopping).await;
        });
    }

    // Every connection is told to finish its current answer and close; once all have, every
    // permit is back.
    drop(stop);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

async fn serve_connection(
    builder: &hyper::server::conn::http1::Builder,
    io: Box<dyn Io>,
    peer: SocketAddr,
    app: Router,
    mut stopping: watch::Receiver<()>,
) {
    // What `into_make_service_with_connect_info::<SocketAddr>` gives handlers.
    let service = tower::service_fn(move |mut request: axum::http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request.map(axum::body::Body::new))
    });
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                // A header timeout lands here too; the client gets nothing more.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        // Resolves with an error when the sender is dropped: the server is stopping.
        _ = stopping.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Accepting fails when the process is out of file descriptors (or the like): wait a moment
/// rather than spin, as `axum::serve` does. A connection reset before it was accepted is
/// nothing to wait for.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Descriptors the process needs besides its clients' connections: the database and its
/// pool, log files, connections to agents or Caddy, the listener.
const OTHER_DESCRIPTORS: u64 = 64;

/// A cap the open-file limit would hit first protects nothing: accepting then fails for
/// everyone, health checks included. Says so at start.
fn warn_if_over_file_limit(max: usize) {
    #[cfg(not(unix))]
    let _ = max;
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
            return;
        }
        let needed = u64::try_from(max)
            .unwrap_or(u64::MAX)
            .saturating_add(OTHER_DESCRIPTORS);
        if limit.rlim_cur != libc::RLIM_INFINITY && needed > limit.rlim_cur {
            tracing::warn!(
                max_connections = max,
                open_file_limit = limit.rlim_cur,
                "the connection cap is above what the open-file limit (ulimit -n) leaves for \
                 connections: lower the cap or raise the limit"
            );
        }
    }
}
