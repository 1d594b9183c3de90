//! Dead letters of the job queue (ADMIN).

use crate::types::{Job, connection};
use crate::{IntoGqlResult, caller, services};
use async_graphql::connection::Connection;
use async_graphql::{Context, Object, Result};
use uuid::Uuid;

/// Queries of the job queue.
#[derive(Default)]
pub struct JobsQuery;

#[Object]
impl JobsQuery {
    /// Jobs that failed for good, most recent first (ADMIN).
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Job>> {
        let page = services(ctx)
            .dead_letters(caller(ctx), first.unwrap_or(20), after.as_deref())
            .await
            .gql()?;
        Ok(connection(page, Job))
    }
}

/// Mutations of the job queue.
#[derive(Default)]
pub struct JobsMutation;

#[Object]
impl JobsMutation {
    /// Puts a dead letter back in the queue, due now, attempts reset (ADMIN).
    /// Channels already sent are not sent again.
    async fn retry_job(&self, ctx: &Context<'_>, id: Uuid) -> Result<Job> {
        services(ctx).retry_job(caller(ctx), id).await.gql().map(Job)
    }
}
