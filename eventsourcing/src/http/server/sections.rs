//! The routes that describe logs and serve their sections.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::LogServer;
use super::respond::{self, ApiError, IMMUTABLE, NO_STORE, REVALIDATE};
use crate::NotificationSource;
use crate::http::wire::{LogInfoJson, SectionJson};
use crate::store::DEFAULT_PARTITION;

/// `GET /`: the applications this client may read.
pub(super) async fn apps(State(server): State<LogServer>, headers: HeaderMap) -> Result<Response, ApiError> {
    #[derive(Serialize)]
    struct AppsJson<'a> {
        apps: Vec<&'a str>,
    }
    let client = server.tokens.client(&headers)?;
    let apps = server
        .apps
        .keys()
        .map(String::as_str)
        .filter(|app| client.may_read(app))
        .collect();
    Ok(respond::json(StatusCode::OK, NO_STORE, &AppsJson { apps }))
}

/// `GET /{app}`: the log's partitions, section size and heads.
pub(super) async fn log_info(
    State(server): State<LogServer>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(app) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let recorder = server.readable(&headers, &app)?;
    let heads = futures_util::future::try_join_all(
        (0..recorder.partitions()).map(|partition| recorder.max_notification_id(partition)),
    )
    .await?;
    let info = LogInfoJson {
        app,
        partitions: recorder.partitions(),
        section_size: server.section_size,
        heads,
    };
    Ok(respond::json(StatusCode::OK, NO_STORE, &info))
}

/// `GET /{app}/sections/{id}`: a section of partition 0.
pub(super) async fn section(
    State(server): State<LogServer>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((app, id)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    serve_section(&server, &headers, &app, Ok(DEFAULT_PARTITION), &id).await
}

/// `GET /{app}/partitions/{partition}/sections/{id}`.
pub(super) async fn partition_section(
    State(server): State<LogServer>,
    headers: HeaderMap,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((app, partition, id)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let partition = partition.parse::<u32>().map_err(|_| partition);
    serve_section(&server, &headers, &app, partition, &id).await
}

/// The section `id` of `app`'s `partition` (`Err`: the partition as given,
/// not a number). Who may not read the application learns nothing else of
/// it, not even that the rest of the request is malformed.
async fn serve_section(
    server: &LogServer,
    headers: &HeaderMap,
    app: &str,
    partition: Result<u32, String>,
    id: &str,
) -> Result<Response, ApiError> {
    let recorder = server.readable(headers, app)?;
    let partition =
        partition.map_err(|given| ApiError::bad_request(format!("partition `{given}` is not a whole number")))?;
    let log = server.log(recorder, partition)?;
    let section = log.section(id).await?;
    // Full, and followed by another: no notification can join it.
    let complete = section.items.len() as u64 == server.section_size && section.next_id.is_some();
    let body = serde_json::to_vec(&SectionJson::from(&section))
        .map_err(|e| ApiError::internal(format!("cannot write section {} as JSON: {e}", section.id)))?;
    Ok(respond::tagged(
        headers,
        if complete { IMMUTABLE } else { REVALIDATE },
        body,
    ))
}
