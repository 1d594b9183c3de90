//! Access-token checks against ended sessions, ending a user's sessions, and
//! the locations STAFF users work at.

use super::{AccessClaims, Role, User, revocation};
use crate::error::{ServiceError, ServiceResult};
use crate::ids::{LocationId, UserId};
use crate::services::{Caller, Services};
use entity::{location, refresh_token, staff_location, user};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

impl Services {
    /// Verifies an access token: signature, expiry, and that its session was
    /// not ended (by sign-out, refresh-token reuse or an administrator) on any
    /// instance.
    pub async fn verify_access_token(&self, token: &str) -> ServiceResult<AccessClaims> {
        let claims = self.tokens.verify(token, self.clock.now())?;
        if let Some(session) = claims.sid
            && revocation::is_revoked(self.policy.counters.as_ref(), session).await
        {
            return Err(ServiceError::Unauthenticated("session ended"));
        }
        Ok(claims)
    }

    /// Ends every sign-in of `user_id` (ADMIN, or the user themself): refresh
    /// tokens stop working and access tokens are refused on every instance.
    /// Answers how many sessions ended.
    pub async fn revoke_user_sessions(&self, caller: &Caller, user_id: UserId) -> ServiceResult<usize> {
        let actor = caller.actor()?;
        if actor.role != Role::Admin && actor.user_id != user_id {
            return Err(ServiceError::Forbidden);
        }
        user::Entity::find_by_id(user_id.0)
            .one(&self.db)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        self.end_sessions_of(&self.db, user_id).await
    }

    /// Replaces the locations a STAFF user works at (ADMIN). Their sessions end,
    /// so the new scope applies from their next sign-in.
    pub async fn set_staff_locations(
        &self,
        caller: &Caller,
        user_id: UserId,
        locations: &[LocationId],
    ) -> ServiceResult<User> {
        caller.actor()?.require(&[Role::Admin])?;
        let txn = self.db.begin().await?;
        let row = user::Entity::find_by_id(user_id.0)
            .one(&txn)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        if row.role != Role::Staff.as_str() {
            return Err(ServiceError::bad_input(
                "userId",
                "only STAFF users are scoped to locations; ADMIN works at every location",
            ));
        }
        let location_ids = self
            .write_staff_locations(&txn, user_id, locations, "locationIds")
            .await?;
        self.end_sessions_of(&txn, user_id).await?;
        let user = User {
            location_ids,
            ..self.user_from_row(&row)?
        };
        txn.commit().await?;
        Ok(user)
    }

    /// Replaces the rows of `staff_locations` of `user_id` and answers what is
    /// stored now, in id order; unknown locations are `BAD_USER_INPUT` on `field`.
    pub(crate) async fn write_staff_locations(
        &self,
        conn: &impl ConnectionTrait,
        user_id: UserId,
        locations: &[LocationId],
        field: &str,
    ) -> ServiceResult<Vec<LocationId>> {
        let mut wanted: Vec<Uuid> = locations.iter().map(|l| l.0).collect();
        wanted.sort_unstable();
        wanted.dedup();
        if !wanted.is_empty() {
            let found: Vec<Uuid> = location::Entity::find()
                .select_only()
                .column(location::Column::Id)
                .filter(location::Column::Id.is_in(wanted.clone()))
                .into_tuple()
                .all(conn)
                .await?;
            if found.len() != wanted.len() {
                return Err(ServiceError::bad_input(field, "unknown location"));
            }
        }
        staff_location::Entity::delete_many()
            .filter(staff_location::Column::UserId.eq(user_id.0))
            .exec(conn)
            .await?;
        if !wanted.is_empty() {
            staff_location::Entity::insert_many(wanted.iter().map(|location_id| staff_location::ActiveModel {
                user_id: Set(user_id.0),
                location_id: Set(*location_id),
            }))
            .exec_without_returning(conn)
            .await?;
        }
        Ok(wanted.into_iter().map(Into::into).collect())
    }

    /// The locations `user_id` works at as STAFF, in id order.
    pub(crate) async fn staff_locations_of(
        &self,
        conn: &impl ConnectionTrait,
        user_id: UserId,
    ) -> ServiceResult<Vec<LocationId>> {
        let ids: Vec<Uuid> = staff_location::Entity::find()
            .select_only()
            .column(staff_location::Column::LocationId)
            .filter(staff_location::Column::UserId.eq(user_id.0))
            .into_tuple()
            .all(conn)
            .await?;
        let mut ids: Vec<LocationId> = ids.into_iter().map(Into::into).collect();
        ids.sort_unstable_by_key(|l| l.0);
        Ok(ids)
    }

    /// Revokes a session's refresh tokens and marks its access tokens revoked.
    pub(crate) async fn end_session(&self, conn: &impl ConnectionTrait, family_id: Uuid) -> ServiceResult<()> {
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(self.clock.now()))
            .filter(refresh_token::Column::FamilyId.eq(family_id))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(conn)
            .await?;
        revocation::revoke(self.policy.counters.as_ref(), family_id, self.tokens.access_ttl()).await;
        Ok(())
    }

    /// Ends every session of `user_id` that could still be alive.
    async fn end_sessions_of(&self, conn: &impl ConnectionTrait, user_id: UserId) -> ServiceResult<usize> {
        // A family whose refresh tokens all expired more than an access-token
        // lifetime ago has no live access token left either.
        let horizon = self.clock.now() - self.tokens.access_ttl();
        let families: Vec<Uuid> = refresh_token::Entity::find()
            .select_only()
            .column(refresh_token::Column::FamilyId)
            .distinct()
            .filter(refresh_token::Column::UserId.eq(user_id.0))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .filter(refresh_token::Column::ExpiresAt.gt(horizon))
            .into_tuple()
            .all(conn)
            .await?;
        for family in &families {
            self.end_session(conn, *family).await?;
        }
        Ok(families.len())
    }
}
