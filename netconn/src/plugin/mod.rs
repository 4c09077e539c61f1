//! The Nagios/Icinga plugin: the check's report and the plugin conventions.

pub mod args;
pub mod check;
pub mod nagios;
