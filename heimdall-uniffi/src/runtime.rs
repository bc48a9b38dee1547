//! The Tokio runtime behind every call, and the two ways a call waits on it.

use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use tokio::runtime::Runtime;

use crate::errors::{HeimdallError, config};

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The process's runtime (two worker threads), made on first use.
pub(crate) fn runtime() -> Result<&'static Runtime, HeimdallError> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("heimdall")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start Heimdall's Tokio runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| config(e.clone()))
}

/// `fut`'s output if it needs nothing to wait for (a cached decision), polled once on the caller's thread
/// inside the runtime's context; else the future, to be finished on the runtime.
pub(crate) fn now_or_later<F: Future>(rt: &Runtime, fut: F) -> Result<F::Output, std::pin::Pin<Box<F>>> {
    let mut fut = Box::pin(fut);
    let _inside = rt.enter();
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(fut),
    }
}

/// Runs `fut` to its end for a blocking call: at once when it can, else blocking this (foreign) thread on the
/// runtime until it ends.
pub(crate) fn block<F: Future>(fut: F) -> Result<F::Output, HeimdallError> {
    let rt = runtime()?;
    Ok(match now_or_later(rt, fut) {
        Ok(out) => out,
        Err(fut) => rt.block_on(fut),
    })
}

/// Runs `fut` for an `async` call: at once when it can, else as a task of the runtime, whose end resumes the
/// caller (a Tokio join handle can be awaited from any executor, here the foreign one).
pub(crate) async fn run<F>(fut: F) -> Result<F::Output, HeimdallError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = runtime()?;
    match now_or_later(rt, fut) {
        Ok(out) => Ok(out),
        Err(fut) => rt
            .spawn(fut)
            .await
            .map_err(|e| HeimdallError::Unexpected(format!("a Heimdall task failed: {e}"))),
    }
}
