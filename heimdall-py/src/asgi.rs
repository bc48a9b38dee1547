//! What the ASGI middleware (`python/heimdall/asgi.py`) reads from a scope, read here in one call: the method,
//! the routed raw path (with the `root_path` rules of the middleware's module docs) and the bearer token.
//! These are the only implementation of those rules; the decision itself is core's.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::errors::InvalidInput;

/// Why a request whose path does not continue the `root_path` with `/` is refused (400).
const ROOT_PATH_MISMATCH: &str =
    "path rejected: root_path_mismatch (the path does not continue the root_path with '/')";

/// Whether a byte stands raw in a canonical path: unreserved, sub-delimiters, ':', '@', and '/'.
fn raw(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@/".contains(&b)
}

/// What a request the middleware decides is: its method, routed path and token.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) token: Option<String>,
}

/// `scope[key]` when the scope has `key` (a plain dict is read directly, any other mapping through its
/// methods).
fn get<'py>(scope: &Bound<'py, PyAny>, key: &Bound<'py, PyString>) -> PyResult<Option<Bound<'py, PyAny>>> {
    if let Ok(dict) = scope.cast_exact::<PyDict>() {
        return dict.get_item(key);
    }
    if scope.contains(key)? {
        return scope.get_item(key).map(Some);
    }
    Ok(None)
}

/// `bytes(value)` (bytes itself without a copy through Python).
fn bytes_of(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    let builtins = value.py().import("builtins")?;
    Ok(builtins
        .getattr("bytes")?
        .call1((value,))?
        .cast_into::<PyBytes>()?
        .as_bytes()
        .to_vec())
}

/// `bytes.decode("latin-1")` (ASCII, the usual case, copied as it is).
fn latin1(bytes: &[u8]) -> String {
    if bytes.is_ascii()
        && let Ok(ascii) = std::str::from_utf8(bytes)
    {
        return ascii.to_owned();
    }
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// `str(value)` as UTF-8 bytes; a lone surrogate is encoded as Python's `surrogatepass` does.
fn str_bytes(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let s = match value.cast::<PyString>() {
        Ok(s) => s.clone(),
        Err(_) => value.str()?,
    };
    match s.to_cow() {
        Ok(s) => Ok(s.into_owned().into_bytes()),
        Err(_) => Ok(s
            .call_method1("encode", ("utf-8", "surrogatepass"))?
            .cast_into::<PyBytes>()?
            .as_bytes()
            .to_vec()),
    }
}

/// The one raw spelling of a decoded path (its UTF-8 bytes): what may stand raw stays, the rest is
/// percent-encoded.
fn canonical(decoded: &[u8]) -> String {
    let mut out = String::with_capacity(decoded.len());
    for &b in decoded {
        if raw(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The raw path (percent-encoding intact) that the application's router reads, which the resolver then checks
/// for canonical form; `None` when the middleware cannot tell (see the middleware's module docs).
fn routed_path(scope: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let decoded = match get(scope, intern!(scope.py(), "path"))? {
        Some(path) => str_bytes(&path)?,
        None => Vec::new(),
    };
    let target = match get(scope, intern!(scope.py(), "raw_path"))? {
        Some(raw_path) if !raw_path.is_none() => latin1(&bytes_of(&raw_path)?),
        _ => canonical(&decoded),
    };
    let root = match get(scope, intern!(scope.py(), "root_path"))? {
        Some(root) if root.is_truthy()? => str_bytes(&root)?,
        _ => return Ok(Some(target)),
    };
    if root.first() != Some(&b'/') || root.last() == Some(&b'/') || !root.iter().all(|&b| raw(b)) {
        return Ok(None);
    }
    // `root` is ASCII, so byte prefixes are character prefixes.
    let under = |s: &[u8]| s.starts_with(&root) && s.get(root.len()) == Some(&b'/');
    if under(&decoded) && under(target.as_bytes()) {
        return Ok(Some(target[root.len()..].to_owned()));
    }
    if !decoded.starts_with(&root) && !target.as_bytes().starts_with(&root) {
        return Ok(Some(target));
    }
    Ok(None)
}

/// Python's `str.isspace` on a Latin-1 character.
fn space(b: u8) -> bool {
    matches!(
        b,
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | b' ' | 0x85 | 0xa0
    )
}

/// The token of the `Authorization: Bearer` header of the scope's `headers`, or `None`.
pub(crate) fn bearer(scope: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let Some(headers) = get(scope, intern!(scope.py(), "headers"))? else {
        return Ok(None);
    };
    if !headers.is_truthy()? {
        return Ok(None);
    }
    for header in headers.try_iter()? {
        let header = header?;
        let (name, value) = match header.cast::<PyTuple>() {
            Ok(t) if t.len() == 2 => (t.get_item(0)?, t.get_item(1)?),
            _ => match header.cast::<PyList>() {
                Ok(l) if l.len() == 2 => (l.get_item(0)?, l.get_item(1)?),
                _ => {
                    let mut items = header.try_iter()?;
                    match (items.next(), items.next(), items.next()) {
                        (Some(name), Some(value), None) => (name?, value?),
                        _ => return Err(PyValueError::new_err("a header is a (name, value) pair")),
                    }
                }
            },
        };
        let is_authorization = match name.cast::<PyBytes>() {
            Ok(b) => b.as_bytes().eq_ignore_ascii_case(b"authorization"),
            Err(_) => bytes_of(&name)?.eq_ignore_ascii_case(b"authorization"),
        };
        if !is_authorization {
            continue;
        }
        let value = bytes_of(&value)?;
        let (scheme, token) = match value.iter().position(|&b| b == b' ') {
            Some(at) => (&value[..at], &value[at + 1..]),
            None => (&value[..], &[][..]),
        };
        let start = token.iter().position(|&b| !space(b)).unwrap_or(token.len());
        let end = token.iter().rposition(|&b| !space(b)).map_or(start, |at| at + 1);
        let token = &token[start..end.max(start)];
        if scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty() {
            return Ok(Some(latin1(token)));
        }
        return Ok(None);
    }
    Ok(None)
}

/// The request an `http` or `websocket` scope describes (a WebSocket handshake is authorized as a `GET`); the
/// token from `token(scope)` when given, else from the bearer header.
pub(crate) fn request(scope: &Bound<'_, PyAny>, token: Option<&Bound<'_, PyAny>>) -> PyResult<Request> {
    let kind = scope.get_item(intern!(scope.py(), "type"))?;
    let kind = kind.cast::<PyString>().ok().and_then(|k| k.to_cow().ok());
    let method = match kind.as_deref() {
        Some("http") => scope.get_item(intern!(scope.py(), "method"))?.extract::<String>()?,
        Some("websocket") => "GET".to_owned(),
        _ => return Err(PyValueError::new_err("not an http or websocket scope")),
    };
    let Some(path) = routed_path(scope)? else {
        return Err(InvalidInput::new_err(ROOT_PATH_MISMATCH));
    };
    let token = match token {
        Some(read) => read.call1((scope,))?.extract::<Option<String>>()?,
        None => bearer(scope)?,
    };
    Ok(Request { method, path, token })
}

/// The token of the request's `Authorization: Bearer` header, or `None`.
#[pyfunction]
pub(crate) fn bearer_token(scope: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    bearer(scope)
}
