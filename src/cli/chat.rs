use std::io::{BufRead, Write};

use anyhow::Result;
use clap::Args;
use tide_gpu::generate::{generate, render_chat};

use super::common::ModelArgs;
use super::generate::SamplingArgs;

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
}

pub fn run(a: ChatArgs) -> Result<()> {
    let mut sampler = a.sampling.sampler()?;
    let m = a.model.load()?;
    let ctx = a.model.ctx_len(&m)?;
    let mut engine = a.model.engine(&m)?;
    let template = m.tokenizer.chat_template.as_deref();
    let mut msgs: Vec<(String, String)> = Vec::new();
    if let Some(s) = &a.system {
        msgs.push(("system".into(), s.clone()));
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    eprintln!(
        "(type a message; an empty line or end of input quits; sampling: {})",
        sampler.cfg.describe()
    );
    loop {
        print!("> ");
        out.flush().ok();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        msgs.push(("user".into(), line.trim_end().to_string()));
        let ids = m.tokenizer.encode(&render_chat(template, &msgs), true)?;
        let g = generate(
            &mut engine,
            &m.tokenizer,
            &ids,
            a.max_tokens,
            &mut sampler,
            ctx,
            |s| {
                print!("{s}");
                out.flush().ok();
            },
        )?;
        println!();
        msgs.push(("assistant".into(), g.text.trim().to_string()));
    }
    Ok(())
}
