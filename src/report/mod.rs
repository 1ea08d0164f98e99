//! Events in, output out. The format is chosen by a pure function of what
//! was asked and what the world looks like ([`format::choose`],
//! [`Output::choose`]).

#[cfg(test)]
pub(crate) mod fixtures;
pub mod format;
pub mod human;
pub mod json;
pub mod junit;
pub mod output;
pub mod plain;
pub mod reporter;

pub use format::{choose, Format, Requested, World};
pub use output::Output;
pub use reporter::{drive, drive_output};
