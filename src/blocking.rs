//! The single way to run blocking work (SQLite queries, password hashing) off the async
//! runtime, so no handler ever stalls a worker thread.

/// The blocking task panicked or was cancelled; the caller's work did not complete.
#[derive(Debug, thiserror::Error)]
#[error("blocking task failed: {0}")]
pub struct BlockingError(#[from] tokio::task::JoinError);

/// Runs `f` on tokio's blocking pool and waits for it.
pub async fn run<F, T>(f: F) -> Result<T, BlockingError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Ok(tokio::task::spawn_blocking(f).await?)
}
