//! Browser journeys in real Chromium. One browser serves every journey (starting one costs
//! about a second); journeys run one after another under this small runner, which prints
//! libtest-style results and accepts a name filter: `cargo test --test browser -- setup`.

mod accounts;
mod agents;
// The support shared with the integration tests (tests/it); the journeys use part of it.
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
mod driver;
mod history;
mod logs;
mod setup;
mod vhosts;

use driver::Browser;
use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

type JourneyFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;
type Journey = for<'a> fn(&'a Browser) -> JourneyFuture<'a>;

/// Every journey, by name. Each UI issue adds its own here.
const JOURNEYS: &[(&str, Journey)] = &[
    (
        "accounts_enrol_then_sign_in_with_totp_and_a_backup_code",
        |b| Box::pin(accounts::enrol_then_sign_in_with_totp_and_a_backup_code(b)),
    ),
    ("accounts_users_page_fits_a_phone", |b| {
        Box::pin(accounts::users_page_fits_a_phone(b))
    }),
    ("setup_creates_the_first_admin_in_a_browser", |b| {
        Box::pin(setup::creates_the_first_admin(b))
    }),
    ("setup_page_fits_a_phone_without_sideways_scroll", |b| {
        Box::pin(setup::fits_a_phone(b))
    }),
    ("vhosts_every_template_with_the_live_preview", |b| {
        Box::pin(vhosts::every_template_with_the_live_preview(b))
    }),
    ("vhosts_a_refused_form_keeps_its_input", |b| {
        Box::pin(vhosts::a_refused_form_keeps_its_input(b))
    }),
    ("vhosts_toggle_on_a_phone", |b| {
        Box::pin(vhosts::toggle_on_a_phone(b))
    }),
    ("agents_add_an_agent_and_sync_all", |b| {
        Box::pin(agents::add_an_agent_and_sync_all(b))
    }),
    ("logs_requests_appear_live_on_a_phone", |b| {
        Box::pin(logs::requests_appear_live_on_a_phone(b))
    }),
    ("vhosts_revert_from_the_changelog", |b| {
        Box::pin(vhosts::revert_from_the_changelog(b))
    }),
    ("vhosts_an_admin_overrides_an_overlap_only_knowingly", |b| {
        Box::pin(vhosts::an_admin_overrides_an_overlap_only_knowingly(b))
    }),
    (
        "history_a_change_pending_on_an_offline_agent_clears_when_it_returns",
        |b| Box::pin(history::a_change_pending_on_an_offline_agent_clears_when_it_returns(b)),
    ),
    (
        "history_a_slow_toggle_shows_its_progress_then_the_row",
        |b| Box::pin(history::a_slow_toggle_shows_its_progress_then_the_row(b)),
    ),
];

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in JOURNEYS {
            println!("{name}: test");
        }
        return std::process::ExitCode::SUCCESS;
    }
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let selected: Vec<_> = JOURNEYS
        .iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (passed, failed) = runtime.block_on(async {
        println!("\nrunning {} browser journeys", selected.len());
        if selected.is_empty() {
            return (0, 0);
        }
        let browser = match Browser::start().await {
            Ok(b) => b,
            Err(e) => {
                println!("cannot start the browser: {e:#}");
                return (0, selected.len());
            }
        };
        let (mut passed, mut failed) = (0, 0);
        for (name, journey) in &selected {
            let outcome = AssertUnwindSafe(journey(&browser)).catch_unwind().await;
            match outcome {
                Ok(Ok(())) => {
                    println!("test {name} ... ok");
                    passed += 1;
                }
                Ok(Err(e)) => {
                    println!("test {name} ... FAILED\n  {e:#}");
                    failed += 1;
                }
                Err(_) => {
                    println!("test {name} ... FAILED (panicked)");
                    failed += 1;
                }
            }
            if let Err(e) = browser.reset().await {
                println!("cannot reset the browser between journeys: {e:#}");
            }
        }
        browser.close().await;
        (passed, failed)
    });
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out\n"
    );
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
