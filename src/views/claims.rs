//! How a refused claim on a name shows in the site form: the reason beside the domain field
//! (put there by [`crate::sites`]) and, for an admin over another owner's site, the warning
//! beside an "I understand, save it anyway" box (`allow_overlap`). The API reports the same
//! two fields.

use crate::domain::FieldErrors;
use crate::sites::ALLOW_OVERLAP;
use maud::{Markup, html};
use std::collections::BTreeMap;

/// The override box, for an admin, once an overlap was found (or the box was ticked, so a
/// refusal for another reason keeps it as typed). Never shown to a `user`.
pub fn overlap_override(
    admin: bool,
    values: &BTreeMap<String, String>,
    errors: &FieldErrors,
) -> Markup {
    let warning = errors.get(ALLOW_OVERLAP);
    let ticked = values.contains_key(ALLOW_OVERLAP);
    html! {
        @if admin && (warning.is_some() || ticked) {
            div .field .check .has-error[warning.is_some()] #overlap-override {
                @if let Some(warning) = warning {
                    p .field-error .overlap-warning #allow_overlap-error role="alert" { (warning) }
                }
                label {
                    input #allow_overlap type="checkbox" name=(ALLOW_OVERLAP) value="on" checked[ticked];
                    " I understand, save it anyway"
                }
            }
        }
    }
}
