//! Request-path normalisation (see the policy in the [module docs](super)).

use std::borrow::Cow;
use std::fmt;

/// Longest request path (before the query string) the resolver accepts, in bytes.
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// Why the normaliser refused a request path. The caller treats a refused path as a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathRejection {
    /// The path is empty or does not start with `/` (an absolute-form URI, `*`, or garbage).
    NotAbsolute,
    /// The path is longer than [`MAX_PATH_LEN`].
    TooLong,
    /// A control character or NUL, raw or percent-encoded (`%00`, `%0A`, ...).
    ControlCharacter,
    /// A backslash, raw or encoded (`%5C`): some servers treat it as a separator.
    Backslash,
    /// A semicolon, raw or encoded (`%3B`): servlet containers strip `;params` from segments.
    Semicolon,
    /// An encoded slash (`%2F`): it hides a segment boundary from one router and not from another.
    EncodedSlash,
    /// An encoded percent sign (`%25`): double encoding means different things to different routers.
    EncodedPercent,
    /// A `%` not followed by two hexadecimal digits.
    BadEscape,
    /// Percent-escapes that decode to bytes which are not UTF-8.
    InvalidUtf8,
    /// A `..` segment that would climb above the root.
    AboveRoot,
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
            PathRejection::BadEscape => "bad_percent_escape",
            PathRejection::InvalidUtf8 => "invalid_utf8",
            PathRejection::AboveRoot => "above_root",
        }
    }
}

impl fmt::Display for PathRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Byte classes of the fast scan.
const PLAIN: u8 = 0;
const SLASH: u8 = 1;
const PERCENT: u8 = 2;
const CONTROL: u8 = 3;
const BACKSLASH: u8 = 4;
const SEMICOLON: u8 = 5;
/// `?` or `#`: the end of the path.
const QUERY: u8 = 6;

static CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = CONTROL;
        i += 1;
    }
    t[0x7f] = CONTROL;
    t[b'/' as usize] = SLASH;
    t[b'%' as usize] = PERCENT;
    t[b'\\' as usize] = BACKSLASH;
    t[b';' as usize] = SEMICOLON;
    t[b'?' as usize] = QUERY;
    t[b'#' as usize] = QUERY;
    t
};

fn reject_class(class: u8) -> Option<PathRejection> {
    match class {
        CONTROL => Some(PathRejection::ControlCharacter),
        BACKSLASH => Some(PathRejection::Backslash),
        SEMICOLON => Some(PathRejection::Semicolon),
        _ => None,
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one segment into `out`, applying the rejections of the policy.
pub(crate) fn decode_segment_into(raw: &[u8], out: &mut Vec<u8>) -> Result<(), PathRejection> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let v = match (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => h * 16 + l,
                _ => return Err(PathRejection::BadEscape),
            };
            match v {
                b'/' => return Err(PathRejection::EncodedSlash),
                b'%' => return Err(PathRejection::EncodedPercent),
                _ => {}
            }
            if let Some(r) = reject_class(CLASS[usize::from(v)]) {
                return Err(r);
            }
            out.push(v);
            i += 3;
        } else {
            if let Some(r) = reject_class(CLASS[usize::from(b)]) {
                return Err(r);
            }
            out.push(b);
            i += 1;
        }
    }
    Ok(())
}

/// Normalises a raw request target (path plus optional query) into the form mappings are matched
/// against, or says why it is refused.
///
/// The result borrows from `raw` unless the path had to be rewritten (percent-escapes, `//`, `.` or
/// `..` segments); cutting the query string and a trailing slash never allocates.
///
/// ```
/// use heimdall_core::mapping::{normalize, PathRejection};
/// assert_eq!(normalize("/courses/7/?tab=1").unwrap(), "/courses/7");
/// assert_eq!(normalize("/courses//7/./x/..").unwrap(), "/courses/7");
/// assert_eq!(normalize("/courses/%2e%2e/admin").unwrap(), "/admin");
/// assert_eq!(normalize("/courses/1%2F2"), Err(PathRejection::EncodedSlash));
/// assert_eq!(normalize("/courses/../../admin"), Err(PathRejection::AboveRoot));
/// ```
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathRejection> {
    if raw.as_bytes().first() != Some(&b'/') {
        return Err(PathRejection::NotAbsolute);
    }
    // `str::find(char)` uses the standard library's word-at-a-time memchr.
    let mut end = raw.find('?').unwrap_or(raw.len());
    if let Some(hash) = raw[..end].find('#') {
        end = hash;
    }
    if end > MAX_PATH_LEN {
        return Err(PathRejection::TooLong);
    }
    let path = &raw[..end];
    let bytes = path.as_bytes();
    // A word-at-a-time pass finds out whether the path may need anything at all; only then the precise
    // byte-by-byte scan runs (a '%', a forbidden byte, or a '/' followed by '/' or '.').
    let rewrite = if needs_precise_scan(bytes) {
        scan_bytes(bytes)?
    } else {
        false
    };
    if rewrite {
        return rewrite_path(path).map(Cow::Owned);
    }
    if end > 1 && bytes[end - 1] == b'/' {
        Ok(Cow::Borrowed(&path[..end - 1]))
    } else {
        Ok(Cow::Borrowed(path))
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

/// High bit set in exactly the bytes of `v` equal to `b`.
#[inline]
fn eq_mask(v: u64, b: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = v ^ (LO * u64::from(b));
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Whether `bytes` holds a '%', ';', a backslash, DEL or a control character, or a '/' followed by a
/// '/' or a '.', eight bytes at a time.
#[inline]
fn needs_precise_scan(bytes: &[u8]) -> bool {
    let mut slash_carry = 0u64;
    for chunk in bytes.chunks(8) {
        // Pad a short tail with spaces, which are not special.
        let pad = if chunk.len() == 8 {
            0
        } else {
            (LO * u64::from(b' ')) << (8 * chunk.len())
        };
        let v = word(chunk) | pad;
        let special = (v.wrapping_sub(LO * 0x20) & !v & HI)
            | zero_byte_mask(v ^ (LO * 0x7f))
            | zero_byte_mask(v ^ (LO * u64::from(b'%')))
            | zero_byte_mask(v ^ (LO * u64::from(b';')))
            | zero_byte_mask(v ^ (LO * u64::from(b'\\')));
        let slash = eq_mask(v, b'/');
        let follows = slash | eq_mask(v, b'.');
        if special != 0 || ((slash << 8) | slash_carry) & follows != 0 {
            return true;
        }
        slash_carry = slash >> 56;
    }
    false
}

/// The precise scan: rejects forbidden raw bytes and says whether the path needs rewriting.
fn scan_bytes(bytes: &[u8]) -> Result<bool, PathRejection> {
    let mut rewrite = false;
    for (i, &b) in bytes.iter().enumerate() {
        match CLASS[usize::from(b)] {
            PLAIN | QUERY => {}
            SLASH => rewrite |= needs_segment_rewrite(&bytes[i + 1..]),
            PERCENT => rewrite = true,
            other => return Err(reject_class(other).unwrap_or(PathRejection::ControlCharacter)),
        }
    }
    Ok(rewrite)
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

/// Whether the segment starting at `s` (just after a '/') is empty but not the last, `.` or `..`.
#[inline]
fn needs_segment_rewrite(s: &[u8]) -> bool {
    let ends = |b: Option<&u8>| matches!(b, None | Some(b'/' | b'?' | b'#'));
    match s.first() {
        Some(b'/') => true,
        Some(b'.') => ends(s.get(1)) || (s.get(1) == Some(&b'.') && ends(s.get(2))),
        _ => false,
    }
}

/// The slow path: decode every segment, drop empty and `.` segments, apply `..`.
fn rewrite_path(path: &str) -> Result<String, PathRejection> {
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    for raw_seg in path[1..].split('/') {
        let mark = out.len();
        out.push(b'/');
        decode_segment_into(raw_seg.as_bytes(), &mut out)?;
        let seg = &out[mark + 1..];
        if seg.is_empty() || seg == b"." {
            out.truncate(mark);
        } else if seg == b".." {
            out.truncate(mark);
            // Decoded segments never contain '/', so the last '/' starts the previous segment.
            match out.iter().rposition(|&b| b == b'/') {
                Some(p) => out.truncate(p),
                None => return Err(PathRejection::AboveRoot),
            }
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    String::from_utf8(out).map_err(|_| PathRejection::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(raw: &str, expect: Result<&str, PathRejection>) {
        let got = normalize(raw);
        assert_eq!(got.as_deref().map_err(|e| *e), expect, "normalize({raw:?})");
        if let Ok(p) = &got
            && !p.contains(['?', '#'])
        {
            // Normalising is idempotent (unless it decoded a '?' or '#').
            assert_eq!(normalize(p).as_deref(), Ok(p.as_ref()), "normalize(normalize({raw:?}))");
        }
    }

    #[track_caller]
    fn borrowed(raw: &str) {
        assert!(
            matches!(normalize(raw), Ok(Cow::Borrowed(_))),
            "{raw:?} should not allocate"
        );
    }

    #[test]
    fn already_normal_paths_are_borrowed() {
        for raw in [
            "/",
            "/courses",
            "/courses/7",
            "/courses/7/",
            "/courses?x=/../a",
            "/a#frag",
            "/a:b/c~d",
        ] {
            borrowed(raw);
        }
    }

    #[test]
    fn policy_table() {
        use PathRejection::*;
        let table: &[(&str, Result<&str, PathRejection>)] = &[
            ("/", Ok("/")),
            ("/courses", Ok("/courses")),
            // Query string and fragment are dropped.
            ("/courses?id=1/../../x", Ok("/courses")),
            ("/courses#x", Ok("/courses")),
            ("/?x", Ok("/")),
            // Trailing slash is dropped.
            ("/courses/", Ok("/courses")),
            ("/courses/7//", Ok("/courses/7")),
            // Duplicate slashes collapse.
            ("/courses//7", Ok("/courses/7")),
            ("//courses///7", Ok("/courses/7")),
            // Dot segments, raw and encoded, in any case.
            ("/courses/./7", Ok("/courses/7")),
            ("/courses/7/..", Ok("/courses")),
            ("/courses/7/../../admin", Ok("/admin")),
            ("/courses/%2e%2e/admin", Ok("/admin")),
            ("/courses/%2E%2E/admin", Ok("/admin")),
            ("/courses/.%2e/admin", Ok("/admin")),
            ("/courses/%2e/7", Ok("/courses/7")),
            ("/courses/...", Ok("/courses/...")),
            ("/courses/..a", Ok("/courses/..a")),
            ("/courses/.a/", Ok("/courses/.a")),
            ("/courses/7/..?x", Ok("/courses")),
            ("/courses/7/.#x", Ok("/courses/7")),
            ("/courses/7//?x", Ok("/courses/7")),
            ("//", Ok("/")),
            ("/.", Ok("/")),
            ("/..", Err(AboveRoot)),
            ("/courses/../../admin", Err(AboveRoot)),
            ("/%2e%2e/etc", Err(AboveRoot)),
            // Percent-escapes are decoded once.
            ("/c%6Furses/%37", Ok("/courses/7")),
            ("/files/a%20b", Ok("/files/a b")),
            ("/files/caf%C3%A9", Ok("/files/café")),
            ("/files/%3Aid", Ok("/files/:id")),
            ("/files/%3F", Ok("/files/?")),
            ("/files/%C3", Err(InvalidUtf8)),
            ("/files/%2", Err(BadEscape)),
            ("/files/%zz", Err(BadEscape)),
            ("/files/%", Err(BadEscape)),
            // Escapes that hide separators, double encoding, control characters.
            ("/courses%2F7", Err(EncodedSlash)),
            ("/courses%2f..%2fadmin", Err(EncodedSlash)),
            ("/courses/%252e%252e/admin", Err(EncodedPercent)),
            ("/courses/%00", Err(ControlCharacter)),
            ("/courses/\0", Err(ControlCharacter)),
            ("/courses/a\nb", Err(ControlCharacter)),
            ("/courses/%7F", Err(ControlCharacter)),
            ("/courses\\..\\admin", Err(Backslash)),
            ("/courses/%5C", Err(Backslash)),
            ("/admin;jsessionid=1", Err(Semicolon)),
            ("/admin%3B/x", Err(Semicolon)),
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
    fn word_scans_agree_with_byte_scans() {
        let mut bytes: Vec<u8> = (0u8..=0x7f).collect();
        bytes.extend(b"/a%b;c\\d/".iter());
        for start in 0..bytes.len() {
            for end in start..bytes.len().min(start + 20) {
                let s = &bytes[start..end];
                let special = s.iter().any(|&b| b < 0x20 || matches!(b, 0x7f | b'%' | b';' | b'\\'));
                let pair = s.windows(2).any(|w| w[0] == b'/' && matches!(w[1], b'/' | b'.'));
                assert_eq!(needs_precise_scan(s), special || pair, "{s:?}");
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
        assert!(!needs_precise_scan("/caf\u{e9}/\u{1F600}/a.b/c./".as_bytes()));
        for pair in [
            "/a/b/c/d/e/f/g//",
            "/a/b/c/d/e/f/g/.",
            "/abcdefg/.x",
            "/abcdefg//",
            "/abcdef/./",
        ] {
            assert!(needs_precise_scan(pair.as_bytes()), "{pair}");
        }
    }

    #[test]
    fn length_limit() {
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        check(&long, Err(PathRejection::TooLong));
        let ok = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert!(normalize(&ok).is_ok());
        // The query string does not count.
        assert!(normalize(&format!("/a?{}", "q".repeat(MAX_PATH_LEN))).is_ok());
    }
}
