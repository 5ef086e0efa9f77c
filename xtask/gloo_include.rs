//! Where Gloo's headers are (the torch wheel's c10d headers include them but do not ship them): `$GLOO_INCLUDE`, else
//! the system include directories. Shared by crates/distributed's build script, which compiles against them, and
//! `cargo xtask setup`, which says how to install them when they are missing.
use std::path::PathBuf;

/// The include directory holding `gloo/config.h`, if any.
pub fn gloo_include() -> Option<PathBuf> {
    let from_env = std::env::var_os("GLOO_INCLUDE").map(PathBuf::from);
    let system = ["/usr/include", "/usr/local/include"].map(PathBuf::from);
    from_env.into_iter().chain(system).find(|d| d.join("gloo/config.h").is_file())
}
