//! The Query, Mutation and Subscription roots, merged from one object per area.

mod audit;
mod auth;
mod directory;
mod jobs;
mod scheduling;
mod subscription;

use async_graphql::MergedObject;

/// Every query.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    auth::AuthQuery,
    directory::DirectoryQuery,
    scheduling::SchedulingQuery,
    jobs::JobsQuery,
    audit::AuditQuery,
);

/// Every mutation.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    auth::AuthMutation,
    directory::DirectoryMutation,
    scheduling::SchedulingMutation,
    jobs::JobsMutation,
);

pub use subscription::SubscriptionRoot;
