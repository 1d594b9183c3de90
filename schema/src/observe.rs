//! Every GraphQL operation as a span and as metrics: operation name and type,
//! outcome (`ok` or the first error's contract code) and duration. Never the
//! query text or variables: literals and variables carry patient data.

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest, NextSubscribe,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Request, Response, ServerResult, Variables};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::Instrument as _;

/// Metric: operations by `operation`, `type` and `outcome`.
pub const OPERATIONS: &str = "careslot_graphql_operations_total";
/// Metric: operation latency (seconds) by `operation`, `type` and `outcome`.
pub const OPERATION_DURATION: &str = "careslot_graphql_operation_duration_seconds";

/// Longest operation name kept as a label; longer ones count as `invalid`.
const MAX_NAME_LEN: usize = 64;

/// The extension factory.
pub struct Observe;

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ObserveExtension::default())
    }
}

/// One request's operation, learnt while it is prepared and parsed.
#[derive(Default)]
struct ObserveExtension {
    operation: Arc<Mutex<Operation>>,
}

#[derive(Clone, Default)]
struct Operation {
    /// The name the client asked for, if any.
    requested: Option<String>,
    /// The label: the operation name, `anonymous` or `invalid`.
    name: Option<String>,
    /// query, mutation or subscription; None until parsed.
    kind: Option<&'static str>,
}

impl ObserveExtension {
    fn operation(&self) -> Operation {
        self.operation.lock().map(|o| o.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Operation)) {
        if let Ok(mut operation) = self.operation.lock() {
            f(&mut operation);
        }
    }
}

#[async_trait::async_trait]
impl Extension for ObserveExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let span = tracing::info_span!(
            "graphql",
            graphql.operation.name = tracing::field::Empty,
            graphql.operation.type = tracing::field::Empty,
            graphql.outcome = tracing::field::Empty,
        );
        let started = Instant::now();
        let response = next.run(ctx).instrument(span.clone()).await;
        let operation = self.operation();
        let name = operation.name.unwrap_or_else(|| "anonymous".into());
        // A request that failed to parse has no type; it was meant as a query
        // or mutation (subscriptions do not come through here).
        let kind = operation.kind.unwrap_or("query");
        let outcome = outcome(&response);
        span.record("graphql.operation.name", name.as_str());
        span.record("graphql.operation.type", kind);
        span.record("graphql.outcome", outcome);
        record(&name, kind, outcome, started);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        // Counted once, when the subscription answers first (its first event,
        // or its error). Its name and type are known by then: the request is
        // prepared and parsed inside the stream.
        let started = Instant::now();
        let mut counted = false;
        let state = self.operation.clone();
        next.run(ctx, stream)
            .map(move |response| {
                if !counted {
                    counted = true;
                    let operation = state.lock().map(|o| o.clone()).unwrap_or_default();
                    let name = operation.name.unwrap_or_else(|| "anonymous".into());
                    record(
                        &name,
                        operation.kind.unwrap_or("subscription"),
                        outcome(&response),
                        started,
                    );
                }
                response
            })
            .boxed()
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let requested = request.operation_name.clone();
        self.update(|o| o.requested = requested);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        self.update(|o| {
            let (name, kind) = describe(&document, o.requested.as_deref());
            o.name = Some(name);
            o.kind = kind;
        });
        Ok(document)
    }
}

fn record(name: &str, kind: &'static str, outcome: &'static str, started: Instant) {
    let labels = [
        ("operation", name.to_owned()),
        ("type", kind.to_owned()),
        ("outcome", outcome.to_owned()),
    ];
    metrics::counter!(OPERATIONS, &labels).increment(1);
    metrics::histogram!(OPERATION_DURATION, &labels).record(started.elapsed().as_secs_f64());
}

/// The operation's label and type: the requested name, or the only operation's.
fn describe(document: &ExecutableDocument, requested: Option<&str>) -> (String, Option<&'static str>) {
    let (name, definition) = match (&document.operations, requested) {
        (DocumentOperations::Single(op), _) => (requested.map(str::to_owned), Some(op)),
        (DocumentOperations::Multiple(ops), Some(wanted)) => (
            Some(wanted.to_owned()),
            ops.iter().find(|(n, _)| n.as_str() == wanted).map(|(_, op)| op),
        ),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            let (n, op) = ops.iter().next().map(|(n, op)| (n.to_string(), op)).unzip();
            (n, op)
        }
        (DocumentOperations::Multiple(_), None) => (None, None),
    };
    let kind = definition.map(|op| match op.node.ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    });
    (label(name.as_deref()), kind)
}

/// A bounded label for a client-chosen name.
fn label(name: Option<&str>) -> String {
    match name {
        None => "anonymous".into(),
        Some(name)
            if !name.is_empty()
                && name.len() <= MAX_NAME_LEN
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            name.to_owned()
        }
        Some(_) => "invalid".into(),
    }
}

/// `ok`, or the first error's contract code (only codes of the contract; any
/// other value counts as INTERNAL so the label stays bounded).
fn outcome(response: &Response) -> &'static str {
    let Some(error) = response.errors.first() else {
        return "ok";
    };
    let code = error
        .extensions
        .as_ref()
        .and_then(|ext| ext.get("code"))
        .and_then(|v| match v {
            async_graphql::Value::String(s) => Some(s.as_str()),
            _ => None,
        });
    [
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "BAD_USER_INPUT",
        "SLOT_UNAVAILABLE",
        "INVALID_TRANSITION",
        "RATE_LIMITED",
        "INTERNAL",
    ]
    .into_iter()
    .find(|known| Some(*known) == code)
    .unwrap_or("INTERNAL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(label(None), "anonymous");
        assert_eq!(label(Some("BookAppointment")), "BookAppointment");
        assert_eq!(label(Some("with space")), "invalid");
        assert_eq!(label(Some(&"a".repeat(65))), "invalid");
        assert_eq!(label(Some("ünïcode")), "invalid");
    }

    #[test]
    fn describes_the_operation_asked_for() {
        let doc = async_graphql::parser::parse_query("query A { x } mutation B { y }").expect("parses");
        assert_eq!(describe(&doc, Some("B")), ("B".into(), Some("mutation")));
        assert_eq!(describe(&doc, None), ("anonymous".into(), None));
        let doc = async_graphql::parser::parse_query("{ x }").expect("parses");
        assert_eq!(describe(&doc, None), ("anonymous".into(), Some("query")));
        let doc = async_graphql::parser::parse_query("subscription Live { x }").expect("parses");
        assert_eq!(describe(&doc, None), ("Live".into(), Some("subscription")));
    }
}
