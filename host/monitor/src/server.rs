//! The monitor's HTTP server: routes, the admin token check, and the admin calls.

use std::{
    net::SocketAddr,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use axum::{
    extract::{Path as UrlPath, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use dubchain_host::watch::ReloadEvent;
use serde_json::json;

use crate::{metrics, Monitor, Running, TOKEN_FILE};

const DASHBOARD: &str = include_str!("dashboard.html");

/// Serves `monitor` on `addr` (port 0: any free port) and evaluates its alert rules every
/// `evaluate_every`. The admin token was written to `data_dir/monitor.token` by
/// [`Monitor::new`].
pub fn serve(
    monitor: Arc<Monitor>, addr: SocketAddr, data_dir: &std::path::Path, evaluate_every: Duration,
) -> anyhow::Result<Running> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        anyhow::anyhow!("monitor address {addr}: {e}; give another with --monitor ADDR:PORT")
    })?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "the monitor listens beyond loopback; its admin API needs the token in {}", data_dir.join(TOKEN_FILE).display());
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(monitor.clone());
    let server = std::thread::Builder::new()
        .name("monitor-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "the monitor could not start its runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "the monitor could not listen");
                        return;
                    }
                };
                let stopped = async {
                    let _ = rx.await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    tracing::error!(error = %e, "the monitor's server stopped");
                }
            });
        })?;
    let stop = Arc::new(AtomicBool::new(false));
    let evaluator = {
        let (monitor, stop) = (monitor.clone(), stop.clone());
        std::thread::Builder::new()
            .name("monitor-alerts".into())
            .spawn(move || crate::evaluate_every(monitor, evaluate_every, stop))?
    };
    Ok(Running {
        addr: bound,
        token_path: data_dir.join(TOKEN_FILE),
        shutdown: Some(tx),
        server: Some(server),
        stop,
        evaluator: Some(evaluator),
    })
}

fn router(monitor: Arc<Monitor>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(DASHBOARD) }))
        .route("/metrics", get(metrics_text))
        .route(
            "/api/status",
            get(|State(m): State<Arc<Monitor>>| async move { Json(m.status()) }),
        )
        .route(
            "/api/alerts",
            get(|State(m): State<Arc<Monitor>>| async move { Json(m.alerts()) }),
        )
        .route("/api/plugins/{name}/{action}", post(plugin_action))
        .route("/api/reload", post(reload))
        .fallback(|| async { refuse(StatusCode::NOT_FOUND, ROUTES, json!({})) })
        .method_not_allowed_fallback(|| async {
            refuse(StatusCode::METHOD_NOT_ALLOWED, ROUTES, json!({}))
        })
        .with_state(monitor)
}

/// What an unknown path or method is answered with.
const ROUTES: &str = "the monitor serves GET /, /metrics, /api/status, /api/alerts and, with the admin token, POST /api/plugins/NAME/enable, /api/plugins/NAME/disable, /api/reload";

async fn metrics_text(State(m): State<Arc<Monitor>>) -> Response {
    let text = metrics::encode(&m.gather());
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

/// An error answer: `{"error": ..., ...}`.
fn refuse(code: StatusCode, error: &str, extra: serde_json::Value) -> Response {
    let mut body = json!({ "error": error });
    if let (Some(b), serde_json::Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    (code, Json(body)).into_response()
}

/// `None` if the request carries the admin token; otherwise the 401 to answer.
fn unauthorised(m: &Monitor, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), m.token.as_bytes()) {
        return None;
    }
    let mut r = refuse(
        StatusCode::UNAUTHORIZED,
        &format!("admin calls need `Authorization: Bearer <token>`, the token being the contents of {TOKEN_FILE} in the node's data directory"),
        json!({}),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(r)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a reload did, as the admin API answers it: 409 if the plan had problems (nothing
/// changed), 422 if a plugin failed to load (the rest applied, as at start-up), else 200.
fn answer(m: &Monitor, event: ReloadEvent) -> Response {
    if !event.problems.is_empty() {
        return refuse(
            StatusCode::CONFLICT,
            "the plan has problems; nothing was changed",
            json!({ "problems": event.problems }),
        );
    }
    m.set_feature_set(&event.feature_set_id);
    let body = json!({
        "feature_set": event.feature_set_id,
        "loaded": event.loaded,
        "retired": event.retired,
        "failed": event.failed,
        "warnings": event.warnings,
    });
    if event.failed.is_empty() {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a plugin failed to load; its slots keep what is below it",
            body,
        )
    }
}

async fn plugin_action(
    State(m): State<Arc<Monitor>>, UrlPath((name, action)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = unauthorised(&m, &headers) {
        return r;
    }
    let enable = match action.as_str() {
        "enable" => true,
        "disable" => false,
        other => {
            return refuse(
                StatusCode::NOT_FOUND,
                &format!("no action `{other}`: use enable or disable"),
                json!({}),
            )
        }
    };
    let Some(reloader) = m.reloader.clone() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "this monitor has no admin API",
            json!({}),
        );
    };
    let result = tokio::task::spawn_blocking(move || {
        // One reading of the directory: the plugin is looked for in the session the
        // change applies.
        reloader
            .try_change_checked(
                |o| o.set_by_monitor(&name, enable),
                |s| match s.manifest(&name) {
                    Some(_) => Ok(()),
                    None => Err(format!(
                        "no plugin `{name}` in {}{}; `dubchain-perf plugins list` shows what is there",
                        s.options.plugin_dir.display(),
                        s.did_you_mean(&name)
                    )),
                },
            )
            .map(|event| (format!("admin API: {action} {name}"), event))
    })
    .await;
    match result {
        Ok(Ok((what, event))) => {
            m.log_change(&what, &event);
            answer(&m, event)
        }
        Ok(Err(unknown)) => refuse(StatusCode::NOT_FOUND, &unknown, json!({})),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), json!({})),
    }
}

async fn reload(State(m): State<Arc<Monitor>>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorised(&m, &headers) {
        return r;
    }
    let Some(reloader) = m.reloader.clone() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "this monitor has no admin API",
            json!({}),
        );
    };
    match tokio::task::spawn_blocking(move || reloader.reload(Vec::new())).await {
        Ok(event) => {
            m.log_change("admin API: reload", &event);
            answer(&m, event)
        }
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), json!({})),
    }
}
