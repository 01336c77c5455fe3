use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use clap::Args;
use tide_gpu::generate::generate;

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
    /// The chat template: a Jinja file, or `chatml`. Default: the model's own
    /// (tokenizer.chat_template), ChatML when it has none.
    #[arg(long, value_name = "FILE|chatml")]
    pub chat_template: Option<String>,
}

pub fn run(a: ChatArgs) -> Result<()> {
    let mut sampler = a.sampling.sampler()?;
    let m = a.model.load()?;
    let ctx = a.model.ctx_len(&m)?;
    let mut m = m;
    match a.chat_template.as_deref() {
        None => {}
        Some("chatml") => m.model.tokenizer.chat_template = None,
        Some(path) => {
            let t = std::fs::read_to_string(path)
                .with_context(|| format!("--chat-template {path}: cannot read the template"))?;
            m.model.tokenizer.chat_template = Some(t);
        }
    }
    // A template that cannot render says so before the first message.
    m.tokenizer
        .chat_prompt(&[("user".into(), "hello".into())])
        .with_context(|| format!("{}: the chat template does not render", m.source))?;
    let mut engine = a.model.engine(&m)?;
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
        let prompt = match m.tokenizer.chat_prompt(&msgs) {
            Ok(p) => p,
            Err(e) => {
                // E.g. a template that refuses a role or an order of turns: say why, keep going.
                eprintln!("error: {e}");
                msgs.pop();
                continue;
            }
        };
        let ids = m.tokenizer.encode(&prompt, true)?;
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
