//! Runs requests through the schema the way every transport (HTTP and
//! websockets) must: the document parsed once (through the document cache)
//! and held to the alias limit, executed by async-graphql, every error given
//! a contract code, and the operation observed as a span and metrics.
//!
//! These are request-level steps. They are not async-graphql extensions on
//! purpose: with any extension installed, async-graphql routes the resolution
//! of every field and every list item through the extension chain (boxed
//! futures, a registry lookup per field), which cost about 45% of the
//! instructions of a day's slot search (callgrind, BENCHMARKS.md). Without
//! extensions, fields resolve directly.

use crate::alias_limit::too_many;
use crate::documents::Documents;
use crate::error_codes::add_codes;
use crate::observe::Operation;
use crate::roots::{MutationRoot, QueryRoot, SubscriptionRoot};
use async_graphql::{Data, Request, Response, Schema, ServerError};
use futures_util::stream::{self, BoxStream, StreamExt};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

/// async-graphql's schema of Careslot, without the request-level steps.
pub type GraphSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The executable schema with its request-level steps.
#[derive(Clone)]
pub struct CareslotSchema {
    schema: GraphSchema,
    documents: Arc<Documents>,
    max_aliases: usize,
}

impl CareslotSchema {
    pub(crate) fn new(schema: GraphSchema, max_aliases: usize) -> Self {
        Self {
            schema,
            documents: Arc::default(),
            max_aliases,
        }
    }

    /// Runs a query or mutation: one `graphql` span, one count in the operation metrics.
    pub async fn execute(&self, request: impl Into<Request>) -> Response {
        let started = Instant::now();
        let span = tracing::info_span!(
            "graphql",
            graphql.operation.name = tracing::field::Empty,
            graphql.operation.type = tracing::field::Empty,
            graphql.outcome = tracing::field::Empty,
        );
        let (operation, mut response) = match self.prepare(request.into()) {
            Ok((request, operation)) => (operation, self.schema.execute(request).instrument(span.clone()).await),
            Err(rejected) => {
                let (operation, error) = *rejected;
                (operation, Response::from_errors(vec![error]))
            }
        };
        add_codes(&mut response);
        // A request without a known type was meant as a query or mutation
        // (subscriptions come through `execute_stream`).
        let outcome = operation.record("query", &response, started);
        span.record("graphql.operation.name", operation.name.as_str());
        span.record("graphql.operation.type", operation.kind.unwrap_or("query"));
        span.record("graphql.outcome", outcome);
        response
    }

    /// Runs an operation as a stream (a subscription, or any operation sent
    /// over a websocket) with the connection's data. Counted once, when the
    /// stream first answers (its first event, or its error).
    pub fn execute_stream(
        &self,
        request: impl Into<Request>,
        session: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let started = Instant::now();
        match self.prepare(request.into()) {
            Ok((request, operation)) => {
                let mut counted = false;
                self.schema
                    .execute_stream_with_session_data(request, session.unwrap_or_default())
                    .map(move |mut response| {
                        add_codes(&mut response);
                        if !counted {
                            counted = true;
                            operation.record("subscription", &response, started);
                        }
                        response
                    })
                    .boxed()
            }
            Err(rejected) => {
                let (operation, error) = *rejected;
                let mut response = Response::from_errors(vec![error]);
                add_codes(&mut response);
                operation.record("subscription", &response, started);
                stream::once(async move { response }).boxed()
            }
        }
    }

    /// Whether `query` (with `operation_name` chosen from it) is a
    /// subscription. Answers from the document cache, so asking costs a lookup
    /// for documents clients send again and again; a document that does not
    /// parse is not a subscription (running it answers with its error).
    pub fn is_subscription(&self, query: &str, operation_name: Option<&str>) -> bool {
        self.documents
            .parse(query)
            .is_ok_and(|parsed| Operation::of(&parsed.document, operation_name).kind == Some("subscription"))
    }

    /// The request with its document parsed (or taken from the cache) and
    /// checked, and what is known of its operation.
    fn prepare(&self, mut request: Request) -> Result<(Request, Operation), Box<(Operation, ServerError)>> {
        let parsed = self
            .documents
            .parse(&request.query)
            .map_err(|error| Box::new((Operation::unparsed(), error)))?;
        let operation = Operation::of(&parsed.document, request.operation_name.as_deref());
        if parsed.aliases > self.max_aliases {
            return Err(Box::new((operation, too_many(parsed.aliases, self.max_aliases))));
        }
        request.set_parsed_query(parsed.document.clone());
        Ok((request, operation))
    }
}

impl async_graphql::Executor for CareslotSchema {
    async fn execute(&self, request: Request) -> Response {
        CareslotSchema::execute(self, request).await
    }

    fn execute_stream(&self, request: Request, session: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        CareslotSchema::execute_stream(self, request, session)
    }
}
