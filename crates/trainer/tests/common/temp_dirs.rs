//! Temporary directories that tests leave nothing of: each one is removed when the test binary exits, pass or fail
//! (the test harness ends with `exit`, which runs `atexit` handlers). Shared by the trainer, paligemma and cli
//! tests through `#[path]`.
use std::path::PathBuf;
use std::sync::{Mutex, Once};

static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn remove_all() {
    if let Ok(dirs) = DIRS.lock() {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// `<tmp>/<name>-<pid>`, empty, removed at exit.
pub fn temp_dir(name: &str) -> PathBuf {
    static HOOK: Once = Once::new();
    // SAFETY: registering a plain `extern "C" fn` with atexit(3).
    HOOK.call_once(|| unsafe {
        libc::atexit(remove_all);
    });
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    DIRS.lock().unwrap().push(dir.clone());
    dir
}
