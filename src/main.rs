//! The `tide` command line (native only: the browser uses the library through wasm-bindgen).
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    std::process::exit(tide_gpu_cli::run());
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
#[path = "cli/mod.rs"]
mod tide_gpu_cli;
