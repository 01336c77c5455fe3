//! `tide` subcommands. Each returns a Result; errors print one clear line and exit non-zero.
mod api;
mod api_worker;
mod backbone;
mod bench;
mod bench_memory;
mod bench_seqs;
mod bench_variants;
mod chat;
mod common;
mod compress;
mod env;
mod eval;
mod file_hashes;
mod generate;
mod inspect;
mod kernels;
mod metrics;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tide",
    version,
    about = "Run TIDE and LLaMA-family language models on any GPU (wgpu)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text after a prompt, streaming it to stdout.
    Generate(generate::GenerateArgs),
    /// Print the token ids of a text as JSON.
    Tokenize(common::TokenizeArgs),
    /// Interactive chat using the model's chat template.
    Chat(chat::ChatArgs),
    /// List GPU adapters with backend, limits and features.
    Devices,
    /// Measure prefill and decode speed.
    Bench(bench::BenchArgs),
    /// Router weights of every token at every layer (JSON, terminal or SVG heatmap).
    Inspect(inspect::InspectArgs),
    /// Perplexity over a text file, and cross-entropy by token-frequency decile.
    Eval(eval::EvalArgs),
    /// Perplexity with each layer's memory injection removed in turn.
    Ablate(eval::AblateArgs),
    /// The WGSL kernel variants the decoder builds for a model on this adapter.
    Kernels(kernels::KernelsArgs),
    /// Re-quantise (4/8/16-bit) and SVD-factor a model's memory tables into a new model.
    Compress(compress::CompressArgs),
    /// Serve the web pages, the model files (HTTP Range) and an OpenAI-compatible API on
    /// 127.0.0.1.
    Serve(serve::ServeArgs),
}

pub fn run() -> i32 {
    env::ensure_runtime_dir();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Generate(a) => generate::run(a),
        Cmd::Tokenize(a) => common::tokenize(a),
        Cmd::Chat(a) => chat::run(a),
        Cmd::Devices => common::devices(),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Eval(a) => eval::run(a),
        Cmd::Ablate(a) => eval::ablate(a),
        Cmd::Kernels(a) => kernels::run(a),
        Cmd::Serve(a) => serve::run(a),
        Cmd::Compress(a) => compress::run(a),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
