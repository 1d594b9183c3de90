//! The Query, Mutation and Subscription roots, merged from one object per area.

mod auth;
mod directory;
mod subscription;

use async_graphql::MergedObject;

/// Every query.
#[derive(MergedObject, Default)]
pub struct QueryRoot(auth::AuthQuery, directory::DirectoryQuery);

/// Every mutation.
#[derive(MergedObject, Default)]
pub struct MutationRoot(auth::AuthMutation, directory::DirectoryMutation);

pub use subscription::SubscriptionRoot;
