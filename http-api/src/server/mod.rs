//! The HTTP service (`opml serve`): one file per resource.

pub mod app;
pub mod error;
pub mod health;
pub mod inputs;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod range;
pub mod state;
pub mod tasks;
pub mod traces;
pub mod worker;
