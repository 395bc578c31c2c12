//! The settings page (admin): the tenant policy that users' sites are judged by.

use super::{AppState, ClientInfo, CurrentUser, Form, Render};
use crate::db::audit::{self, Action, Event};
use crate::error::Result;
use crate::tenancy::{self, Lists};
use crate::views::{self, forms::FormErrors, settings::PolicyForm};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    saved: Option<String>,
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

async fn show(
    state: &AppState,
    render: &Render,
    form: PolicyForm,
    errors: FormErrors,
    saved: bool,
    status: StatusCode,
) -> Result<Response> {
    let (policy, _) = tenancy::policy(&state.db, &state.config).await?;
    let vhosts = state.config.vhosts.clone();
    let from_settings = state
        .db
        .run(move |c| Ok(tenancy::lists(c, &vhosts)?.from_settings))
        .await?;
    let page = views::settings::Page {
        form: &form,
        errors: &errors,
        from_settings,
        saved,
        reserved: &policy.reserved,
    };
    Ok(render.page_with_status(
        status,
        "Settings",
        views::settings::page(&render.ctx, &page),
    ))
}

pub async fn page(
    State(state): State<AppState>,
    render: Render,
    Query(q): Query<PageQuery>,
) -> Result<Response> {
    let vhosts = state.config.vhosts.clone();
    let lists = state.db.run(move |c| tenancy::lists(c, &vhosts)).await?;
    let form = PolicyForm {
        networks: lists.networks.join("\n"),
        upstream_hosts: lists.upstream_hosts.join("\n"),
        unix_sockets: lists.unix_sockets.join("\n"),
    };
    let saved = q.saved.is_some();
    show(
        &state,
        &render,
        form,
        FormErrors::default(),
        saved,
        StatusCode::OK,
    )
    .await
}

pub async fn save(
    State(state): State<AppState>,
    current: CurrentUser,
    client: ClientInfo,
    render: Render,
    Form(form): Form<PolicyForm>,
) -> Result<Response> {
    let lists = Lists {
        networks: lines(&form.networks),
        upstream_hosts: lines(&form.upstream_hosts),
        unix_sockets: lines(&form.unix_sockets),
        from_settings: true,
    };
    let mut errors = FormErrors::default();
    for (key, why) in lists.problems() {
        errors.add(key.field(), why);
    }
    if !errors.is_empty() {
        return show(
            &state,
            &render,
            form,
            errors,
            false,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let detail = format!(
        "tenant policy: networks [{}], host names [{}], unix sockets [{}]",
        lists.networks.join(", "),
        lists.upstream_hosts.join(", "),
        lists.unix_sockets.join(", ")
    );
    let (uid, email, origin) = (current.user.id, current.user.email.clone(), client.origin());
    state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            tenancy::save_lists(&tx, &lists)?;
            audit::record(
                &tx,
                &Event {
                    action: Action::SettingsChanged,
                    user_id: Some(uid),
                    email: Some(&email),
                    detail: &detail,
                },
                &origin,
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(render.redirect("/settings?saved=1"))
}
