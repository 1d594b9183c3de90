//! Sign-in, refresh-token rotation, sign-out, and the bootstrap admin.

use super::tokens::{new_refresh_token, refresh_token_hash};
use super::{Actor, Role};
use crate::error::{ServiceError, ServiceResult};
use crate::ids::UserId;
use crate::services::{Caller, Services};
use crate::validate;
use chrono::{DateTime, Utc};
use entity::{refresh_token, user};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};
use uuid::Uuid;

/// A user as shown to clients (email decrypted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Email address.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Set for PROVIDER users.
    pub provider_id: Option<crate::ids::ProviderId>,
    /// Set for PATIENT users.
    pub patient_id: Option<crate::ids::PatientId>,
    /// The locations a STAFF user works at (empty for other roles).
    pub location_ids: Vec<crate::ids::LocationId>,
}

/// What a successful sign-in or refresh answers.
#[derive(Clone, Debug)]
pub struct AuthSession {
    /// Short-lived JWT.
    pub access_token: String,
    /// Opaque, single-use refresh token.
    pub refresh_token: String,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// Who signed in.
    pub user: User,
}

const BAD_LOGIN: ServiceError = ServiceError::Unauthenticated("invalid email or password");
const BAD_REFRESH: ServiceError = ServiceError::Unauthenticated("invalid refresh token");

/// What a new user account needs; used by the provider, patient and bootstrap paths.
pub(crate) struct NewUser<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub role: Role,
    pub provider_id: Option<Uuid>,
    pub patient_id: Option<Uuid>,
}

impl Services {
    /// Signs in with email and password. An unknown email and a wrong password
    /// answer the same error after the same work. Repeated failures for one
    /// email (known or not) or from one address lock further attempts for a
    /// growing time (`RATE_LIMITED` with the wait).
    #[tracing::instrument(name = "auth.login", skip_all)]
    pub async fn login(&self, caller: &Caller, email: &str, password: &str) -> ServiceResult<AuthSession> {
        let normalized = email.trim().to_lowercase();
        let bidx = self.keyring.blind_index("email", &normalized);
        let throttles = super::throttle::keys(&bidx, caller.meta.client_ip.as_deref());
        super::throttle::check(self.policy.counters.as_ref(), &throttles).await?;
        let row = user::Entity::find()
            .filter(user::Column::EmailBidx.eq(bidx))
            .one(&self.db)
            .await?;
        let ok = self
            .passwords
            .verify(password, row.as_ref().map(|u| u.password_hash.as_str()))
            .await?;
        let row = match row {
            Some(row) if ok && !row.disabled => row,
            _ => {
                super::throttle::failed(self.policy.counters.as_ref(), &throttles).await;
                return Err(BAD_LOGIN);
            }
        };
        super::throttle::succeeded(self.policy.counters.as_ref(), &throttles).await;
        let txn = self.db.begin().await?;
        let user = self.load_user(&txn, &row).await?;
        let session = self.start_session(&txn, user, Uuid::now_v7()).await?;
        txn.commit().await?;
        Ok(session)
    }

    /// Trades a refresh token for a new session. Each token works once: a reused
    /// token revokes its whole family (every token of that sign-in).
    #[tracing::instrument(name = "auth.refresh", skip_all)]
    pub async fn refresh_session(&self, token: &str) -> ServiceResult<AuthSession> {
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let row = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(refresh_token_hash(token)))
            .one(&txn)
            .await?
            .ok_or(BAD_REFRESH)?;
        if row.revoked_at.is_some() || row.expires_at <= now {
            return Err(BAD_REFRESH);
        }
        // Claim the token: only one concurrent refresh can flip used_at.
        let claimed = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .filter(refresh_token::Column::Id.eq(row.id))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        if claimed.rows_affected != 1 {
            txn.rollback().await?;
            self.end_session(&self.db, row.family_id).await?;
            tracing::warn!(user_id = %row.user_id, family = %row.family_id, "refresh token reused: family revoked");
            return Err(BAD_REFRESH);
        }
        let user_row = user::Entity::find_by_id(row.user_id)
            .one(&txn)
            .await?
            .ok_or(BAD_REFRESH)?;
        if user_row.disabled {
            return Err(BAD_REFRESH);
        }
        let user = self.load_user(&txn, &user_row).await?;
        let session = self.start_session(&txn, user, row.family_id).await?;
        txn.commit().await?;
        Ok(session)
    }

    /// Revokes the sign-in the refresh token belongs to. Answers false for an
    /// unknown token.
    pub async fn logout(&self, token: &str) -> ServiceResult<bool> {
        let row = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(refresh_token_hash(token)))
            .one(&self.db)
            .await?;
        match row {
            Some(row) => {
                self.end_session(&self.db, row.family_id).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The signed-in user.
    pub async fn me(&self, caller: &Caller) -> ServiceResult<User> {
        let actor = caller.actor()?;
        let row = user::Entity::find_by_id(actor.user_id.0)
            .one(&self.db)
            .await?
            .ok_or(ServiceError::Unauthenticated("user no longer exists"))?;
        self.load_user(&self.db, &row).await
    }

    /// Creates an ADMIN or STAFF account (ADMIN); STAFF work at `locations`.
    /// Providers and patients get their sign-ins through `createProvider` and
    /// `createPatient`.
    pub async fn create_user(
        &self,
        caller: &Caller,
        email: &str,
        password: &str,
        role: Role,
        locations: &[crate::ids::LocationId],
    ) -> ServiceResult<User> {
        caller.actor()?.require(&[Role::Admin])?;
        if !matches!(role, Role::Admin | Role::Staff) {
            return Err(ServiceError::bad_input(
                "input.role",
                "only ADMIN and STAFF accounts are created here; providers and patients have their own mutations",
            ));
        }
        if role == Role::Admin && !locations.is_empty() {
            return Err(ServiceError::bad_input(
                "input.locationIds",
                "ADMIN works at every location; only STAFF take locationIds",
            ));
        }
        let txn = self.db.begin().await?;
        let id = self
            .insert_user(
                &txn,
                NewUser {
                    email,
                    password,
                    role,
                    provider_id: None,
                    patient_id: None,
                },
                "input.email",
            )
            .await?;
        // A new ADMIN has no rows to write (locationIds were refused above).
        let location_ids = match role {
            Role::Staff => {
                self.write_staff_locations(&txn, id, locations, "input.locationIds")
                    .await?
            }
            _ => Vec::new(),
        };
        txn.commit().await?;
        Ok(User {
            id,
            email: email.trim().to_lowercase(),
            role,
            provider_id: None,
            patient_id: None,
            location_ids,
        })
    }

    /// Creates the first ADMIN when none exists. Safe to run on every replica.
    pub async fn ensure_bootstrap_admin(&self, email: &str, password: &str) -> ServiceResult<bool> {
        let admins = user::Entity::find()
            .filter(user::Column::Role.eq(Role::Admin.as_str()))
            .one(&self.db)
            .await?;
        if admins.is_some() {
            return Ok(false);
        }
        let txn = self.db.begin().await?;
        let created = self
            .insert_user(
                &txn,
                NewUser {
                    email,
                    password,
                    role: Role::Admin,
                    provider_id: None,
                    patient_id: None,
                },
                "CARESLOT_BOOTSTRAP_ADMIN_EMAIL",
            )
            .await;
        match created {
            Ok(_) => {
                txn.commit().await?;
                Ok(true)
            }
            // Another replica created it first.
            Err(ServiceError::BadInput { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Inserts a user; a taken email is `BAD_USER_INPUT` on `email_field`.
    pub(crate) async fn insert_user(
        &self,
        conn: &impl ConnectionTrait,
        new: NewUser<'_>,
        email_field: &str,
    ) -> ServiceResult<UserId> {
        let email = validate::email(email_field, new.email)?;
        let password_field = email_field.replace("email", "password");
        super::validate_new_password(&password_field, new.password)?;
        let bidx = self.keyring.blind_index("email", &email);
        let taken = user::Entity::find()
            .filter(user::Column::EmailBidx.eq(bidx.clone()))
            .one(conn)
            .await?;
        if taken.is_some() {
            return Err(ServiceError::bad_input(email_field, "email is already registered"));
        }
        let id = Uuid::now_v7();
        let now = self.clock.now();
        let hash = self.passwords.hash(new.password).await?;
        let inserted = user::Entity::insert(user::ActiveModel {
            id: Set(id),
            email_bidx: Set(bidx),
            email_enc: Set(self
                .keyring
                .encrypt("users.email", id, &email)
                .map_err(ServiceError::internal)?),
            phi_key_id: Set(self.keyring.current_key_id().to_owned()),
            password_hash: Set(hash),
            role: Set(new.role.as_str().to_owned()),
            provider_id: Set(new.provider_id),
            patient_id: Set(new.patient_id),
            disabled: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(conn)
        .await;
        match inserted {
            Ok(_) => Ok(UserId(id)),
            Err(e) if crate::db::is_unique_violation(&e) => {
                Err(ServiceError::bad_input(email_field, "email is already registered"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A user row as shown to clients, with a STAFF user's locations.
    pub(crate) async fn load_user(&self, conn: &impl ConnectionTrait, row: &user::Model) -> ServiceResult<User> {
        let mut user = self.user_from_row(row)?;
        if user.role == Role::Staff {
            user.location_ids = self.staff_locations_of(conn, user.id).await?;
        }
        Ok(user)
    }

    pub(crate) fn user_from_row(&self, row: &user::Model) -> ServiceResult<User> {
        let role = Role::parse(&row.role)
            .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("unknown role in users row {}", row.id)))?;
        let email = self
            .keyring
            .decrypt(&row.phi_key_id, "users.email", row.id, &row.email_enc)
            .map_err(ServiceError::internal)?;
        Ok(User {
            id: UserId(row.id),
            email,
            role,
            provider_id: row.provider_id.map(Into::into),
            patient_id: row.patient_id.map(Into::into),
            location_ids: Vec::new(),
        })
    }

    async fn start_session(
        &self,
        conn: &impl ConnectionTrait,
        user: User,
        family_id: Uuid,
    ) -> ServiceResult<AuthSession> {
        let now = self.clock.now();
        let actor = Actor {
            user_id: user.id,
            role: user.role,
            provider_id: user.provider_id,
            patient_id: user.patient_id,
            locations: user.location_ids.clone().into(),
            session_id: Some(family_id),
        };
        let (access_token, expires_at) = self.tokens.issue(&actor, now)?;
        let refresh = new_refresh_token();
        refresh_token::Entity::insert(refresh_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user.id.0),
            family_id: Set(family_id),
            token_hash: Set(refresh_token_hash(&refresh)),
            expires_at: Set(now + self.policy.refresh_ttl),
            used_at: Set(None),
            revoked_at: Set(None),
            created_at: Set(now),
        })
        .exec_without_returning(conn)
        .await?;
        Ok(AuthSession {
            access_token,
            refresh_token: refresh,
            expires_at,
            user,
        })
    }
}
