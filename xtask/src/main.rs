//! `cargo xtask`: setup, and a thin launcher for the project's CLI.
fn main() {}
