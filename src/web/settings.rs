//! The settings page (admin): the tenant policy that users' sites are judged by, and the
//! rollout policy changes reach the agents by.

use super::{AppState, ClientInfo, CurrentUser, Form, Render};
use crate::db::audit::{self, Action, Event};
use crate::domain::FieldErrors;
use crate::error::Result;
use crate::fleet::rollout;
use crate::tenancy::{self, Lists};
use crate::views::settings::{PolicyForm, RolloutForm};
use crate::views::{self};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PageQuery {
    saved: Option<String>,
    /// The rollout policy was just saved.
    rollout_saved: Option<String>,
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
    errors: FieldErrors,
    saved: bool,
    status: StatusCode,
) -> Result<Response> {
    show_with(state, render, form, errors, saved, status, Shown::default()).await
}

/// What the page shows besides the tenant policy form.
#[derive(Default)]
struct Shown {
    /// Users' sites judged against the lists, once an admin asked.
    review: Option<tenancy::Review>,
    /// A refused rollout policy, as typed, with its reasons (else the stored one is shown).
    rollout: Option<(RolloutForm, FieldErrors)>,
    rollout_saved: bool,
}

async fn show_with(
    state: &AppState,
    render: &Render,
    form: PolicyForm,
    errors: FieldErrors,
    saved: bool,
    status: StatusCode,
    shown: Shown,
) -> Result<Response> {
    let Shown {
        review,
        rollout,
        rollout_saved,
    } = shown;
    let (rollout, rollout_errors) = match rollout {
        Some(refused) => refused,
        None => (
            RolloutForm::of(&rollout::policy(&state.db).await?),
            FieldErrors::default(),
        ),
    };
    let (policy, _) = tenancy::policy(&state.db, &state.config).await?;
    let vhosts = state.config.vhosts.clone();
    let from_settings = state
        .db
        .run(move |c| Ok(tenancy::lists(c, &vhosts)?.from_settings))
        .await?;
    let page = views::settings::Page {
        rollout: &rollout,
        rollout_errors: &rollout_errors,
        rollout_saved,
        form: &form,
        errors: &errors,
        from_settings,
        saved,
        reserved: &policy.reserved,
        review: review.as_ref(),
    };
    Ok(render.page_with_status(
        status,
        "Settings",
        views::settings::page(&render.ctx, &page),
    ))
}

/// The lists in force, as the form shows them.
async fn stored_form(state: &AppState) -> Result<PolicyForm> {
    let vhosts = state.config.vhosts.clone();
    let lists = state.db.run(move |c| tenancy::lists(c, &vhosts)).await?;
    Ok(PolicyForm {
        networks: lists.networks.join("\n"),
        upstream_hosts: lists.upstream_hosts.join("\n"),
        unix_sockets: lists.unix_sockets.join("\n"),
    })
}

pub async fn page(
    State(state): State<AppState>,
    render: Render,
    Query(q): Query<PageQuery>,
) -> Result<Response> {
    let form = stored_form(&state).await?;
    let saved = q.saved.is_some();
    let errors = FieldErrors::default();
    let shown = Shown {
        rollout_saved: q.rollout_saved.is_some(),
        ..Shown::default()
    };
    show_with(&state, &render, form, errors, saved, StatusCode::OK, shown).await
}

/// Judges every enabled site of a `user` against the policy as it stands, and lists those
/// that break it (after an upgrade, or after closing a network).
pub async fn review(State(state): State<AppState>, render: Render) -> Result<Response> {
    let review = tenancy::review(&state.db, &state.fleet, &state.config).await?;
    let form = stored_form(&state).await?;
    let errors = FieldErrors::default();
    show_with(
        &state,
        &render,
        form,
        errors,
        false,
        StatusCode::OK,
        Shown {
            review: Some(review),
            ..Shown::default()
        },
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
    let mut errors = FieldErrors::default();
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
    let save = move |tx: &rusqlite::Transaction<'_>| tenancy::save_lists(tx, &lists);
    save_audited(&state, &current, &client, detail, save).await?;
    Ok(render.redirect("/settings?saved=1"))
}

/// Writes a setting with `write` and audits it as `detail`, in one transaction.
async fn save_audited(
    state: &AppState,
    current: &CurrentUser,
    client: &ClientInfo,
    detail: String,
    write: impl FnOnce(&rusqlite::Transaction<'_>) -> std::result::Result<(), crate::db::DbError>
    + Send
    + 'static,
) -> Result<()> {
    let (user, origin) = (current.user.clone(), client.origin());
    state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            write(&tx)?;
            let event = Event::about(&user, Action::SettingsChanged, &detail);
            audit::record(&tx, &event, &origin)?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(())
}

/// Saves the rollout policy; a refused one is shown again as typed, each reason beside its
/// field.
pub async fn save_rollout(
    State(state): State<AppState>,
    current: CurrentUser,
    client: ClientInfo,
    render: Render,
    Form(form): Form<RolloutForm>,
) -> Result<Response> {
    let policy = match form.policy() {
        Ok(policy) => policy,
        Err(errors) => {
            let tenant = stored_form(&state).await?;
            return show_with(
                &state,
                &render,
                tenant,
                FieldErrors::default(),
                false,
                StatusCode::UNPROCESSABLE_ENTITY,
                Shown {
                    rollout: Some((form, errors)),
                    ..Shown::default()
                },
            )
            .await;
        }
    };
    let detail = format!(
        "rollout policy: {}, slower past {}x and {} ms",
        if policy.canary_first {
            "canary first"
        } else {
            "all agents at once"
        },
        policy.slow_factor,
        policy.slow_floor_ms
    );
    save_audited(&state, &current, &client, detail, move |tx| policy.save(tx)).await?;
    Ok(render.redirect("/settings?rollout_saved=1#rollout"))
}
