//! The Careslot GraphQL schema: types, roots, error codes. Thin: every resolver
//! takes the caller and services from the context, calls `domain`, converts.

mod alias_limit;
mod documents;
mod error;
mod error_codes;
mod executor;
mod loaders;
pub mod observe;
mod request;
mod rfc3339;
pub mod roots;
pub mod scalars;
pub mod types;

use async_graphql::Schema;
use domain::Services;
pub use error::{ErrorCode, IntoGqlResult, service_error};
pub use executor::{CareslotSchema, GraphSchema};
pub use request::{RequestCaller, caller, services};
use roots::{MutationRoot, QueryRoot, SubscriptionRoot};

/// Limits and switches of the schema, from settings.
#[derive(Clone, Copy, Debug)]
pub struct SchemaOptions {
    /// Deepest selection allowed.
    pub max_depth: usize,
    /// Most complex query allowed (async-graphql's complexity count).
    pub max_complexity: usize,
    /// Most aliases a document may carry.
    pub max_aliases: usize,
    /// Introspection on (development) or off (production).
    pub introspection: bool,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 2000,
            max_aliases: 30,
            introspection: true,
        }
    }
}

/// Builds the schema over `services`.
pub fn build(services: Services, options: SchemaOptions) -> CareslotSchema {
    // No extensions: the request-level steps (codes, aliases, observation) run
    // around execution in `CareslotSchema` (see executor.rs for why). Nor
    // async-graphql's own Tracing extension: it records the query text,
    // literals and all, which may be patient data.
    let mut builder = builder()
        .data(loaders::Loaders::new(&services))
        .data(services)
        .limit_depth(options.max_depth)
        .limit_complexity(options.max_complexity)
        .limit_recursive_depth(32)
        .limit_directives(16);
    if !options.introspection {
        builder = builder.disable_introspection();
    }
    CareslotSchema::new(builder.finish(), options.max_aliases)
}

/// The schema in SDL, as committed in `schema/schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

fn builder() -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
}
