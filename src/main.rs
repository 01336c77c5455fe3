//! The `tide` command line.
fn main() {
    std::process::exit(tide_gpu_cli::run());
}

#[path = "cli/mod.rs"]
mod tide_gpu_cli;
