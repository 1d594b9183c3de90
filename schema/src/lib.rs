//! The Careslot GraphQL schema: types, roots, error codes. Thin: every resolver
//! takes the caller and services from the context, calls `domain`, converts.

mod error;
mod error_codes;
mod loaders;
pub mod observe;
mod request;
pub mod roots;
pub mod scalars;
pub mod types;

use async_graphql::Schema;
use domain::Services;
pub use error::{ErrorCode, IntoGqlResult, service_error};
pub use request::{RequestCaller, caller, services};
use roots::{MutationRoot, QueryRoot, SubscriptionRoot};

/// The executable schema.
pub type CareslotSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Limits and switches of the schema, from settings.
#[derive(Clone, Copy, Debug)]
pub struct SchemaOptions {
    /// Deepest selection allowed.
    pub max_depth: usize,
    /// Most complex query allowed (async-graphql's complexity count).
    pub max_complexity: usize,
    /// Introspection on (development) or off (production).
    pub introspection: bool,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 2000,
            introspection: true,
        }
    }
}

/// Builds the schema over `services`.
pub fn build(services: Services, options: SchemaOptions) -> CareslotSchema {
    let mut builder = builder()
        .data(loaders::Loaders::new(&services))
        .data(services)
        // Outermost first: Observe sees the codes ErrorCodes fills in. (async-graphql's
        // own Tracing extension is not used: it records the query text, literals
        // and all, which may be patient data.)
        .extension(observe::Observe)
        .extension(error_codes::ErrorCodes)
        .limit_depth(options.max_depth)
        .limit_complexity(options.max_complexity)
        .limit_recursive_depth(32)
        .limit_directives(16);
    if !options.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema in SDL, as committed in `schema/schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

fn builder() -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
}
