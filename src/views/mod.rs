//! Maud views. Views are plain functions returning `Markup`; a full page is the layout
//! around the very fragment that htmx swaps in.

pub mod errors;
pub mod forms;
pub mod home;
pub mod layout;
pub mod setup;
