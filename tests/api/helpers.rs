//! Test harness: a fresh database per test (a SQLite file in a temp folder,
//! or a new PostgreSQL database when `FENRUN_TEST_PG` names a server), and
//! the application on port 0, started exactly as `main` starts it.

use std::sync::Arc;

use fenrun::app::Application;
use fenrun::config::Settings;
use fenrun::domain::access::Role;
use fenrun::domain::ids::DistributorId;
use fenrun::store::{Store, StoreOptions};
use fenrun::vault::KeySources;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;

/// The master key every app and every `fenrun serve` of the tests uses
/// (64 hex digits). PostgreSQL refuses to start without one (SPEC §5); SQLite
/// gets it too, so a test behaves the same whichever test ran first.
pub const TEST_MASTER_KEY: &str =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an `async fn(Backend)` test once per backend: `name::sqlite` always,
/// `name::postgres` when the build saw `FENRUN_TEST_PG` (else it is ignored,
/// with the reason shown by the test runner).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }

            #[tokio::test]
            #[cfg_attr(
                not(fenrun_test_pg),
                ignore = "PostgreSQL suite skipped: set FENRUN_TEST_PG=postgres://postgres@127.0.0.1:5432/postgres"
            )]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("fenrun.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = std::env::var("FENRUN_TEST_PG")
                    .expect("FENRUN_TEST_PG must name a PostgreSQL server for the postgres tests");
                let name = format!("fenrun_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to FENRUN_TEST_PG");
                sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                conn.close().await.ok();
                let (base, _) = admin
                    .rsplit_once('/')
                    .expect("FENRUN_TEST_PG ends with /database");
                TestDb {
                    url: format!("{base}/{name}"),
                    _dir: None,
                }
            }
        }
    }

    /// The SQLite database file (`None` on PostgreSQL).
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        self._dir.as_ref().map(|dir| dir.path().join("fenrun.db"))
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url, &StoreOptions::default())
            .await
            .expect("open store")
    }
}

/// A running API (in this process or a `fenrun serve` child), its
/// database, and a token per role.
pub struct Http {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Arc<Store>,
    pub admin: String,
    pub ingest: String,
    pub ops: String,
    pub accountant: String,
}

/// The application, serving on a free port, with a token per role (the
/// [`Http`] it derefs to).
pub struct TestApp {
    pub http: Http,
    /// The withdrawal engine, whose gateway is the in-process sandbox.
    pub withdrawals: Arc<fenrun::engine::withdrawal::WithdrawalEngine>,
    pub db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::ops::Deref for TestApp {
    type Target = Http;

    fn deref(&self) -> &Http {
        &self.http
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDb::new(backend).await;
    let mut settings = Settings {
        database_url: SecretString::from(db.url.clone()),
        listen: "127.0.0.1:0".to_owned(),
        master_key: KeySources {
            key: Some(SecretString::from(TEST_MASTER_KEY)),
            ..KeySources::default()
        },
        // Most tests expect a standard withdrawal paid at once; the
        // settlement cycle's own tests turn this off.
        standard_withdrawals_at_once: true,
        ..Settings::default()
    };
    adjust(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("build application");
    let address = format!("http://{}", app.local_addr());
    let store = app.state().store.clone();
    let withdrawals = app.state().withdrawals.clone();
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        http: Http::attach(&address, store).await,
        withdrawals,
        db,
        shutdown: Some(shutdown),
    }
}

impl Http {
    /// The API at `address` on `store`'s database, with a fresh token per role.
    pub async fn attach(address: &str, store: Arc<Store>) -> Http {
        let token = |role: Role| {
            let store = store.clone();
            async move {
                let issued = fenrun::service::tokens::create(
                    &store,
                    role,
                    None,
                    chrono::Utc::now(),
                    &fenrun::service::audit::Actor::system("test"),
                )
                .await
                .expect("token");
                issued.secret.expose_secret().to_owned()
            }
        };
        Http {
            address: address.to_owned(),
            client: reqwest::Client::new(),
            admin: token(Role::Admin).await,
            ingest: token(Role::Ingest).await,
            ops: token(Role::Ops).await,
            accountant: token(Role::Accountant).await,
            store,
        }
    }
}

impl Http {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn distributor_token(&self, id: &str) -> String {
        let id = DistributorId::parse(id).unwrap();
        let issued = fenrun::service::tokens::create(
            &self.store,
            Role::Distributor,
            Some(&id),
            chrono::Utc::now(),
            &fenrun::service::audit::Actor::system("test"),
        )
        .await
        .expect("distributor token");
        issued.secret.expose_secret().to_owned()
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_raw(&self, path: &str, token: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request")
    }

    pub async fn put_json(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Creates a distributor through the API and asserts 201.
    pub async fn create_distributor(
        &self,
        id: &str,
        referrer: Option<&str>,
        grade: Option<&str>,
    ) -> serde_json::Value {
        let mut body = serde_json::json!({ "id": id, "name": format!("name of {id}") });
        if let Some(referrer) = referrer {
            body["referrer_id"] = referrer.into();
        }
        if let Some(grade) = grade {
            body["grade"] = grade.into();
        }
        let response = self
            .post_json("/v1/distributors", &self.ingest, &body)
            .await;
        assert_eq!(response.status(), 201, "creating {id}");
        response.json().await.unwrap()
    }
}

/// The `error` object of a JSON error answer, after checking the status.
pub async fn error_of(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    body["error"].clone()
}
