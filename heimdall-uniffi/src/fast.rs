//! The frontends' per-request hot path, beside UniFFI: two C functions that JNA calls directly
//! (`heimdall_jvm_authorize`, `heimdall_jvm_resolve`), each one call with the request read in place from a
//! caller's buffer and the answer written into another, with no allocation crossing the boundary.
//!
//! Why: UniFFI's Kotlin bindings go through JNA and allocate a JNA `Structure` (native memory, registered with
//! JNA's cleaner) for the status of every call, for every string argument and for every returned record, and
//! clone and release the object's handle around each method call: ~40 µs for one `authorize` on this machine,
//! where core's decision takes ~2 µs. The API stays UniFFI's (`Authorizer`, `Resolver`, their errors and
//! records); heimdall-jvm calls these two functions for the same answers (`Authorizer.check`, `Resolver.match`
//! in Kotlin) and decodes them into UniFFI's records.
//!
//! An object takes part once its `fast_id()` is asked for: it is registered under that id (never reused) until it
//! is shut down or dropped; an unknown id is answered as closed. The buffers' layouts are in the functions'
//! docs; heimdall-jvm's `Fast.kt` is the other side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use heimdall_core::authorizer as core;
use heimdall_core::identity::bearer_token;
use heimdall_core::mapping::{Resolution, Snapshot};

use crate::runtime::runtime;

/// Written: the answer is in the output buffer, this many bytes.
/// Negative returns:
const TOO_SMALL: i32 = -1;
const CLOSED: i32 = -2;
const PANICKED: i32 = -3;
const WOULD_WAIT: i32 = -4;
const MALFORMED: i32 = -5;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Registry<T> {
    entries: LazyLock<RwLock<HashMap<u64, T>>>,
}

impl<T: Clone> Registry<T> {
    const fn new() -> Self {
        Registry {
            entries: LazyLock::new(|| RwLock::new(HashMap::new())),
        }
    }

    fn insert(&self, value: T) -> u64 {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, value);
        id
    }

    fn get(&self, id: u64) -> Option<T> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    fn remove(&self, id: u64) {
        self.entries.write().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }
}

static AUTHORIZERS: Registry<core::Authorizer> = Registry::new();
static RESOLVERS: Registry<Arc<Snapshot>> = Registry::new();

pub(crate) fn register_authorizer(authorizer: core::Authorizer) -> u64 {
    AUTHORIZERS.insert(authorizer)
}

pub(crate) fn unregister_authorizer(id: u64) {
    AUTHORIZERS.remove(id);
}

pub(crate) fn register_resolver(snapshot: Arc<Snapshot>) -> u64 {
    RESOLVERS.insert(snapshot)
}

pub(crate) fn unregister_resolver(id: u64) {
    RESOLVERS.remove(id);
}

/// Writes the answer into a caller's buffer: big-endian integers, strings as a 4-byte length and UTF-8.
struct Out<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Out<'_> {
    fn bytes(&mut self, b: &[u8]) -> Option<()> {
        let end = self.at.checked_add(b.len())?;
        self.buf.get_mut(self.at..end)?.copy_from_slice(b);
        self.at = end;
        Some(())
    }

    fn u8(&mut self, v: u8) -> Option<()> {
        self.bytes(&[v])
    }

    fn i32(&mut self, v: i32) -> Option<()> {
        self.bytes(&v.to_be_bytes())
    }

    fn i64(&mut self, v: i64) -> Option<()> {
        self.bytes(&v.to_be_bytes())
    }

    fn str(&mut self, s: &str) -> Option<()> {
        self.i32(i32::try_from(s.len()).ok()?)?;
        self.bytes(s.as_bytes())
    }

    fn opt_str(&mut self, s: Option<&str>) -> Option<()> {
        match s {
            Some(s) => {
                self.u8(1)?;
                self.str(s)
            }
            None => self.u8(0),
        }
    }

    fn params<'p>(&mut self, params: impl ExactSizeIterator<Item = (&'p str, &'p str)>) -> Option<()> {
        self.i32(i32::try_from(params.len()).ok()?)?;
        for (k, v) in params {
            self.str(k)?;
            self.str(v)?;
        }
        Some(())
    }
}

/// The two slices the caller lent; `None` for null pointers or negative lengths.
///
/// # Safety
/// `request` must point to `request_len` readable bytes and `out` to `out_cap` writable bytes, both valid and not
/// aliased for the duration of the call (JNA passes direct `ByteBuffer`s so).
unsafe fn lent<'a>(
    request: *const u8,
    request_len: i32,
    out: *mut u8,
    out_cap: i32,
) -> Option<(&'a [u8], &'a mut [u8])> {
    let request_len = usize::try_from(request_len).ok()?;
    let out_cap = usize::try_from(out_cap).ok()?;
    if request.is_null() || out.is_null() {
        return None;
    }
    // SAFETY: the caller's contract above.
    Some(unsafe {
        (
            std::slice::from_raw_parts(request, request_len),
            std::slice::from_raw_parts_mut(out, out_cap),
        )
    })
}

fn written(out: &Out<'_>, ok: Option<()>) -> i32 {
    match ok {
        Some(()) => i32::try_from(out.at).unwrap_or(TOO_SMALL),
        None => TOO_SMALL,
    }
}

fn decision(out: &mut Out<'_>, outcome: Result<core::Grant, core::Refusal>) -> Option<()> {
    match outcome {
        Ok(g) => {
            out.u8(0)?;
            out.str(g.subject.as_str())?;
            out.opt_str(g.action.as_ref().map(|a| a.as_str()))?;
            match g.mapping_id {
                Some(id) => {
                    out.u8(1)?;
                    out.i64(id)?;
                }
                None => out.u8(0)?,
            }
            out.params(g.params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        }
        Err(r) => {
            out.u8(1)?;
            out.i32(i32::from(r.status))?;
            out.str(r.code)?;
            out.str(&r.message)
        }
    }
}

/// Decides one request for the authorizer registered as `id`. `request` is packed as `Packed` reads it; `wait` 0
/// answers [`WOULD_WAIT`] (-4) instead of blocking when the decision needs a key fetch or a PDP call.
///
/// Returns the bytes written to `out`, or -1 (too small), -2 (no such authorizer: closed), -3 (a panic), -4
/// (would wait), -5 (a malformed request). The answer: a byte 0 (allowed) then the subject, the action (a byte
/// 0/1, then the string), the mapping id (a byte 0/1, then 8 bytes), the parameters (a 4-byte count, then name
/// and value strings); or a byte 1 (refused) then the status (4 bytes), the code and the message.
///
/// # Safety
/// `request` must point to `request_len` readable bytes and `out` to `out_cap` writable bytes for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn heimdall_jvm_authorize(
    id: u64,
    request: *const u8,
    request_len: i32,
    out: *mut u8,
    out_cap: i32,
    wait: i8,
) -> i32 {
    // SAFETY: the caller's contract.
    let Some((request, out)) = (unsafe { lent(request, request_len, out, out_cap) }) else {
        return MALFORMED;
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(authorizer) = AUTHORIZERS.get(id) else {
            return CLOSED;
        };
        let Some(r) = Packed::read(request) else {
            return MALFORMED;
        };
        let Ok(rt) = runtime() else {
            return PANICKED;
        };
        let token = r.authorization.and_then(bearer_token);
        let fut = authorizer.authorize(r.method, r.target, token);
        let outcome = match crate::runtime::now_or_later(rt, fut) {
            Ok(outcome) => outcome,
            Err(_) if wait == 0 => return WOULD_WAIT,
            Err(fut) => rt.block_on(fut),
        };
        let mut out = Out { buf: out, at: 0 };
        let ok = decision(&mut out, outcome);
        written(&out, ok)
    }))
    .unwrap_or(PANICKED)
}

/// Resolves one request on the resolver registered as `id`. `request`: the method and the path, each after a
/// 4-byte big-endian length. Returns the bytes written to `out` or a negative code (as for
/// [`heimdall_jvm_authorize`]). The answer: a byte 0 (matched) then the mapping id (8 bytes), the action, the
/// pattern, the owner group (a byte 0/1, then the string) and the parameters; a byte 1 (no mapping); or a byte 2
/// (rejected) then the reason.
///
/// # Safety
/// `request` must point to `request_len` readable bytes and `out` to `out_cap` writable bytes for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn heimdall_jvm_resolve(
    id: u64,
    request: *const u8,
    request_len: i32,
    out: *mut u8,
    out_cap: i32,
) -> i32 {
    // SAFETY: the caller's contract.
    let Some((request, out)) = (unsafe { lent(request, request_len, out, out_cap) }) else {
        return MALFORMED;
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(snapshot) = RESOLVERS.get(id) else {
            return CLOSED;
        };
        let Some(r) = Packed::read(request) else {
            return MALFORMED;
        };
        let mut out = Out { buf: out, at: 0 };
        let ok = match snapshot.resolve(r.method, r.target) {
            Resolution::Matched(m) => (|| {
                out.u8(0)?;
                out.i64(m.id())?;
                out.str(m.action().as_str())?;
                out.str(m.pattern().as_str())?;
                out.opt_str(m.owner_group().map(|g| g.as_str()))?;
                let params: Vec<(&str, &str)> = m.params().collect();
                out.params(params.into_iter())
            })(),
            Resolution::NoMatch => out.u8(1),
            Resolution::Rejected(why) => out.u8(2).and_then(|()| out.str(why.as_str())),
        };
        written(&out, ok)
    }))
    .unwrap_or(PANICKED)
}

/// A request as [`heimdall_jvm_authorize`] reads it: the method and the target, each after its length (4 bytes,
/// big endian), then the `Authorization` header value to the end (nothing: no header).
struct Packed<'a> {
    method: &'a str,
    target: &'a str,
    authorization: Option<&'a str>,
}

impl<'a> Packed<'a> {
    fn read(bytes: &'a [u8]) -> Option<Packed<'a>> {
        fn field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
            let (len, rest) = bytes.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
            (len <= rest.len()).then(|| rest.split_at(len))
        }
        let (method, rest) = field(bytes)?;
        let (target, authorization) = field(rest)?;
        Some(Packed {
            method: std::str::from_utf8(method).ok()?,
            target: std::str::from_utf8(target).ok()?,
            authorization: match authorization {
                [] => None,
                value => Some(std::str::from_utf8(value).ok()?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Packed;

    fn pack(method: &str, target: &str, authorization: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for part in [method, target] {
            out.extend_from_slice(&u32::try_from(part.len()).expect("short").to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out.extend_from_slice(authorization.as_bytes());
        out
    }

    #[test]
    fn a_packed_request_reads_back_whole() {
        let bytes = pack("GET", "/courses/7?x=1 2", "Bearer a b");
        let r = Packed::read(&bytes).expect("well formed");
        assert_eq!(
            (r.method, r.target, r.authorization),
            ("GET", "/courses/7?x=1 2", Some("Bearer a b"))
        );
        let none = pack("POST", "/", "");
        assert_eq!(Packed::read(&none).expect("well formed").authorization, None);
    }

    #[test]
    fn a_malformed_packed_request_is_not_read() {
        let good = pack("GET", "/courses/7", "Bearer t");
        for cut in 0..11 {
            assert!(Packed::read(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut long = good.clone();
        long[3] = 200; // a method longer than the buffer
        assert!(Packed::read(&long).is_none());
        let not_utf8 = pack("GET", "/\u{e9}", "");
        let mut bytes = not_utf8.clone();
        let at = bytes.len() - 1;
        bytes[at] = 0xFF;
        assert!(Packed::read(&bytes).is_none());
    }
}
