//! The canonical-path check (see the policy in the [module docs](super)).

use std::fmt;

/// Longest request path (before the query string) the resolver accepts, in bytes. Longer paths are
/// rejected ([`PathRejection::TooLong`]), so that the cost of resolving one request is bounded.
pub const MAX_PATH_LEN: usize = 2048;

/// Why [`check_path`] refused a request path: the path is not canonical. Nothing is ever rewritten;
/// callers answer a refused path with 400 (a denial). Also why [`check_method`] refused a request
/// method ([`InvalidMethod`](PathRejection::InvalidMethod)): the resolver refuses both the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathRejection {
    /// The path is empty or does not start with `/` (an absolute-form URI, `*`, or garbage).
    NotAbsolute,
    /// The path is longer than [`MAX_PATH_LEN`].
    TooLong,
    /// A control character or NUL, raw or percent-encoded (`%00`, `%0A`, `%7F`, ...).
    ControlCharacter,
    /// A backslash, raw or encoded (`%5C`): some servers treat it as a separator.
    Backslash,
    /// A semicolon, raw or encoded (`%3B`): servlet containers strip `;params` from segments.
    Semicolon,
    /// An encoded slash (`%2F`): it hides a segment boundary from one router and not from another.
    EncodedSlash,
    /// An encoded percent sign (`%25`): double encoding means different things to different routers.
    EncodedPercent,
    /// An encoded `?` or `#` (`%3F`, `%23`): a router that decodes first would cut the path there.
    EncodedQuery,
    /// A `%` not followed by two hexadecimal digits.
    BadEscape,
    /// A percent-escape written with lower-case hex digits (`%c3%a9`; canonical is `%C3%A9`).
    LowercaseEscape,
    /// A percent-escape of a character that may stand raw in a path: unreserved (`%41` for `A`, `%2E`
    /// for `.`, `%7E` for `~`), a sub-delimiter (`%21` for `!`, `%2B` for `+`, `%3D` for `=`, ...), `:`
    /// (`%3A`) or `@` (`%40`). Canonical paths write these as they are, so that each decoded path has
    /// exactly one raw spelling, and a router that matches the raw path and one that matches the
    /// decoded path read it the same.
    NeedlessEscape,
    /// Percent-escapes that decode to bytes which are not UTF-8 (including overlong forms).
    InvalidUtf8,
    /// A raw byte that a URI path may not hold unencoded: non-ASCII, space, `"`, `<`, `>`, `[`, `]`,
    /// `^`, `` ` ``, `{`, `|`, `}`.
    InvalidCharacter,
    /// A `.` or `..` segment, raw or encoded (`/a/../b`, `/a/%2E%2E/b`): never resolved, refused.
    DotSegment,
    /// An empty segment: `//`, or a trailing slash (`/courses/`). Only the root `/` ends with `/`.
    EmptySegment,
    /// The request method is not an upper-case RFC 9110 token ([`check_method`]): empty, with a
    /// lower-case letter (`get`, `Get`), or with a character a token may not hold (`GE T`). Methods
    /// are case-sensitive, but some frameworks upper-case them before routing (Django runs its `GET`
    /// view for `get`), so such a method is refused rather than resolved as an unknown method.
    InvalidMethod,
    /// A `#` before the query string. Clients don't send fragments, and a server that gets one passes it
    /// on: Starlette and Django under uvicorn route `/users/@me#x` as a path of its own, whose
    /// `/users/@me` prefix is all a resolver that cut the fragment would have judged.
    Fragment,
}

impl PathRejection {
    /// A short, stable, machine-readable reason.
    pub fn as_str(self) -> &'static str {
        match self {
            PathRejection::NotAbsolute => "path_not_absolute",
            PathRejection::TooLong => "path_too_long",
            PathRejection::ControlCharacter => "control_character",
            PathRejection::Backslash => "backslash",
            PathRejection::Semicolon => "semicolon",
            PathRejection::EncodedSlash => "encoded_slash",
            PathRejection::EncodedPercent => "encoded_percent",
            PathRejection::EncodedQuery => "encoded_query_delimiter",
            PathRejection::BadEscape => "bad_percent_escape",
            PathRejection::LowercaseEscape => "lowercase_percent_escape",
            PathRejection::NeedlessEscape => "needless_percent_escape",
            PathRejection::InvalidUtf8 => "invalid_utf8",
            PathRejection::InvalidCharacter => "invalid_character",
            PathRejection::DotSegment => "dot_segment",
            PathRejection::EmptySegment => "empty_segment",
            PathRejection::InvalidMethod => "invalid_method",
            PathRejection::Fragment => "fragment_in_target",
        }
    }
}

impl fmt::Display for PathRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks that `method` is an upper-case RFC 9110 token: one or more of `A-Z 0-9
/// !#$%&'*+-.^_`|~`. Methods are case-sensitive: `get` is not `GET`, and since some frameworks
/// upper-case the method before routing (Django) while others don't, a method with a lower-case
/// letter is refused ([`PathRejection::InvalidMethod`]) rather than resolved. Extension methods in
/// upper case (`PROPFIND`) pass, and match only `ANY` mappings.
///
/// ```
/// use heimdall_core::mapping::{check_method, PathRejection};
/// assert_eq!(check_method("GET"), Ok(()));
/// assert_eq!(check_method("PROPFIND"), Ok(()));
/// assert_eq!(check_method("get"), Err(PathRejection::InvalidMethod));
/// assert_eq!(check_method("Get"), Err(PathRejection::InvalidMethod));
/// assert_eq!(check_method("GE T"), Err(PathRejection::InvalidMethod));
/// assert_eq!(check_method(""), Err(PathRejection::InvalidMethod));
/// ```
pub fn check_method(method: &str) -> Result<(), PathRejection> {
    let token = !method.is_empty()
        && method.bytes().all(|b| {
            b.is_ascii_uppercase()
                || b.is_ascii_digit()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        });
    if token {
        Ok(())
    } else {
        Err(PathRejection::InvalidMethod)
    }
}

/// Byte classes of the raw scan.
/// Allowed as it is: unreserved characters, sub-delimiters other than `;`, `:` and `@`.
const PLAIN: u8 = 0;
const SLASH: u8 = 1;
const PERCENT: u8 = 2;
const CONTROL: u8 = 3;
const BACKSLASH: u8 = 4;
const SEMICOLON: u8 = 5;
/// Not allowed raw in a URI path (space, `"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`, `}`, non-ASCII).
const INVALID: u8 = 6;
/// `?` or `#` (never seen by the scan: the path is cut before them).
const QUERY: u8 = 7;

static CLASS: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = CONTROL;
        i += 1;
    }
    t[0x7f] = CONTROL;
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = PLAIN;
        c += 1;
    }
    c = b'A';
    while c <= b'Z' {
        t[c as usize] = PLAIN;
        t[(c + 32) as usize] = PLAIN;
        c += 1;
    }
    let plain = b"-._~!$&'()*+,=:@";
    let mut k = 0;
    while k < plain.len() {
        t[plain[k] as usize] = PLAIN;
        k += 1;
    }
    t[b'/' as usize] = SLASH;
    t[b'%' as usize] = PERCENT;
    t[b'\\' as usize] = BACKSLASH;
    t[b';' as usize] = SEMICOLON;
    t[b'?' as usize] = QUERY;
    t[b'#' as usize] = QUERY;
    t
};

/// Whether the fast path of [`check_path`] passes over `b` (plain bytes and '/'; it stops at all others).
/// ('.' is plain; the fast path watches for it at the start of a segment.) Written as ranges and
/// comparisons joined without branches, so that the compiler checks a whole chunk at once with vector
/// instructions.
#[inline(always)]
fn is_calm(b: u8) -> bool {
    (b.wrapping_sub(b'&') <= b':' - b'&')
        | (b.wrapping_sub(b'@') <= b'Z' - b'@')
        | (b.wrapping_sub(b'a') <= b'z' - b'a')
        | (b == b'!')
        | (b == b'$')
        | (b == b'=')
        | (b == b'_')
        | (b == b'~')
}

/// The `N` bytes of `bytes` from `at`, if there are as many.
#[inline(always)]
fn chunk_at<const N: usize>(bytes: &[u8], at: usize) -> Option<&[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The fast path of [`check_path`] over `bytes` (which starts with '/'), `N` bytes at a time (8 or 16):
/// where it stopped, `bytes.len()` when it went through. It goes on as long as every byte is calm
/// ([`is_calm`]) and no segment is empty or starts with '.' (no '/' is followed by '/' or '.').
#[inline(always)]
fn calm_prefix<const N: usize>(bytes: &[u8]) -> usize {
    let mut at = 1;
    while at < bytes.len() {
        // The last chunk overlaps the one before (bytes seen twice are judged the same way twice).
        let start = if at + N <= bytes.len() {
            at
        } else if bytes.len() > N {
            bytes.len() - N
        } else {
            break;
        };
        // Each byte beside the one before it (`start` is at least 1).
        let (Some(before), Some(chunk)) = (chunk_at::<N>(bytes, start - 1), chunk_at::<N>(bytes, start)) else {
            break;
        };
        let restless = before.iter().zip(chunk).fold(0u8, |acc, (&p, &b)| {
            acc | u8::from(!is_calm(b) | ((p == b'/') & ((b == b'/') | (b == b'.'))))
        });
        if restless != 0 {
            return start;
        }
        at = start + N;
    }
    at
}

/// Whether `b` may stand unencoded in a canonical path segment (unreserved, `!$&'()*+,=:@`): its
/// percent-escape is needless, hence refused.
pub(crate) fn is_plain(b: u8) -> bool {
    CLASS[usize::from(b)] == PLAIN
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte a `%XX` escape at the start of `s` stands for, and whether its hex digits were lower-case.
pub(crate) fn escape_at(s: &[u8]) -> Result<(u8, bool), PathRejection> {
    match (s.get(1).copied(), s.get(2).copied()) {
        (Some(h), Some(l)) => match (hex(h), hex(l)) {
            (Some(hv), Some(lv)) => Ok((hv * 16 + lv, h.is_ascii_lowercase() || l.is_ascii_lowercase())),
            _ => Err(PathRejection::BadEscape),
        },
        _ => Err(PathRejection::BadEscape),
    }
}

/// Why a percent-escape for byte `v` is refused in a canonical path, if it is: escapes that hide a
/// separator or a query delimiter, double encoding, control characters, `;` and `\`. (Escapes of
/// characters that may stand raw, [`is_plain`], are refused as needless by the caller.)
pub(crate) fn refused_escape(v: u8) -> Option<PathRejection> {
    Some(match v {
        b'/' => PathRejection::EncodedSlash,
        b'%' => PathRejection::EncodedPercent,
        b'?' | b'#' => PathRejection::EncodedQuery,
        b'\\' => PathRejection::Backslash,
        b';' => PathRejection::Semicolon,
        0..0x20 | 0x7f => PathRejection::ControlCharacter,
        _ => return None,
    })
}

/// The number of bytes a UTF-8 sequence starting with `lead` has (0: not a valid lead byte).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

/// Checks that the percent-escapes starting at `s` (whose first escape decodes to the non-ASCII byte
/// `lead`) form one UTF-8 character, and returns how many raw bytes they take.
fn check_utf8_escapes(s: &[u8], lead: u8) -> Result<usize, PathRejection> {
    let n = utf8_len(lead);
    if n == 0 {
        return Err(PathRejection::InvalidUtf8);
    }
    let mut buf = [lead, 0, 0, 0];
    for (k, slot) in buf.iter_mut().enumerate().take(n).skip(1) {
        let at = &s[(3 * k).min(s.len())..];
        if at.first() != Some(&b'%') {
            return Err(PathRejection::InvalidUtf8);
        }
        let (v, lower) = escape_at(at)?;
        if lower {
            return Err(PathRejection::LowercaseEscape);
        }
        *slot = v;
    }
    // The standard library refuses overlong forms, surrogates and code points past U+10FFFF.
    match std::str::from_utf8(&buf[..n]) {
        Ok(_) => Ok(3 * n),
        Err(_) => Err(PathRejection::InvalidUtf8),
    }
}

/// Checks that `raw` (a request target: a path and an optional query string) has a canonical path,
/// and returns the path without the query string. Nothing is decoded or rewritten: the path is exactly
/// what a router given `raw` sees. A `#` before the query string is refused
/// ([`PathRejection::Fragment`]): clients do not send fragments, and servers that receive one hand it to
/// the router as part of the path.
///
/// Canonical means: it starts with `/`, is at most [`MAX_PATH_LEN`] bytes, has no empty segment (no
/// `//`, and no trailing slash except the root `/` itself), no `.` or `..` segment (raw or encoded),
/// only characters allowed in a URI path (unreserved, `!$&'()*+,=:@`), no `;` or `\`, and
/// percent-escapes that are upper-case, only of characters that may not stand raw (space,
/// `"<>[]^`{|}` and non-ASCII: never of unreserved characters, `!$&'()*+,=:@`, `/`, `\`, `?`, `#`,
/// `%`, `;` or control characters), and decode to UTF-8. So each decoded path has exactly one
/// canonical spelling: a router that matches the raw path (axum) and one that matches the decoded
/// path (Starlette, Django) dispatch a canonical path the same way.
///
/// Allocation-free.
///
/// ```
/// use heimdall_core::mapping::{check_path, PathRejection};
/// assert_eq!(check_path("/courses/7?tab=1"), Ok("/courses/7"));
/// assert_eq!(check_path("/files/caf%C3%A9"), Ok("/files/caf%C3%A9"));
/// assert_eq!(check_path("/courses/7/"), Err(PathRejection::EmptySegment));
/// assert_eq!(check_path("/courses/%2e%2e/admin"), Err(PathRejection::DotSegment));
/// assert_eq!(check_path("/c%6Furses"), Err(PathRejection::NeedlessEscape));
/// assert_eq!(check_path("/courses/1%2F2"), Err(PathRejection::EncodedSlash));
/// // `:` and `@` stand raw in a path, so their escapes are needless.
/// assert_eq!(check_path("/v1/jobs:purge"), Ok("/v1/jobs:purge"));
/// assert_eq!(check_path("/v1/jobs%3Apurge"), Err(PathRejection::NeedlessEscape));
/// assert_eq!(check_path("/users/%40me"), Err(PathRejection::NeedlessEscape));
/// assert_eq!(check_path("/files/a%20b"), Ok("/files/a%20b"));
/// ```
pub fn check_path(raw: &str) -> Result<&str, PathRejection> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathRejection::NotAbsolute);
    }
    // Fast path: sixteen (or, for short paths, eight) bytes at a time, as long as every byte is calm
    // (see `is_calm`) and no segment is empty or starts with '.'. A canonical path without a query
    // string, percent-escapes or segments starting with '.' is accepted here, after one pass; at anything
    // else the careful scan below takes over from the start of the segment the fast path stopped in,
    // with the same answers as if it had scanned everything.
    let mut at = if bytes.len() > 16 {
        calm_prefix::<16>(bytes)
    } else {
        calm_prefix::<8>(bytes)
    };
    if at >= bytes.len() && bytes.len() >= 9 {
        // The whole target is a path (no '?' or '#': they need attention), and it is canonical unless
        // too long or ending with '/'.
        if bytes.len() > MAX_PATH_LEN {
            return Err(PathRejection::TooLong);
        }
        if bytes.last() != Some(&b'/') {
            return Ok(raw);
        }
        at = bytes.len();
    }
    // The careful scan resumes at the start of the segment holding `at` (every segment before it has
    // been found canonical).
    let resume = bytes[..at]
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(1, |slash| slash + 1);
    check_path_from(raw, resume)
}

/// The careful scan of [`check_path`], from `resume` (the start of a segment, which all bytes
/// before it are known to be canonical).
#[cold]
#[inline(never)]
fn check_path_from(raw: &str, resume: usize) -> Result<&str, PathRejection> {
    // `str::find(char)` uses the standard library's word-at-a-time memchr.
    let end = raw.find('?').unwrap_or(raw.len());
    if raw[..end].contains('#') {
        return Err(PathRejection::Fragment);
    }
    if end > MAX_PATH_LEN {
        return Err(PathRejection::TooLong);
    }
    let path = &raw[..end];
    if path == "/" {
        return Ok(path);
    }
    let bytes = path.as_bytes();
    // The segment being scanned starts after the '/' at `seg_start - 1`.
    let mut seg_start = resume.min(end);
    // Dots in the segment so far (raw or `%2E`), and whether it holds anything else.
    let mut dots = 0usize;
    let mut other = false;
    // An encoded dot seen in this segment: needless, unless the segment is a dot segment.
    let mut encoded_dot = false;
    let mut i = seg_start;
    loop {
        let b = bytes.get(i).copied();
        match b.map(|b| CLASS[usize::from(b)]) {
            None | Some(SLASH) => {
                if i == seg_start {
                    return Err(PathRejection::EmptySegment);
                }
                if !other && dots <= 2 {
                    return Err(PathRejection::DotSegment);
                }
                if encoded_dot {
                    return Err(PathRejection::NeedlessEscape);
                }
                if b.is_none() {
                    return Ok(path);
                }
                i += 1;
                seg_start = i;
                dots = 0;
                other = false;
                encoded_dot = false;
            }
            Some(PLAIN) => {
                if bytes[i] == b'.' {
                    dots += 1;
                } else {
                    other = true;
                }
                i += 1;
            }
            Some(PERCENT) => {
                let (v, lower) = escape_at(&bytes[i..])?;
                if v == b'.' {
                    dots += 1;
                    encoded_dot = true;
                    i += 3;
                    continue;
                }
                if let Some(why) = refused_escape(v) {
                    return Err(why);
                }
                if lower {
                    return Err(PathRejection::LowercaseEscape);
                }
                if is_plain(v) {
                    return Err(PathRejection::NeedlessEscape);
                }
                other = true;
                i += if v >= 0x80 {
                    check_utf8_escapes(&bytes[i..], v)?
                } else {
                    3
                };
            }
            Some(CONTROL) => return Err(PathRejection::ControlCharacter),
            Some(BACKSLASH) => return Err(PathRejection::Backslash),
            Some(SEMICOLON) => return Err(PathRejection::Semicolon),
            Some(_) => return Err(PathRejection::InvalidCharacter),
        }
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Non-zero if some byte of `v` is zero (exact as a yes/no answer; the lowest set bit marks the first).
#[inline]
pub(crate) fn zero_byte_mask(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// Up to eight bytes as a little-endian word, missing bytes zero, with at most three loads (no loop, no
/// call to `memcpy`).
#[inline]
pub(crate) fn word(c: &[u8]) -> u64 {
    let n = c.len();
    if n >= 8 {
        return match <[u8; 8]>::try_from(&c[..8]) {
            Ok(w) => u64::from_le_bytes(w),
            Err(_) => 0,
        };
    }
    if n >= 4 {
        // Two overlapping four-byte loads; the overlap holds the same bytes in both.
        let lo = match <[u8; 4]>::try_from(&c[..4]) {
            Ok(w) => u32::from_le_bytes(w),
            Err(_) => 0,
        };
        let hi = match <[u8; 4]>::try_from(&c[n - 4..]) {
            Ok(w) => u32::from_le_bytes(w),
            Err(_) => 0,
        };
        return u64::from(lo) | (u64::from(hi) << (8 * (n - 4)));
    }
    if n == 0 {
        return 0;
    }
    // One to three bytes: first, middle and last cover them all.
    u64::from(c[0]) | (u64::from(c[n / 2]) << (8 * (n / 2))) | (u64::from(c[n - 1]) << (8 * (n - 1)))
}

/// Byte equality, inline for strings of up to sixteen bytes.
#[inline]
pub(crate) fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        0..=8 => word(a) == word(b),
        9..=16 => word(a) == word(b) && word(&a[a.len() - 8..]) == word(&b[b.len() - 8..]),
        _ => a == b,
    }
}

/// The index of the first '/' in `bytes`, eight bytes at a time. Forced inline: the resolver calls it
/// for every segment of every trie it walks.
#[inline(always)]
pub(crate) fn find_slash(bytes: &[u8]) -> Option<usize> {
    let mut base = 0;
    for chunk in bytes.chunks(8) {
        let m = zero_byte_mask(word(chunk) ^ (LO * u64::from(b'/')));
        if m != 0 {
            return Some(base + (m.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(raw: &str, expect: Result<&str, PathRejection>) {
        assert_eq!(check_path(raw), expect, "check_path({raw:?})");
    }

    #[test]
    fn policy_table() {
        use PathRejection::*;
        let table: &[(&str, Result<&str, PathRejection>)] = &[
            ("/", Ok("/")),
            ("/courses", Ok("/courses")),
            ("/courses/7", Ok("/courses/7")),
            ("/a:b/c~d/e-f_g.h/!$&'()*+,=@", Ok("/a:b/c~d/e-f_g.h/!$&'()*+,=@")),
            // Query string and fragment are not part of the path.
            ("/courses?id=1/../../x", Ok("/courses")),
            ("/courses#x", Err(Fragment)),
            ("/courses/7#/../../admin", Err(Fragment)),
            ("/#", Err(Fragment)),
            ("/courses?x#y", Ok("/courses")),
            ("/?x", Ok("/")),
            ("/courses/?x", Err(EmptySegment)),
            // Trailing slashes and empty segments.
            ("/courses/", Err(EmptySegment)),
            ("/courses/7//", Err(EmptySegment)),
            ("/courses//7", Err(EmptySegment)),
            ("//courses", Err(EmptySegment)),
            ("//", Err(EmptySegment)),
            // Dot segments, raw and encoded, in any case.
            ("/courses/./7", Err(DotSegment)),
            ("/courses/7/..", Err(DotSegment)),
            ("/courses/%2e%2e/admin", Err(DotSegment)),
            ("/courses/%2E%2E/admin", Err(DotSegment)),
            ("/courses/.%2e/admin", Err(DotSegment)),
            ("/courses/%2e/7", Err(DotSegment)),
            ("/courses/7/..?x", Err(DotSegment)),
            ("/.", Err(DotSegment)),
            ("/..", Err(DotSegment)),
            ("/courses/...", Ok("/courses/...")),
            ("/courses/..a", Ok("/courses/..a")),
            ("/courses/.a", Ok("/courses/.a")),
            ("/courses/%2E%2E%2E", Err(NeedlessEscape)),
            ("/courses/%2Ea", Err(NeedlessEscape)),
            // Percent-escapes: upper case, not of unreserved characters, UTF-8.
            ("/c%6Furses", Err(NeedlessEscape)),
            ("/%41", Err(NeedlessEscape)),
            ("/%7E", Err(NeedlessEscape)),
            ("/%2D%5F", Err(NeedlessEscape)),
            ("/files/a%20b", Ok("/files/a%20b")),
            ("/files/caf%C3%A9", Ok("/files/caf%C3%A9")),
            ("/files/caf%c3%a9", Err(LowercaseEscape)),
            ("/files/caf%C3%a9", Err(LowercaseEscape)),
            ("/files/%F0%9F%98%80", Ok("/files/%F0%9F%98%80")),
            // Sub-delimiters, ':' and '@' stand raw: their escapes are needless too.
            ("/files/%3Aid", Err(NeedlessEscape)),
            ("/v1/jobs%3Apurge", Err(NeedlessEscape)),
            ("/users/%40me", Err(NeedlessEscape)),
            ("/files/%21%2A%40", Err(NeedlessEscape)),
            ("/files/a%2Bb", Err(NeedlessEscape)),
            ("/files/a%3Db", Err(NeedlessEscape)),
            ("/files/%24%26%27%28%29%2C", Err(NeedlessEscape)),
            ("/files/%3a", Err(LowercaseEscape)),
            // Characters that can't stand raw may (must) be escaped.
            (
                "/files/%22%3C%3E%5B%5D%5E%60%7B%7C%7D",
                Ok("/files/%22%3C%3E%5B%5D%5E%60%7B%7C%7D"),
            ),
            ("/v1/jobs:purge", Ok("/v1/jobs:purge")),
            ("/users/@me", Ok("/users/@me")),
            ("/a+b", Ok("/a+b")),
            ("/files/%C3", Err(InvalidUtf8)),
            ("/files/%C3x", Err(InvalidUtf8)),
            ("/files/%A9", Err(InvalidUtf8)),
            ("/files/%C0%AF", Err(InvalidUtf8)),
            ("/files/%E0%80%AF", Err(InvalidUtf8)),
            ("/files/%ED%A0%80", Err(InvalidUtf8)),
            ("/files/%F4%90%80%80", Err(InvalidUtf8)),
            ("/files/%FF", Err(InvalidUtf8)),
            ("/files/%2", Err(BadEscape)),
            ("/files/%zz", Err(BadEscape)),
            ("/files/%", Err(BadEscape)),
            ("/files/%C3%2", Err(BadEscape)),
            // Escapes that hide separators or delimiters, double encoding, control characters.
            ("/courses%2F7", Err(EncodedSlash)),
            ("/courses%2f..%2fadmin", Err(EncodedSlash)),
            ("/files/%3F", Err(EncodedQuery)),
            ("/files/%23x", Err(EncodedQuery)),
            ("/courses/%252e%252e/admin", Err(EncodedPercent)),
            ("/courses/%00", Err(ControlCharacter)),
            ("/courses/\0", Err(ControlCharacter)),
            ("/courses/a\nb", Err(ControlCharacter)),
            ("/courses/%7F", Err(ControlCharacter)),
            ("/courses\\..\\admin", Err(Backslash)),
            ("/courses/%5C", Err(Backslash)),
            ("/admin;jsessionid=1", Err(Semicolon)),
            ("/admin%3B/x", Err(Semicolon)),
            // Raw characters a URI may not hold.
            ("/caf\u{e9}", Err(InvalidCharacter)),
            ("/a b", Err(InvalidCharacter)),
            ("/a{b}", Err(InvalidCharacter)),
            ("/a|b", Err(InvalidCharacter)),
            ("/a\"b", Err(InvalidCharacter)),
            // Not a path.
            ("", Err(NotAbsolute)),
            ("?x=1", Err(NotAbsolute)),
            ("courses/7", Err(NotAbsolute)),
            ("http://h/courses", Err(NotAbsolute)),
            ("*", Err(NotAbsolute)),
            // Case is kept: paths are case-sensitive.
            ("/Courses/7", Ok("/Courses/7")),
        ];
        for (raw, expect) in table {
            check(raw, *expect);
        }
    }

    #[test]
    fn rejections_have_distinct_names() {
        use PathRejection::*;
        let all = [
            NotAbsolute,
            TooLong,
            ControlCharacter,
            Backslash,
            Semicolon,
            EncodedSlash,
            EncodedPercent,
            EncodedQuery,
            BadEscape,
            LowercaseEscape,
            NeedlessEscape,
            InvalidUtf8,
            InvalidCharacter,
            DotSegment,
            EmptySegment,
            InvalidMethod,
            Fragment,
        ];
        let names: std::collections::HashSet<&str> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(DotSegment.to_string(), "dot_segment");
    }

    #[test]
    fn every_escape_is_classified() {
        for v in 0u8..0x80 {
            let raw = format!("/a%{v:02X}b");
            let got = check_path(&raw);
            let expect = if let Some(why) = refused_escape(v) {
                Err(why)
            } else if is_plain(v) {
                Err(PathRejection::NeedlessEscape)
            } else {
                Ok(raw.as_str())
            };
            assert_eq!(got, expect, "{raw}");
            // Exactly the characters that can't stand raw may be escaped.
            let may_escape = matches!(
                v,
                b' ' | b'"' | b'<' | b'>' | b'[' | b']' | b'^' | b'`' | b'{' | b'|' | b'}'
            );
            assert_eq!(got.is_ok(), may_escape, "{raw}");
            // Lower-case hex never passes.
            let lower = format!("/a%{v:02x}b");
            if lower != raw {
                assert!(check_path(&lower).is_err(), "{lower}");
            }
        }
    }

    #[test]
    fn calm_bytes_are_the_plain_ones_and_slash() {
        for b in 0..=255u8 {
            assert_eq!(is_calm(b), CLASS[usize::from(b)] == PLAIN || b == b'/', "{b:#04x}");
        }
    }

    #[test]
    fn word_scans_agree_with_byte_scans() {
        let mut bytes: Vec<u8> = (0u8..=0x7f).collect();
        bytes.extend(b"/a%b;c\\d/".iter());
        for start in 0..bytes.len() {
            for end in start..bytes.len().min(start + 20) {
                let s = &bytes[start..end];
                assert_eq!(find_slash(s), s.iter().position(|&b| b == b'/'), "{s:?}");
                let mut expect = [0u8; 8];
                let k = s.len().min(8);
                expect[..k].copy_from_slice(&s[..k]);
                assert_eq!(word(s), u64::from_le_bytes(expect), "{s:?}");
                for other_end in start..bytes.len().min(start + 20) {
                    let o = &bytes[start..other_end];
                    assert_eq!(eq_bytes(s, o), s == o, "{s:?} {o:?}");
                }
            }
        }
    }

    #[test]
    fn fast_path_agrees_with_careful_scan() {
        // Random targets over an alphabet of the bytes the fast path treats specially, plus long calm
        // runs; the fast path must answer as the careful scan from the start does.
        const ALPHABET: &[&str] = &[
            "a",
            "bc",
            "/",
            ".",
            "..",
            "%2E",
            "%C3%A9",
            "%",
            "?",
            "#",
            ";",
            "\u{e9}",
            "~",
            "defghijk",
            "@:=_&!$'()*+,-Z09",
            "<",
            "`",
            "{",
            "^",
            "\\",
            " ",
            "\u{7f}",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let mut raw = String::from("/");
            let parts = next() % 16;
            for _ in 0..parts {
                raw.push_str(ALPHABET[(next() % ALPHABET.len() as u64) as usize]);
            }
            assert_eq!(check_path(&raw), check_path_from(&raw, 1), "{raw:?}");
        }
        let long = format!("/{}", "ab/".repeat(MAX_PATH_LEN / 3 + 1));
        assert_eq!(check_path(&long), Err(PathRejection::TooLong));
        let long = format!("/{}", "ab/c".repeat(MAX_PATH_LEN / 4 + 1));
        assert_eq!(check_path(&long), Err(PathRejection::TooLong));
    }

    #[test]
    fn methods_are_upper_case_tokens() {
        for ok in [
            "GET",
            "HEAD",
            "POST",
            "PUT",
            "PATCH",
            "DELETE",
            "OPTIONS",
            "CONNECT",
            "TRACE",
            "PROPFIND",
            "M-SEARCH",
            "X_1!#$%&'*+.^`|~",
        ] {
            assert_eq!(check_method(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "", "get", "Get", "gET", "GE T", " GET", "GET\r", "GET\0", "G(ET)", "GET/1", "GÉT", "GET:", "\"GET\"",
        ] {
            assert_eq!(check_method(bad), Err(PathRejection::InvalidMethod), "{bad:?}");
        }
    }

    #[test]
    fn length_limit() {
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        check(&long, Err(PathRejection::TooLong));
        let ok = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert_eq!(check_path(&ok), Ok(ok.as_str()));
        // The query string does not count.
        assert!(check_path(&format!("/a?{}", "q".repeat(MAX_PATH_LEN))).is_ok());
    }
}
