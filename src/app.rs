//! The application: settings in, a bound listener and a running service out.
//! Tests start it exactly as `main` does, on port 0 with a fresh database.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::clock::{Clock, SimulatedClock, SystemClock};
use crate::config::Settings;
use crate::store::{Store, redact_url};

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    /// Present only under `--simulated-clock`.
    pub simulated_clock: Option<Arc<SimulatedClock>>,
    pub settings: Arc<Settings>,
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Opens and migrates the database, installs the default plan if none is
    /// in force, and binds the listener. Nothing is served until
    /// [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings.validate()?;
        let url = settings.database_url.expose_secret().to_owned();
        let store = Store::open(&url, &settings.store_options())
            .await
            .map_err(|error| anyhow::anyhow!("opening {}: {error}", redact_url(&url)))?;
        let (clock, simulated_clock): (Arc<dyn Clock>, Option<Arc<SimulatedClock>>) = if settings
            .simulated_clock
        {
            let simulated = Arc::new(SimulatedClock::starting_at(chrono::Utc::now()));
            tracing::warn!(
                "simulated clock: time only moves on POST /v1/admin/clock/advance; never use this in production"
            );
            (simulated.clone(), Some(simulated))
        } else {
            (Arc::new(SystemClock), None)
        };
        crate::plans::ensure_default(&store, clock.now()).await?;
        let listener = TcpListener::bind(settings.listen_addr()?).await?;
        tracing::info!(
            address = %listener.local_addr()?,
            database = %redact_url(&url),
            "fenrun is ready"
        );
        Ok(Application {
            listener,
            state: AppState {
                store: Arc::new(store),
                clock,
                simulated_clock,
                settings: Arc::new(settings),
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and
    /// closes the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let router = crate::api::router(self.state);
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await?;
        store.close().await;
        tracing::info!("fenrun stopped");
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
