//! Expression support.

pub mod exprlang;
