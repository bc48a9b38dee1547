//! The JSON log line, written straight into the line's buffer.
//!
//! It has the shape of tracing-subscriber's own JSON format with `flatten_event(true)`,
//! `with_current_span(true)`, `with_span_list(false)` and no target — `timestamp`, `level`, the event's
//! fields, and `span` (the current span's fields and `name`) — which a test checks line for line against that
//! format. That format builds each line through serde (every field a `serde_json::Value`, every write through
//! an `io::Write` adaptor): about a fifth of what the server spent on a whole lookup request, and a tenth more
//! to format a request span's fields. Here a span's fields are one JSON object, formatted once when the span
//! is made (and extended when a field is recorded later), which each event inside it splices in.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// One JSON object per event, and a span's fields as one JSON object (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonLines;

impl<'writer> FormatFields<'writer> for JsonLines {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        writer.write_char('{')?;
        members(&mut writer, fields, true)?;
        writer.write_char('}')
    }

    fn add_fields(&self, current: &'writer mut FormattedFields<Self>, fields: &Record<'_>) -> fmt::Result {
        if !current.fields.ends_with('}') {
            current.fields.clear();
            return self.format_fields(current.as_writer(), fields);
        }
        // The object so far, reopened: a field recorded again appears twice, and JSON readers take the last.
        current.fields.pop();
        let first = current.fields.len() <= 1;
        let mut writer = current.as_writer();
        members(&mut writer, fields, first)?;
        writer.write_char('}')
    }
}

impl<S> FormatEvent<S, JsonLines> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonLines>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", event.metadata().level().as_str())?;
        members(&mut writer, event, false)?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            writer.write_str(",\"span\":{")?;
            let extensions = span.extensions();
            if let Some(recorded) = extensions.get::<FormattedFields<JsonLines>>() {
                // One JSON object: its members go in as they are.
                let inner = recorded
                    .fields
                    .trim()
                    .strip_prefix('{')
                    .and_then(|f| f.strip_suffix('}'))
                    .unwrap_or("");
                if !inner.trim().is_empty() {
                    writer.write_str(inner)?;
                    writer.write_char(',')?;
                }
            }
            writer.write_str("\"name\":")?;
            string(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes `fields` as JSON members, separated by commas (and after one, unless `first`).
fn members<R: RecordFields>(out: &mut Writer<'_>, fields: R, first: bool) -> fmt::Result {
    let mut members = Fields {
        out,
        first,
        result: Ok(()),
    };
    fields.record(&mut members);
    members.result
}

/// The visitor of [`members`].
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            let first = std::mem::replace(&mut self.first, false);
            self.result = (|| {
                self.out.write_str(if first { "\"" } else { ",\"" })?;
                Escaped(self.out).write_str(field.name())?;
                self.out.write_str("\":")?;
                value(self.out)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: serde_json writes null for them too; and a whole number as `3.0`.
        self.member(field, |out| {
            if !value.is_finite() {
                out.write_str("null")
            } else if value.fract() == 0.0 && value.abs() < 1e16 {
                write!(out, "{value:.1}")
            } else {
                write!(out, "{value}")
            }
        });
    }
}

/// `s` as a JSON string.
fn string(out: &mut Writer<'_>, s: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(s)?;
    out.write_char('"')
}

/// Escapes what it is given as the inside of a JSON string: `"`, `\` and the control characters.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Most strings need no escape: one write, after a scan the compiler keeps tight.
        if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            return self.0.write_str(s);
        }
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::JsonLines;

    /// Collects what is written, line by line.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        fn parsed(&self) -> Vec<Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect()
        }
    }

    /// Events of every kind of field, with awkward strings, outside and inside spans.
    fn log_some() {
        let awkward = "quote \" backslash \\ newline \n tab \t nul \0 bell \x07 é ✓";
        tracing::info!(
            method = "GET",
            status = 200u64,
            latency_ms = 1.25,
            whole = 3.0,
            "request"
        );
        tracing::warn!(
            negative = -3i64,
            yes = true,
            nan = f64::NAN,
            debug = ?vec!["a", "b\"c"],
            display = %awkward,
            text = awkward,
            "a {} message",
            "formatted"
        );
        let span = tracing::info_span!(
            "request",
            request_id = "r-1",
            route = "/api/v1/x",
            weird = awkward,
            late = tracing::field::Empty
        );
        span.in_scope(|| tracing::info!("before a field is recorded"));
        span.record("late", 7u64);
        span.in_scope(|| {
            tracing::error!(error = %"boom", "inside");
            let empty = tracing::info_span!("empty");
            empty.in_scope(|| tracing::info!("in an empty span"));
        });
    }

    #[test]
    fn lines_equal_tracing_subscribers_json_format() {
        let ours = Lines::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonLines)
                .event_format(JsonLines)
                .with_writer(ours.clone()),
        );
        tracing::subscriber::with_default(subscriber, log_some);

        let theirs = Lines::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(theirs.clone()),
        );
        tracing::subscriber::with_default(subscriber, log_some);

        let (ours, theirs) = (ours.parsed(), theirs.parsed());
        assert_eq!(ours.len(), 5);
        assert_eq!(ours.len(), theirs.len());
        for (mut a, mut b) in ours.into_iter().zip(theirs) {
            let (ta, tb) = (a["timestamp"].take(), b["timestamp"].take());
            assert_eq!(a, b, "our line differs from tracing-subscriber's");
            // Both RFC 3339 timestamps of the same moment, give or take the test's run.
            let (ta, tb) = (ta.as_str().unwrap().to_owned(), tb.as_str().unwrap().to_owned());
            let ta = chrono::DateTime::parse_from_rfc3339(&ta).unwrap();
            let tb = chrono::DateTime::parse_from_rfc3339(&tb).unwrap();
            assert!((ta - tb).num_seconds().abs() < 60, "{ta} vs {tb}");
        }
    }
}
