//! A fresh PostgreSQL database per test, dropped when the test ends (also when
//! it fails). The server comes from `CARESLOT_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; when it cannot be reached the
//! test fails: it never skips.

use sea_orm::{ConnectionTrait, Database};

/// The maintenance URL of the test server.
pub fn server_url() -> String {
    std::env::var("CARESLOT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test.
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// URL to connect to it.
    pub url: String,
}

impl TestDatabase {
    /// Creates `careslot_test_<uuid>`.
    pub async fn create() -> Self {
        // Binary tests build reqwest clients after this; reqwest has no provider of its own.
        workers::install_crypto_provider();
        let server = server_url();
        let name = format!("careslot_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {server} is required for this test: {e}"));
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a fresh thread and runtime keep it
        // from blocking that runtime. FORCE ends the app's pool connections.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = Database::connect(&server_url()).await.ok()?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}
