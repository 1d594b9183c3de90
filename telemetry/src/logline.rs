//! Log lines that carry the trace id of the span they were written in, so a
//! line in ELK/Loki leads to its trace and back.

use std::sync::OnceLock;
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The process's dispatcher. Inside a subscriber callback the current dispatcher
/// is not reachable (tracing guards against re-entry), so the formatter keeps a
/// weak handle to look span contexts up with.
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

pub(crate) fn remember(dispatch: &Dispatch) {
    let _ = DISPATCH.set(dispatch.downgrade());
}

/// Wraps an event formatter: JSON lines get a `trace_id` member first, text
/// lines end with `trace_id=…`. Lines outside any span are left as they are.
pub(crate) struct WithTraceId<F> {
    inner: F,
    json: bool,
}

impl<F> WithTraceId<F> {
    pub(crate) fn json(inner: F) -> Self {
        Self { inner, json: true }
    }

    pub(crate) fn text(inner: F) -> Self {
        Self { inner, json: false }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let trace_id = ctx
            .event_scope()
            .and_then(|scope| scope.into_iter().find_map(|span| trace_id_of(&span.id())));
        let Some(trace_id) = trace_id else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        if self.json {
            match line.strip_prefix('{') {
                Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}"),
                None => writer.write_str(&line),
            }
        } else {
            let body = line.trim_end_matches('\n');
            writeln!(writer, "{body} trace_id={trace_id}")
        }
    }
}

/// The trace id of a span, when the OpenTelemetry layer knows it.
fn trace_id_of(id: &tracing::span::Id) -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    let dispatch = DISPATCH.get()?.upgrade()?;
    let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
    let span = cx.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}
