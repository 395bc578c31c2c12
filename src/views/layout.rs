//! The page shell: head, top navigation, main area and the toast region.

use crate::web::assets;
use maud::{DOCTYPE, Markup, html};

/// htmx reads this instead of an inline script, so the CSP can forbid inline code.
/// Error responses are swapped (the server retargets them to the toast area), and a 422
/// re-renders the form in place with the reasons next to each field.
const HTMX_CONFIG: &str = r#"{"allowEval":false,"allowScriptTags":false,"includeIndicatorStyles":false,"selfRequestsOnly":true,"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},{"code":"422","swap":true},{"code":"[45]..","swap":true,"error":true}]}"#;

pub fn page(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                meta name="color-scheme" content="light dark";
                title { (title) " · Gatehouse" }
                link rel="icon" type="image/svg+xml" href=(assets::url("favicon.svg"));
                link rel="stylesheet" href=(assets::url("app.css"));
                script src=(assets::url(assets::HTMX)) defer {}
                script src=(assets::url(assets::HTMX_SSE)) defer {}
            }
            body {
                header .topbar {
                    a .brand href="/" { "Gatehouse" }
                    nav .nav aria-label="Main" {
                        a href="/" { "Home" }
                    }
                }
                main #main { (content) }
                div #toasts .toasts aria-live="polite" {}
            }
        }
    }
}
