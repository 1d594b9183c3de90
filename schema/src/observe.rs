//! Every GraphQL operation as a span and as metrics: operation name and type,
//! outcome (`ok` or the first error's contract code) and duration. Never the
//! query text or variables: literals and variables carry patient data.

use async_graphql::Response;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use std::time::Instant;

/// Metric: operations by `operation`, `type` and `outcome`.
pub const OPERATIONS: &str = "careslot_graphql_operations_total";
/// Metric: operation latency (seconds) by `operation`, `type` and `outcome`.
pub const OPERATION_DURATION: &str = "careslot_graphql_operation_duration_seconds";

/// Longest operation name kept as a label; longer ones count as `invalid`.
const MAX_NAME_LEN: usize = 64;

/// What is known of a request's operation for its span and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The label: the operation name, `anonymous` or `invalid`.
    pub name: String,
    /// query, mutation or subscription; `None` when the document did not say
    /// (it failed to parse, or named no operation the request asked for).
    pub kind: Option<&'static str>,
}

impl Operation {
    /// The operation of a request whose document did not parse: it was meant
    /// as a query or mutation, whose name is unknown.
    pub fn unparsed() -> Self {
        Self {
            name: "anonymous".into(),
            kind: None,
        }
    }

    /// The operation `requested` names in `document` (or its only one).
    pub fn of(document: &ExecutableDocument, requested: Option<&str>) -> Self {
        let (name, kind) = describe(document, requested);
        Self { name, kind }
    }

    /// Records one finished operation (`fallback` stands for an unknown type).
    pub fn record(&self, fallback: &'static str, response: &Response, started: Instant) -> &'static str {
        let outcome = outcome(response);
        record(&self.name, self.kind.unwrap_or(fallback), outcome, started);
        outcome
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
