//! Events in, output out. The format is chosen by a pure function of what
//! was asked and what the world looks like ([`format::choose`]).

pub mod format;
pub mod human;
pub mod plain;
pub mod reporter;

pub use format::{choose, Format, Requested, World};
pub use reporter::drive;
