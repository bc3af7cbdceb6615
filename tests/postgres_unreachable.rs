//! Opening a PostgreSQL store on a server that is not there fails promptly,
//! naming `host:port` and why, never the password. Only local addresses:
//! these tests need no server, and never skip.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use eventsourcing::{Error, Store};

/// The message with its causes, as a user sees it printed.
fn full_message(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn nothing_listening_fails_at_once_naming_the_address() {
    // A port that was free a moment ago, and nothing listens on now.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let error = Store::open(&format!("postgres://me:secret@127.0.0.1:{port}/orders"))
        .await
        .expect_err("nothing listens there");
    let elapsed = started.elapsed();
    let message = full_message(&error);
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}: {message}");
    assert!(matches!(error, Error::Connect { .. }), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("connection refused"), "{message}");
    assert!(!message.contains("secret"), "{message}");
}

#[tokio::test]
async fn a_server_that_never_answers_fails_after_the_connect_timeout() {
    // Accepts connections and says nothing, ever.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let error = Store::open(&format!(
        "postgres://me:secret@127.0.0.1:{port}/orders?connect_timeout=1"
    ))
    .await
    .expect_err("the server never answers");
    let elapsed = started.elapsed();
    let message = full_message(&error);
    assert!(
        elapsed >= Duration::from_secs(1),
        "gave up after {elapsed:?}: {message}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}: {message}");
    assert!(matches!(error, Error::Connect { .. }), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("no answer within 1 s"), "{message}");
    assert!(!message.contains("secret"), "{message}");
}

#[tokio::test]
async fn a_connect_timeout_that_is_not_whole_seconds_is_refused() {
    let error = Store::open("postgres://me:secret@127.0.0.1:1/orders?connect_timeout=soon")
        .await
        .expect_err("not a number of seconds");
    let message = error.to_string();
    assert!(matches!(error, Error::StoreUrl { .. }), "{message}");
    assert!(message.contains("connect_timeout"), "{message}");
    assert!(!message.contains("secret"), "{message}");
}
