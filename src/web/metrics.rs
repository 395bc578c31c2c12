//! `GET /metrics` of the hub: request latencies, deploys and pushes, each agent's state, and
//! live-log lines received, streamed and dropped. Who may read it: see [`crate::metrics`].

use super::AppState;
use super::agents::views_of;
use crate::metrics::{exposition, peer, refused};
use crate::views::agents::AgentState;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap};
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

const STATES: [(AgentState, &str); 6] = [
    (AgentState::NeverSeen, "never_seen"),
    (AgentState::Offline, "offline"),
    (AgentState::CaddyDown, "caddy_down"),
    (AgentState::InSync, "in_sync"),
    (AgentState::Drifted, "drifted"),
    (AgentState::ChangedOutside, "changed_outside"),
];

pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    if !crate::metrics::allowed(
        state.config.metrics.token.expose(),
        peer(&extensions),
        &headers,
    ) {
        return refused();
    }
    let mut registry = Registry::default();
    state.http_metrics.register(&mut registry);
    state.fleet.stats.register(&mut registry);
    state.log_hub.stats.register(&mut registry);

    // Agent state is read from the database at scrape time, so it is never stale.
    let up = Family::<AgentLabels, Gauge>::default();
    let in_sync = Family::<AgentLabels, Gauge>::default();
    let by_state = Family::<StateLabels, Gauge>::default();
    for (_, label) in STATES {
        by_state.get_or_create(&StateLabels { state: label }).set(0);
    }
    match views_of(&state).await {
        Ok(views) => {
            for view in views {
                let labels = AgentLabels {
                    agent: view.agent.name.clone(),
                };
                let label = STATES
                    .iter()
                    .find(|(s, _)| *s == view.state)
                    .map_or("unknown", |(_, l)| *l);
                by_state.get_or_create(&StateLabels { state: label }).inc();
                let online = view.agent.online && view.agent.caddy_reachable;
                up.get_or_create(&labels).set(i64::from(online));
                in_sync
                    .get_or_create(&labels)
                    .set(i64::from(view.state == AgentState::InSync));
            }
        }
        Err(e) => tracing::error!(error = %e, "metrics: reading agents"),
    }
    registry.register(
        "gatehouse_agent_up",
        "1 when the agent answers and reaches its Caddy",
        up,
    );
    registry.register(
        "gatehouse_agent_in_sync",
        "1 when the agent's Caddy runs exactly what the database says",
        in_sync,
    );
    registry.register("gatehouse_agents", "Agents by state", by_state);
    exposition(&registry)
}
