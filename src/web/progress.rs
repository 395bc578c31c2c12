//! Deploys that take longer than a person should wait for an answer. A change from the
//! portal waits [`PORTAL_WAIT`] for its deploy; if it has not finished by then, the answer
//! is a progress panel in place of what the change would have shown (the row, the editor),
//! polled every second with each agent's progress, and replaced by the change's own answer
//! once the deploy ends: the row, the editor with the refusal beside its fields, or the
//! page it goes to. The API waits longer, then answers `202 Accepted` with a URL that
//! gives the progress, and the change's own answer once (see `README.md`).
//!
//! A waiting deploy belongs to the person who asked for it: anyone else's token is not
//! found. A result nobody fetches is dropped after [`KEEP_FOR`].

use super::api::ApiCaller;
use super::{AppState, CurrentUser, Render};
use crate::error::{AppError, Result};
use crate::fleet::progress::Watch;
use crate::views;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How long the portal waits for a deploy before it shows its progress instead.
pub(crate) const PORTAL_WAIT: Duration = Duration::from_secs(2);
/// How long a finished deploy's answer is kept for the one who asked.
const KEEP_FOR: Duration = Duration::from_secs(600);

/// A deploy someone is waiting on.
struct Running {
    user_id: i64,
    watch: Watch,
    started: Instant,
    task: JoinHandle<Response>,
}

/// The deploys people are waiting on, by an unguessable token.
#[derive(Default)]
pub(crate) struct Board {
    running: Mutex<HashMap<String, Running>>,
}

/// Where a waiting deploy stands, for its owner.
enum Look {
    Unknown,
    Running(Watch, Duration),
    Done(JoinHandle<Response>),
}

impl Board {
    fn add(&self, user_id: i64, watch: Watch, task: JoinHandle<Response>) -> String {
        let token = crate::auth::token::random_hex(16);
        let mut running = self.running.lock().expect("board lock");
        running.retain(|_, r| !r.task.is_finished() || r.started.elapsed() < KEEP_FOR);
        running.insert(
            token.clone(),
            Running {
                user_id,
                watch,
                started: Instant::now(),
                task,
            },
        );
        token
    }

    /// The deploy `token` of user `user_id`: taken off the board once it is done.
    fn look(&self, user_id: i64, token: &str) -> Look {
        let mut running = self.running.lock().expect("board lock");
        match running.get(token) {
            Some(r) if r.user_id == user_id && r.task.is_finished() => {
                let done = running.remove(token).expect("present");
                Look::Done(done.task)
            }
            Some(r) if r.user_id == user_id => Look::Running(r.watch.clone(), r.started.elapsed()),
            _ => Look::Unknown,
        }
    }
}

/// Runs `work` (a change and the answer it gives) watched; the answer if it is ready
/// within `wait`, else the token it is waiting under.
async fn run_watched<F>(
    state: &AppState,
    user_id: i64,
    wait: Duration,
    work: F,
) -> Result<Result<Response, (String, Watch)>>
where
    F: Future<Output = Response> + Send + 'static,
{
    let watch = Watch::default();
    let mut task = tokio::spawn(watch.clone().watching(work));
    match tokio::time::timeout(wait, &mut task).await {
        Ok(done) => Ok(Ok(done.map_err(|e| AppError::Internal(e.into()))?)),
        Err(_) => {
            let token = state.deploys.add(user_id, watch.clone(), task);
            Ok(Err((token, watch)))
        }
    }
}

/// The portal's answer to a change: `work`'s own if its deploy ends within
/// [`PORTAL_WAIT`], else a progress panel polled until it does. A request htmx did not
/// send cannot poll, so it waits for the answer.
pub(crate) async fn portal<F>(
    state: &AppState,
    current: &CurrentUser,
    render: &Render,
    work: F,
) -> Result<Response>
where
    F: Future<Output = Result<Response>> + Send + 'static,
{
    if !render.htmx {
        return work.await;
    }
    let work = async move { work.await.unwrap_or_else(IntoResponse::into_response) };
    match run_watched(state, current.user.id, PORTAL_WAIT, work).await? {
        Ok(done) => Ok(done),
        Err((token, watch)) => Ok(panel(render, &token, &watch, Duration::ZERO)),
    }
}

fn panel(render: &Render, token: &str, watch: &Watch, elapsed: Duration) -> Response {
    render.page(
        "Deploying",
        views::history::progress(token, &watch.steps(), elapsed.as_secs()),
    )
}

/// The panel's poll: the progress again, or the change's own answer once it is ready.
pub async fn poll(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Path(token): Path<String>,
) -> Result<Response> {
    match state.deploys.look(current.user.id, &token) {
        Look::Unknown => Err(AppError::NotFound),
        Look::Running(watch, elapsed) => Ok(panel(&render, &token, &watch, elapsed)),
        Look::Done(task) => task.await.map_err(|e| AppError::Internal(e.into())),
    }
}

/// How long the API waits before it answers `202 Accepted`: three quarters of the request
/// timeout, so a deploy that will finish never ends in a 408.
fn api_wait(state: &AppState) -> Duration {
    Duration::from_secs(state.config.security.request_timeout_secs) * 3 / 4
}

/// The API's answer to a change: `work`'s own if its deploy ends in time, else `202` with
/// where to follow it.
pub(crate) async fn api<F>(state: &AppState, caller: &ApiCaller, work: F) -> Response
where
    F: Future<Output = Response> + Send + 'static,
{
    match run_watched(state, caller.user.id, api_wait(state), work).await {
        Ok(Ok(done)) => done,
        Ok(Err((token, watch))) => api_progress(&token, &watch, Duration::ZERO),
        Err(e) => e.into_response(),
    }
}

fn api_progress(token: &str, watch: &Watch, elapsed: Duration) -> Response {
    let agents: Vec<serde_json::Value> = watch
        .steps()
        .iter()
        .map(|s| {
            serde_json::json!({
                "agent": s.agent,
                "outcome": s.outcome.as_ref().map(|o| o.kind()),
            })
        })
        .collect();
    let body = serde_json::json!({
        "status": "deploying",
        "deploy": format!("/api/v1/deploys/{token}"),
        "seconds": elapsed.as_secs(),
        "agents": agents,
    });
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    response.extensions_mut().insert(super::render::Rendered);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /api/v1/deploys/{token}`: `202` with the progress while the deploy runs, then the
/// change's own answer (once).
pub async fn api_poll(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(token): Path<String>,
) -> Response {
    match state.deploys.look(caller.user.id, &token) {
        Look::Unknown => super::api::error_response(
            StatusCode::NOT_FOUND,
            "No such deploy, or its answer was already given.",
        ),
        Look::Running(watch, elapsed) => api_progress(&token, &watch, elapsed),
        Look::Done(task) => task
            .await
            .unwrap_or_else(|e| AppError::Internal(e.into()).into_response()),
    }
}
