//! `deploy.yml`: the raw serde mirror, its validation, and the model.

pub(crate) mod checks;
pub mod duration;
pub mod error;
pub mod find;
pub mod host_range;
pub mod inventory;
pub mod model;
pub mod raw;
pub mod schema;
pub(crate) mod spans;
pub mod validate;

pub use duration::parse_duration;
pub use error::ConfigError;
pub use model::*;
pub use validate::{
    load, parse, parse_with, ParseContext, AFTER_FAILED, AFTER_FINISHED, BUILTIN_STEPS,
};
