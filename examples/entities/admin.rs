//! The admin's endpoint: a small HTTP server that receives notices, each
//! with an `Idempotency-Key` header, and keeps each key once however many
//! times it is delivered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// What the endpoint received: deliveries per idempotency key, and each
/// key's body.
#[derive(Clone, Default)]
pub struct Admin {
    received: Arc<Mutex<HashMap<String, (u32, String)>>>,
}

impl Admin {
    /// Serves `POST /notices` on `listener` until the process ends.
    pub fn serve(&self, listener: tokio::net::TcpListener) {
        let router = axum::Router::new()
            .route("/notices", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
    }

    /// Notices received, each key once.
    pub fn unique(&self) -> usize {
        self.lock().len()
    }

    /// Deliveries received, repeats included.
    pub fn deliveries(&self) -> u32 {
        self.lock().values().map(|(count, _)| count).sum()
    }

    /// The body of each notice, each key once.
    pub fn bodies(&self) -> Vec<String> {
        self.lock().values().map(|(_, body)| body.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, String)>> {
        self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn receive(State(admin): State<Admin>, headers: HeaderMap, body: String) -> StatusCode {
    let Some(key) = headers.get("idempotency-key").and_then(|key| key.to_str().ok()) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = admin.lock();
    let entry = received.entry(key.to_owned()).or_insert((0, body));
    entry.0 += 1;
    StatusCode::NO_CONTENT
}
