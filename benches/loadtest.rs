//! `cargo bench --bench loadtest`: the load-test harness (crate `loadlab-loadtest`)
//! over the release build of this package's `loadlab` binary, which cargo builds
//! for this target. Flags after `--`: see `docs/LOADTEST.md`.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    loadlab_loadtest::main(
        Path::new(env!("CARGO_BIN_EXE_loadlab")),
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
}
