//! The Tokio runtime behind every blocking and `async` call, and what keeps the module working across
//! `fork()`.
//!
//! Threads do not survive `fork()`: a runtime (and everything it drives: a follower task, a connection pool,
//! an HTTP client's connections) made in a parent is dead in the child. gunicorn and other pre-forking servers
//! import the application — and so build Heimdall's objects — in the parent. So the runtime is made per
//! process, and every object holding live state keeps it in a [`PerProcess`], which builds it again the first
//! time it is used in a new process. The parent's copies are leaked in the child, never dropped: dropping a
//! pool there would speak on sockets the parent still uses.
//!
//! `pyo3-async-runtimes` is not used for the same reason: its runtime is one per process image, made once.
//! [`awaitable`] is the small bridge instead: an asyncio future completed from the runtime with
//! `loop.call_soon_threadsafe`.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tokio::runtime::Runtime;

static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This process's runtime, made on first use in each process (two worker threads).
pub(crate) fn runtime() -> PyResult<&'static Runtime> {
    let pid = std::process::id();
    let mut slot = lock(&RUNTIME);
    if let Some((owner, rt)) = *slot
        && owner == pid
    {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("heimdall")
        .enable_all()
        .build()
        .map_err(|e| crate::errors::config(format!("cannot start Heimdall's Tokio runtime: {e}")))?;
    // Leaked on purpose: a runtime inherited through fork() has no threads and must not be dropped.
    let rt: &'static Runtime = Box::leak(Box::new(rt));
    *slot = Some((pid, rt));
    Ok(rt)
}

/// Builds live state; in a forked child it is given the parent's (to copy plain data from, never to use).
type Build<T> = Box<dyn Fn(Option<&T>) -> PyResult<T> + Send + Sync>;

/// Live state (an authorizer with its follower, a facade with its pool) built for the process using it.
pub(crate) struct PerProcess<T: Clone> {
    live: Mutex<Option<(u32, T)>>,
    build: Build<T>,
    closed: std::sync::atomic::AtomicBool,
}

impl<T: Clone> PerProcess<T> {
    /// Builds the state now (so configuration errors surface at construction) and again in each new process.
    pub(crate) fn new(build: impl Fn(Option<&T>) -> PyResult<T> + Send + Sync + 'static) -> PyResult<Self> {
        let first = build(None)?;
        Ok(PerProcess {
            live: Mutex::new(Some((std::process::id(), first))),
            build: Box::new(build),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// This process's state.
    pub(crate) fn get(&self) -> PyResult<T> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(crate::errors::Unavailable::new_err("closed: this object was closed"));
        }
        let pid = std::process::id();
        let mut live = lock(&self.live);
        if let Some((owner, value)) = live.as_ref()
            && *owner == pid
        {
            return Ok(value.clone());
        }
        let fresh = (self.build)(live.as_ref().map(|(_, inherited)| inherited))?;
        if let Some(inherited) = live.replace((pid, fresh.clone())) {
            std::mem::forget(inherited);
        }
        Ok(fresh)
    }

    /// Closes it for good (later calls raise `Unavailable`), handing back this process's state, if it was
    /// built in this process (never a parent's).
    pub(crate) fn close(&self) -> Option<T> {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        let mut live = lock(&self.live);
        match live.as_ref() {
            Some((owner, _)) if *owner == std::process::id() => live.take().map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<T: Clone> Drop for PerProcess<T> {
    fn drop(&mut self) {
        let live = self.live.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some((owner, _)) = live.as_ref()
            && *owner != std::process::id()
            && let Some(inherited) = live.take()
        {
            std::mem::forget(inherited);
        }
    }
}

/// Runs `fut` to its end for a blocking call: at once when it needs nothing to wait for (a cached answer),
/// else on the runtime with the GIL released.
pub(crate) fn block<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = runtime()?;
    let mut fut = Box::pin(fut);
    {
        let _inside = rt.enter();
        if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return Ok(out);
        }
    }
    Ok(py.detach(|| rt.block_on(fut)))
}

/// An awaitable whose outcome is known already (a cached decision): `await` gives it without suspending the
/// coroutine, so the event loop is not involved at all.
#[pyclass(module = "heimdall._heimdall")]
struct Ready {
    outcome: Option<PyResult<Py<PyAny>>>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Ends the iteration at once: `StopIteration(value)` is how an awaitable returns `value`.
    fn __next__(&mut self) -> PyResult<Py<PyAny>> {
        match self.outcome.take() {
            Some(Ok(value)) => Err(pyo3::exceptions::PyStopIteration::new_err((value,))),
            Some(Err(e)) => Err(e),
            None => Err(pyo3::exceptions::PyRuntimeError::new_err(
                "cannot reuse an awaited result",
            )),
        }
    }
}

static COMPLETE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Completes an asyncio future unless it was cancelled meanwhile (runs on the event loop's thread).
#[pyfunction]
fn _complete(future: &Bound<'_, PyAny>, setter: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
    if !future.call_method0("done")?.is_truthy()? {
        future.call_method1(setter, (value,))?;
    }
    Ok(())
}

/// Registers the completion helper.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_complete, m)?)
}

/// An awaitable of `fut`'s result, converted by `convert`: a [`Ready`] when `fut` needs nothing to wait for (a
/// cached decision); else an asyncio future of the running loop, completed from the runtime when `fut` ends.
pub(crate) fn awaitable<'py, F, T>(
    py: Python<'py>,
    fut: F,
    convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: Send + 'static,
{
    // The same contract whether or not the answer is ready: an awaitable belongs to a running event loop.
    let event_loop = running_loop(py)?;
    match now_or_later(py, fut, convert)? {
        Now(value) => Ok(Bound::new(py, Ready { outcome: Some(value) })?.into_any()),
        Later(fut) => later(py, event_loop, fut, convert),
    }
}

/// `fut`'s result, converted by `convert`, when `fut` needs nothing to wait for (a cached decision): raised when
/// it is an error; else an asyncio future of the running loop, completed from the runtime when `fut` ends. For
/// callers that check which they got (the ASGI middleware): no awaitable is made when none is needed.
pub(crate) fn value_or_awaitable<'py, F, T>(
    py: Python<'py>,
    fut: F,
    convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: Send + 'static,
{
    match now_or_later(py, fut, convert)? {
        Now(value) => value.map(|v| v.into_bound(py)),
        Later(fut) => later(py, running_loop(py)?, fut, convert),
    }
}

fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    GET_RUNNING_LOOP
        .get_or_try_init(py, || {
            py.import("asyncio")?.getattr("get_running_loop").map(Bound::unbind)
        })?
        .bind(py)
        .call0()
}

enum Outcome<F> {
    /// The converted result, known at once.
    Now(PyResult<Py<PyAny>>),
    /// The future, which must wait for something (a key fetch, a PDP call).
    Later(std::pin::Pin<Box<F>>),
}
use Outcome::{Later, Now};

/// Polls `fut` once on the runtime.
fn now_or_later<F, T>(py: Python<'_>, fut: F, convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>) -> PyResult<Outcome<F>>
where
    F: Future<Output = PyResult<T>>,
{
    let rt = runtime()?;
    let mut fut = Box::pin(fut);
    let _inside = rt.enter();
    Ok(match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Now(out.and_then(|v| convert(py, v))),
        Poll::Pending => Later(fut),
    })
}

/// An asyncio future of `event_loop`, completed from the runtime when `fut` ends.
fn later<'py, F, T>(
    py: Python<'py>,
    event_loop: Bound<'py, PyAny>,
    fut: std::pin::Pin<Box<F>>,
    convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime()?;
    let future = event_loop.call_method0("create_future")?;
    let complete = COMPLETE
        .get_or_try_init(py, || {
            py.import("heimdall._heimdall")?.getattr("_complete").map(Bound::unbind)
        })?
        .clone_ref(py);
    let (event_loop, target) = (event_loop.unbind(), future.clone().unbind());
    rt.spawn(async move {
        let out = fut.await;
        Python::attach(|py| {
            let (setter, value) = match out.and_then(|v| convert(py, v)) {
                Ok(v) => ("set_result", v),
                Err(e) => ("set_exception", e.into_value(py).into_any()),
            };
            // A closed loop has nobody left to tell.
            let _ = event_loop
                .bind(py)
                .call_method1("call_soon_threadsafe", (complete, target, setter, value));
        });
    });
    Ok(future)
}
