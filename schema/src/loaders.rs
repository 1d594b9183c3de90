//! Batch loaders for an appointment's provider, patient and type: a page of N
//! appointments costs one query per kind, not N. They keep no cache, so one
//! loader can serve every request (and long-lived subscriptions never see stale
//! data) while concurrent lookups still batch.

use async_graphql::dataloader::{DataLoader, Loader};
use domain::directory::{AppointmentType, Patient, Provider};
use domain::ids::{AppointmentTypeId, PatientId, ProviderId};
use domain::{ServiceError, Services};
use std::collections::HashMap;
use std::sync::Arc;

/// The loaders of the schema.
pub struct Loaders {
    /// Providers by id.
    pub providers: DataLoader<ProviderLoader>,
    /// Patients by id (decrypted; callers check access first).
    pub patients: DataLoader<PatientLoader>,
    /// Appointment types by id.
    pub appointment_types: DataLoader<AppointmentTypeLoader>,
}

impl Loaders {
    /// Loaders over `services`.
    pub fn new(services: &Services) -> Self {
        Self {
            providers: DataLoader::new(ProviderLoader(services.clone()), tokio::spawn),
            patients: DataLoader::new(PatientLoader(services.clone()), tokio::spawn),
            appointment_types: DataLoader::new(AppointmentTypeLoader(services.clone()), tokio::spawn),
        }
    }
}

/// Errors shared between the requests of one batch.
pub type LoadError = Arc<ServiceError>;

/// Loads providers.
pub struct ProviderLoader(Services);
/// Loads patients.
pub struct PatientLoader(Services);
/// Loads appointment types.
pub struct AppointmentTypeLoader(Services);

impl Loader<ProviderId> for ProviderLoader {
    type Value = Provider;
    type Error = LoadError;

    async fn load(&self, keys: &[ProviderId]) -> Result<HashMap<ProviderId, Provider>, LoadError> {
        let rows = self.0.providers_by_ids(keys).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|p| (p.id, p)).collect())
    }
}

impl Loader<PatientId> for PatientLoader {
    type Value = Patient;
    type Error = LoadError;

    async fn load(&self, keys: &[PatientId]) -> Result<HashMap<PatientId, Patient>, LoadError> {
        let rows = self.0.patients_by_ids_unchecked(keys).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|p| (p.id, p)).collect())
    }
}

impl Loader<AppointmentTypeId> for AppointmentTypeLoader {
    type Value = AppointmentType;
    type Error = LoadError;

    async fn load(&self, keys: &[AppointmentTypeId]) -> Result<HashMap<AppointmentTypeId, AppointmentType>, LoadError> {
        let rows = self.0.appointment_types_by_ids(keys).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|t| (t.id, t)).collect())
    }
}
