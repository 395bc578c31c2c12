//! First run: while no account exists, `serve` logs a one-time URL with a random token, and
//! `/setup?token=…` creates the first admin. Without the right token, or once any account
//! exists, `/setup` is a 404, as if it did not exist.

use super::{AppState, Form, Render};
use crate::accounts;
use crate::auth::token;
use crate::config::Config;
use crate::db::{self, Db, users};
use crate::domain::FieldErrors;
use crate::domain::{DisplayName, Email, Password};
use crate::error::{AppError, Result};
use crate::views;
use crate::views::setup::SetupForm;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Holds the setup token while setup is possible; empty once it is not.
pub struct SetupGate {
    token: Mutex<Option<String>>,
    preset: bool,
}

impl SetupGate {
    /// Opens the gate when the database has no account yet.
    pub async fn prepare(config: &Config, db: &Db) -> Result<Self, db::DbError> {
        let empty = db.run(|c| Ok(users::count(c)? == 0)).await?;
        let preset = !config.setup_token.is_empty();
        let token = empty.then(|| {
            if preset {
                config.setup_token.expose().to_string()
            } else {
                token::random_hex(24)
            }
        });
        Ok(Self {
            token: Mutex::new(token),
            preset,
        })
    }

    /// Logs the one-time setup URL, if setup is still open.
    pub fn announce(&self, config: &Config, addr: SocketAddr) {
        let guard = self.token.lock().expect("setup lock");
        let Some(token) = guard.as_ref() else { return };
        let base = if config.public_url.is_empty() {
            format!("http://{addr}")
        } else {
            config.base_url()
        };
        if self.preset {
            tracing::warn!(
                "no accounts yet: open {base}/setup?token=<your configured setup_token>"
            );
        } else {
            // Printing this token is the point: it is the operator's one-time way in.
            tracing::warn!(
                "no accounts yet: open {base}/setup?token={token} to create the first admin"
            );
        }
    }

    fn accepts(&self, presented: &str) -> bool {
        let guard = self.token.lock().expect("setup lock");
        guard
            .as_ref()
            .is_some_and(|t| token::constant_time_eq(t.as_bytes(), presented.as_bytes()))
    }

    fn close(&self) {
        *self.token.lock().expect("setup lock") = None;
    }

    pub fn is_open(&self) -> bool {
        self.token.lock().expect("setup lock").is_some()
    }
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

async fn ensure_open(state: &AppState, presented: &str) -> Result<()> {
    if !state.setup.accepts(presented) {
        return Err(AppError::NotFound);
    }
    // An account may have been created from the CLI since start-up.
    if state.db.run(|c| users::count(c)).await? > 0 {
        state.setup.close();
        return Err(AppError::NotFound);
    }
    Ok(())
}

pub async fn form(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
    render: Render,
) -> Result<Response> {
    ensure_open(&state, &q.token).await?;
    let form = SetupForm {
        token: q.token,
        ..SetupForm::default()
    };
    Ok(render.page(
        "Set up Gatehouse",
        views::setup::form(&render.ctx, &form, &FieldErrors::default()),
    ))
}

pub async fn submit(
    State(state): State<AppState>,
    render: Render,
    Form(form): Form<SetupForm>,
) -> Result<Response> {
    ensure_open(&state, &form.token).await?;
    let mut errors = FieldErrors::default();
    let name = errors.check("name", DisplayName::parse(&form.name));
    let email = errors.check("email", Email::parse(&form.email));
    let new_password = errors.check("password", Password::parse(&form.password));
    if new_password.is_some() && form.password != form.password_confirm {
        errors.add("password_confirm", "The two passwords differ.");
    }
    let (Some(name), Some(email), Some(new_password), true) =
        (name, email, new_password, errors.is_empty())
    else {
        return Ok(render.page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Set up Gatehouse",
            views::setup::form(&render.ctx, &form, &errors),
        ));
    };

    let shown = email.to_string();
    let created = accounts::create_first_admin(&state.db, name, email, new_password).await?;
    state.setup.close();
    if !created {
        return Err(AppError::NotFound);
    }
    tracing::info!(email = %shown, "first admin created through setup");
    Ok(render.page("Gatehouse is ready", views::setup::done(&shown)))
}
