//! `tide inspect`: the router weights of every token at every layer, read from the decoder's
//! per-layer hooks: JSON, a terminal heatmap, or an SVG heatmap.
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tide_gpu::inspect::{inspect, tokens_to_inspect};

use super::common::ModelArgs;

#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print one JSON object: tokens, pieces, k, weights[token][layer][slot] (slot K = NULL).
    #[arg(long)]
    pub json: bool,
    /// Also write the heatmap (memory share 1 - NULL per token and layer) as an SVG picture.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    pub text: String,
}

/// Cell shade for a level in [0, 1] of the colour scale (plain terminals and pipes).
fn shade(x: f32) -> char {
    [' ', '░', '▒', '▓', '█'][((x.clamp(0.0, 1.0) * 4.0).round()) as usize]
}

/// Printable form of a token piece (whitespace made visible).
fn show(p: &str) -> String {
    p.replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace(' ', "·")
}

pub fn run(a: InspectArgs) -> Result<()> {
    let m = a.model.load()?;
    let k = m.memory.as_ref().map_or(0, |m| m.k);
    let ids = tokens_to_inspect(&m.tokenizer, k, &a.model.name(), &a.text)?;
    let mut margs = a.model.clone();
    let ctx = ids.len().max(a.model.ctx.unwrap_or(0));
    margs.ctx = Some(ctx);
    let mut engine = margs.engine(&m)?;
    let ins = pollster::block_on(inspect(
        &mut engine,
        &m.tokenizer,
        &a.model.name(),
        &ids,
        ctx,
    ))?
    .with_counts(m.token_counts.as_deref());
    let (k, layers, pieces, weights) = (ins.k, ins.layers, &ins.pieces, &ins.weights);
    if let Some(path) = &a.svg {
        std::fs::write(path, svg(pieces, weights, k))
            .with_context(|| format!("writing --svg {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if a.json {
        println!("{}", serde_json::to_string(&ins)?);
        return Ok(());
    }
    let color = std::io::stdout().is_terminal();
    let range = share_range(weights, k);
    println!(
        "router weights, K = {k} blocks + NULL; a cell is one layer, darker = more memory (1 - NULL), \
         from {:.4} (lightest) to {:.4} (darkest)",
        range.0, range.1
    );
    println!(
        "{:>4} {:<16} layers 0..{}  NULL   top block",
        "#",
        "token",
        layers - 1
    );
    for (t, (p, tw)) in pieces.iter().zip(weights).enumerate() {
        let mut row = String::new();
        for s in tw {
            let d = level(1.0 - s[k], range);
            if color {
                let c = 255 - d;
                let _ = write!(row, "\x1b[48;2;{c};{c};255m \x1b[0m");
            } else {
                row.push(shade(d as f32 / 255.0));
            }
        }
        let null = tw.iter().map(|s| s[k]).sum::<f32>() / layers as f32;
        // The block with the most weight summed over layers.
        let top = (0..k)
            .max_by(|&x, &y| {
                let sx: f32 = tw.iter().map(|s| s[x]).sum();
                let sy: f32 = tw.iter().map(|s| s[y]).sum();
                sx.total_cmp(&sy)
            })
            .unwrap_or(0);
        let name: String = show(p).chars().take(16).collect();
        println!("{t:>4} {name:<16} {row}  {null:.2}   {top}");
    }
    Ok(())
}

/// The memory shares' range [lo, hi], widened so that it is never empty: the colour scale
/// spans the data (the committed model's shares sit within 0.9-0.999, which a fixed 0-1 scale
/// shows as one flat colour).
fn share_range(w: &[Vec<Vec<f32>>], k: usize) -> (f32, f32) {
    let shares = w.iter().flatten().map(|s| (1.0 - s[k]).clamp(0.0, 1.0));
    let lo = shares.clone().fold(f32::INFINITY, f32::min);
    let hi = shares.fold(f32::NEG_INFINITY, f32::max);
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-6 {
        return ((lo - 5e-7).max(0.0), (lo + 5e-7).min(1.0).max(lo + 1e-6));
    }
    (lo, hi)
}

/// 0 (lightest) ..= 255 (darkest) for a share within `range`.
fn level(mem: f32, (lo, hi): (f32, f32)) -> u8 {
    (255.0 * ((mem - lo) / (hi - lo)).clamp(0.0, 1.0)).round() as u8
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Heatmap of memory share (1 - NULL): tokens down, layers across, coloured over the data's
/// range with a legend; hovering a cell shows the token, the layer and every slot's weight.
fn svg(pieces: &[String], w: &[Vec<Vec<f32>>], k: usize) -> String {
    let layers = w.first().map_or(0, |t| t.len());
    let range = share_range(w, k);
    let (cell, left, top) = (18.0, 150.0, 64.0);
    let title = format!("memory share (1 - NULL weight), K = {k}; rows = tokens, columns = layers");
    // 11 px monospace: ~6.7 px a character; the legend bar (120 px + labels) sits on line 2.
    let text_w = 8.0 + 6.7 * title.chars().count() as f64;
    let width = (left + cell * layers as f64 + 20.0).max(text_w).max(330.0);
    let height = top + cell * pieces.len() as f64 + 20.0;
    let fill = |mem: f32| {
        let c = 255 - level(mem, range);
        format!("rgb({c},{c},255)")
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" font-family=\"monospace\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"4\" y=\"14\">{}</text>\n",
        xml(&title)
    );
    // Legend: the colour bar from the lowest share to the highest.
    let _ = writeln!(
        s,
        "<defs><linearGradient id=\"scale\"><stop offset=\"0\" stop-color=\"{}\"/><stop offset=\"1\" stop-color=\"{}\"/></linearGradient></defs>",
        fill(range.0),
        fill(range.1)
    );
    let _ = writeln!(
        s,
        "<text x=\"4\" y=\"34\">scale</text><text class=\"legend-min\" x=\"86\" y=\"34\" text-anchor=\"end\">{:.4}</text><rect x=\"90\" y=\"24\" width=\"120\" height=\"12\" fill=\"url(#scale)\" stroke=\"#888\"/><text class=\"legend-max\" x=\"214\" y=\"34\">{:.4}</text>",
        range.0, range.1
    );
    for l in 0..layers {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{l}</text>",
            left + cell * (l as f64 + 0.5),
            top - 6.0
        );
    }
    for (t, (p, tw)) in pieces.iter().zip(w).enumerate() {
        let y = top + cell * t as f64;
        let label = xml(&show(p).chars().take(18).collect::<String>());
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>",
            left - 6.0,
            y + cell * 0.7
        );
        for (l, slot) in tw.iter().enumerate() {
            let mem = (1.0 - slot[k]).clamp(0.0, 1.0);
            let mut tip = format!("token {t} '{}', layer {l}: memory {mem:.4}", xml(&show(p)));
            for (j, x) in slot.iter().enumerate() {
                if j == k {
                    let _ = write!(tip, ", NULL {x:.4}");
                } else {
                    let _ = write!(tip, ", block {j} {x:.4}");
                }
            }
            let _ = writeln!(
                s,
                "<rect x=\"{}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"{}\"><title>{tip}</title></rect>",
                left + cell * l as f64,
                fill(mem)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
