//! Form building blocks: per-field errors and a labelled input that shows its reason.

use crate::domain::FieldErrors;
use maud::{Markup, html};

/// The whole-form error, if any, as an alert box.
pub fn form_alert(errors: &FieldErrors) -> Markup {
    html! {
        @if let Some(message) = errors.form_error() {
            p .notice .error #form-error role="alert" { (message) }
        }
    }
}

/// One labelled input. The value is shown again as typed; the reason sits under it.
pub struct Field<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub autocomplete: &'a str,
    pub hint: Option<&'a str>,
    pub extra: Option<(&'a str, &'a str)>,
    pub required: bool,
}

impl<'a> Field<'a> {
    pub fn new(name: &'a str, label: &'a str) -> Self {
        Self {
            name,
            label,
            kind: "text",
            value: "",
            autocomplete: "off",
            hint: None,
            extra: None,
            required: true,
        }
    }
    /// May be left empty (fields are required unless they say so).
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }
    pub fn kind(mut self, kind: &'a str) -> Self {
        self.kind = kind;
        self
    }
    pub fn value(mut self, value: &'a str) -> Self {
        self.value = value;
        self
    }
    pub fn autocomplete(mut self, autocomplete: &'a str) -> Self {
        self.autocomplete = autocomplete;
        self
    }
    /// `inputmode` and `pattern`-like helpers for phones: e.g. ("inputmode", "numeric").
    pub fn inputmode(mut self, mode: &'a str) -> Self {
        self.extra = Some(("inputmode", mode));
        self
    }
    pub fn hint(mut self, hint: &'a str) -> Self {
        self.hint = Some(hint);
        self
    }

    pub fn render(&self, errors: &FieldErrors) -> Markup {
        let error = errors.get(self.name);
        let error_id = format!("{}-error", self.name);
        let hint_id = format!("{}-hint", self.name);
        let described = match (error.is_some(), self.hint.is_some()) {
            (true, _) => Some(error_id.clone()),
            (false, true) => Some(hint_id.clone()),
            (false, false) => None,
        };
        html! {
            div .field .has-error[error.is_some()] {
                label for=(self.name) { (self.label) }
                input id=(self.name) name=(self.name) type=(self.kind) value=(self.value)
                    autocomplete=(self.autocomplete) required[self.required]
                    inputmode=[self.extra.map(|(_, m)| m)]
                    aria-invalid=[error.map(|_| "true")] aria-describedby=[described];
                @if let Some(hint) = self.hint {
                    p .hint id=(hint_id) { (hint) }
                }
                @if let Some(error) = error {
                    p .field-error id=(error_id) role="alert" { (error) }
                }
            }
        }
    }
}
