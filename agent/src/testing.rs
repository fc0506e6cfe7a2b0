//! Helpers for tests that need outside services (PostgreSQL, an S3-compatible server).
//!
//! A backend test skips when its service is not configured on a developer's machine; under
//! CI (`CI=true`) a missing service fails the test instead.

/// The value of `var`, or `None` (after saying so) when it is unset outside CI.
///
/// # Panics
/// When `var` is unset and `CI` is `true` or `1`.
pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "{var} is not set: under CI=true a missing service is a failure, not a skip"
            );
            eprintln!("skipping: {var} is not set");
            None
        }
    }
}

/// A PostgreSQL database created for one test and dropped by [`FreshPostgres::drop_db`].
#[derive(Debug)]
pub struct FreshPostgres {
    admin_url: String,
    name: String,
    /// URL of the new, empty database.
    pub url: String,
}

impl FreshPostgres {
    /// Creates an empty database on the server that `STREAMHOUSE_TEST_POSTGRES` names.
    pub async fn create() -> Option<FreshPostgres> {
        let admin_url = service_env("STREAMHOUSE_TEST_POSTGRES")?;
        let name = format!("streamhouse_test_{:016x}", rand::random::<u64>());
        use sqlx::Connection;
        let mut conn = sqlx::postgres::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {admin_url}: {e}"));
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin_url).expect("STREAMHOUSE_TEST_POSTGRES is a URL");
        url.set_path(&format!("/{name}"));
        Some(FreshPostgres {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    /// Drops the database (closing its other connections first).
    pub async fn drop_db(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::raw_sql(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }
}
