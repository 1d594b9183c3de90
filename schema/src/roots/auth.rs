//! Sign-in, sessions, and who am I.

use crate::types::{AuthPayload, CreateUserInput, User};
use crate::{IntoGqlResult, caller, services};
use async_graphql::{Context, Object, Result};
use uuid::Uuid;

/// Queries about the session.
#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        services(ctx).me(caller(ctx)).await.gql().map(User)
    }
}

/// Mutations of the session.
#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Signs in; answers an access token and a single-use refresh token.
    async fn login(&self, ctx: &Context<'_>, email: String, password: String) -> Result<AuthPayload> {
        services(ctx)
            .login(caller(ctx), &email, &password)
            .await
            .gql()
            .map(AuthPayload)
    }

    /// Trades a refresh token for a new session; a token works once, and a reused
    /// one revokes every token of its sign-in.
    async fn refresh_session(&self, ctx: &Context<'_>, refresh_token: String) -> Result<AuthPayload> {
        services(ctx)
            .refresh_session(&refresh_token)
            .await
            .gql()
            .map(AuthPayload)
    }

    /// Creates an ADMIN or STAFF account (ADMIN).
    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> Result<User> {
        services(ctx)
            .create_user(
                caller(ctx),
                &input.email,
                &input.password,
                input.role.into(),
                &input.location_ids.into_iter().map(Into::into).collect::<Vec<_>>(),
            )
            .await
            .gql()
            .map(User)
    }

    /// Ends the sign-in the refresh token belongs to; its access tokens stop
    /// working on every instance too.
    async fn logout(&self, ctx: &Context<'_>, refresh_token: String) -> Result<bool> {
        services(ctx).logout(&refresh_token).await.gql()
    }

    /// Ends every sign-in of a user (ADMIN, or the user themself): refresh and
    /// access tokens stop working on every instance. Answers how many ended.
    async fn revoke_user_sessions(&self, ctx: &Context<'_>, user_id: Uuid) -> Result<i32> {
        let ended = services(ctx)
            .revoke_user_sessions(caller(ctx), user_id.into())
            .await
            .gql()?;
        Ok(i32::try_from(ended).unwrap_or(i32::MAX))
    }

    /// Replaces the locations a STAFF user works at (ADMIN). Their sessions
    /// end, so the new scope applies from their next sign-in.
    async fn set_staff_locations(&self, ctx: &Context<'_>, user_id: Uuid, location_ids: Vec<Uuid>) -> Result<User> {
        let locations: Vec<_> = location_ids.into_iter().map(Into::into).collect();
        services(ctx)
            .set_staff_locations(caller(ctx), user_id.into(), &locations)
            .await
            .gql()
            .map(User)
    }
}
