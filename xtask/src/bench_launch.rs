//! `cargo xtask bench train|generate|fullsize|attention|ddp`: the benchmarks against transformers + PEFT (and `ddp`'s
//! against torch.distributed) need libtorch, so they run in `pgrs bench …` (built and launched by
//! `launcher::run_cli` after `setup::ensure`). The reference side is the venv `cargo xtask setup` made (it needs
//! `pip install transformers==5.23.0 peft==0.21.2` there); `--python` or `$PALIGEMMA_PYTHON` choose another
//! interpreter.
use crate::{launcher, setup};
use anyhow::Result;

pub fn run(name: &str, args: &[String]) -> Result<i32> {
    let mut forwarded = vec![name.to_string()];
    forwarded.extend(args.iter().cloned());
    let chosen = args.iter().any(|a| a == "--python" || a.starts_with("--python="))
        || std::env::var_os("PALIGEMMA_PYTHON").is_some();
    let venv = setup::venv_python();
    if !chosen && venv.is_file() {
        forwarded.push("--python".into());
        forwarded.push(venv.display().to_string());
    }
    launcher::run_cli("bench", &forwarded)
}
