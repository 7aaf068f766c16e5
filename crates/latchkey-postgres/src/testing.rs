//! Throw-away databases for tests: each test gets a database of its own on the server named
//! by [`URL_VAR`], dropped again when the [`TestDatabase`] is.

use sqlx::{Connection, Executor, PgConnection};

/// The variable holding the URL of a server (and a database to connect to for creating and
/// dropping others), e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const URL_VAR: &str = "LATCHKEY_TEST_DATABASE_URL";

/// An empty database that lives as long as this value.
#[derive(Debug)]
pub struct TestDatabase {
    /// Connects to the new database; the server's URL with the database name replaced.
    pub url: String,
    pub name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a database with a random name on the server of `admin_url`.
    ///
    /// # Panics
    /// When the server cannot be reached or refuses: this is for tests.
    pub async fn create(admin_url: &str) -> TestDatabase {
        let name = format!("latchkey_test_{}", uuid::Uuid::now_v7().simple());
        let mut url = url::Url::parse(admin_url).expect("the test database URL parses");
        url.set_path(&format!("/{name}"));
        let mut admin = PgConnection::connect(admin_url).await.expect("connect to the test database server");
        admin.execute(format!(r#"CREATE DATABASE "{name}""#).as_str()).await.expect("create a test database");
        let _ = admin.close().await;
        TestDatabase { url: url.into(), name, admin_url: admin_url.to_owned() }
    }

    /// Creates a database on the server named by [`URL_VAR`].
    ///
    /// # Panics
    /// When the variable is not set: a test that needs PostgreSQL fails rather than passing
    /// without having run. Such tests are `#[ignore]`d, so that a plain `cargo test` reports
    /// them as ignored, and run with `--include-ignored` and the variable set.
    pub async fn from_env() -> TestDatabase {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => Self::create(&url).await,
            _ => panic!(
                "this test needs PostgreSQL: set {URL_VAR} (e.g. postgres://postgres@127.0.0.1:5432/postgres), \
                 or run without --include-ignored to leave the PostgreSQL tests out"
            ),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime, where blocking on another is not allowed; a thread
        // with a runtime of its own sidesteps that. FORCE ends connections still open.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                admin.execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str()).await?;
                admin.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
