//! The dashboard and the fallback for unknown URLs.

use super::{AppState, CurrentUser, Render};
use crate::db::{changelog, deploys, vhosts};
use crate::error::{AppError, Result};
use crate::views;
use crate::views::home::Dashboard;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

pub async fn index(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
) -> Result<Response> {
    let admin = current.user.is_admin();
    let uid = current.user.id;
    let dashboard = state
        .db
        .run(move |c| {
            let (enabled, disabled) = if admin {
                vhosts::counts(c)?
            } else {
                let mine = vhosts::list(
                    c,
                    &vhosts::Filter {
                        owner_id: Some(uid),
                        ..Default::default()
                    },
                )?;
                let on = mine.iter().filter(|v| v.enabled).count() as i64;
                (on, mine.len() as i64 - on)
            };
            let filter = changelog::Filter {
                visible_to: (!admin).then_some(uid),
                limit: 8,
                ..Default::default()
            };
            Ok(Dashboard {
                enabled,
                disabled,
                recent: changelog::list(c, &filter)?,
                agents: Vec::new(),
                quarantined: Vec::new(),
                pending: deploys::pending(c, (!admin).then_some(uid))?,
            })
        })
        .await?;
    let dashboard = Dashboard {
        quarantined: state.sites().quarantined(&current.user).await?,
        agents: if admin {
            super::agents::views_of(&state).await?
        } else {
            Vec::new()
        },
        ..dashboard
    };
    Ok(render.page(
        "Home",
        views::home::index(&render.ctx, &current.user, &dashboard),
    ))
}

/// No such page: the error page, with the person's own header when they are signed in.
pub async fn not_found(
    State(state): State<AppState>,
    session: super::session::TypedSession,
    uri: axum::http::Uri,
) -> Response {
    let mut response = AppError::NotFound.into_response();
    if let Ok(Some(current)) = super::auth::resolve(&state, &session).await {
        super::auth::signed_in_errors(&mut response, &current, &session, uri.path().into()).await;
    }
    response
}
