//! WGSL sources (embedded, or read from a folder) and a small preprocessor (#include,
//! #if/#else/#endif, #for, {{KEY}}) that expands one variant of a shader. kernel.rs compiles it.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

const SOURCES: &[(&str, &str)] = &[
    ("common", include_str!("../../shaders/common.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    (
        "matmul_epilogue",
        include_str!("../../shaders/matmul_epilogue.wgsl"),
    ),
    (
        "matmul_bindings",
        include_str!("../../shaders/matmul_bindings.wgsl"),
    ),
    ("matvec", include_str!("../../shaders/matvec.wgsl")),
    (
        "matvec_rows",
        include_str!("../../shaders/matvec_rows.wgsl"),
    ),
    ("attention", include_str!("../../shaders/attention.wgsl")),
    ("head_norm", include_str!("../../shaders/head_norm.wgsl")),
    ("lime", include_str!("../../shaders/lime.wgsl")),
    ("engram", include_str!("../../shaders/engram.wgsl")),
    ("embed", include_str!("../../shaders/embed.wgsl")),
    ("sample", include_str!("../../shaders/sample.wgsl")),
    ("memory", include_str!("../../shaders/memory.wgsl")),
    ("router", include_str!("../../shaders/router.wgsl")),
    ("bandwidth", include_str!("../../shaders/bandwidth.wgsl")),
    (
        "access_costs",
        include_str!("../../shaders/access_costs.wgsl"),
    ),
    ("quant_f32", include_str!("../../shaders/quant_f32.wgsl")),
    ("quant_f16", include_str!("../../shaders/quant_f16.wgsl")),
    ("quant_bf16", include_str!("../../shaders/quant_bf16.wgsl")),
    ("quant_q8_0", include_str!("../../shaders/quant_q8_0.wgsl")),
    ("quant_q4_0", include_str!("../../shaders/quant_q4_0.wgsl")),
    ("quant_q4_1", include_str!("../../shaders/quant_q4_1.wgsl")),
    ("quant_q5", include_str!("../../shaders/quant_q5.wgsl")),
    ("quant_q5_0", include_str!("../../shaders/quant_q5_0.wgsl")),
    ("quant_q5_1", include_str!("../../shaders/quant_q5_1.wgsl")),
    ("quant_bits", include_str!("../../shaders/quant_bits.wgsl")),
    ("quant_q4_k", include_str!("../../shaders/quant_q4_k.wgsl")),
    ("quant_q5_k", include_str!("../../shaders/quant_q5_k.wgsl")),
    ("quant_q6_k", include_str!("../../shaders/quant_q6_k.wgsl")),
    ("quant_tex", include_str!("../../shaders/quant_tex.wgsl")),
    ("weights", include_str!("../../shaders/weights.wgsl")),
];

/// Flags (for #if) and values (for {{KEY}}); a flag is a key whose value is "1".
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Defines(pub BTreeMap<String, String>);

impl Defines {
    pub fn new() -> Defines {
        Defines::default()
    }
    pub fn set(mut self, k: &str, v: impl ToString) -> Defines {
        self.0.insert(k.to_string(), v.to_string());
        self
    }
    pub fn flag(self, k: &str, on: bool) -> Defines {
        if on {
            self.set(k, 1)
        } else {
            self
        }
    }

    /// The defines `keep` accepts, in key order, as `FLAG` for flags and `KEY=value` otherwise
    /// (kernel labels and file names).
    pub fn tags(&self, keep: impl Fn(&str, &str) -> bool) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| keep(k, v))
            .map(|(k, v)| {
                if v == "1" {
                    k.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect()
    }
}

/// A shader's text: from `dir` when given (a development aid: edit shaders without rebuilding),
/// else the copy compiled into the binary.
fn source(name: &str, dir: Option<&Path>) -> Result<Cow<'static, str>> {
    if let Some(dir) = dir {
        let p = dir.join(format!("{name}.wgsl"));
        return std::fs::read_to_string(&p)
            .map(Into::into)
            .map_err(|e| Error::Gpu(format!("{}: {e}", p.display())));
    }
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| (*s).into())
        .ok_or_else(|| Error::Gpu(format!("no shader named '{name}'")))
}

/// Expand one shader: substitutions first (so includes can be chosen by a define), then
/// conditionals and includes, recursively.
pub fn preprocess(name: &str, defs: &Defines, dir: Option<&Path>) -> Result<String> {
    let mut out = String::new();
    expand(name, defs, dir, &mut out, 0)?;
    Ok(out)
}

fn substitute(line: &str, defs: &Defines, name: &str) -> Result<String> {
    let mut s = String::new();
    let mut rest = line;
    while let Some(a) = rest.find("{{") {
        let b = rest[a..]
            .find("}}")
            .ok_or_else(|| Error::Gpu(format!("{name}: unclosed {{{{")))?
            + a;
        let key = &rest[a + 2..b];
        let v = defs
            .0
            .get(key)
            .ok_or_else(|| Error::Gpu(format!("{name}: no value for {{{{{key}}}}}")))?;
        s.push_str(&rest[..a]);
        s.push_str(v);
        rest = &rest[b + 2..];
    }
    s.push_str(rest);
    Ok(s)
}

fn expand(
    name: &str,
    defs: &Defines,
    dir: Option<&Path>,
    out: &mut String,
    depth: u32,
) -> Result<()> {
    if depth > 8 {
        return Err(Error::Gpu(format!("{name}: includes nested too deep")));
    }
    let src = source(name, dir)?;
    let lines: Vec<&str> = src.lines().collect();
    expand_lines(name, &lines, defs, dir, out, depth)
}

/// `#for K in 0..N` ... `#endfor` repeats its body N times with {{K}} = 0..N-1 (N may be a
/// {{KEY}}); the generated code then has no loops with run-time indices into private arrays.
fn expand_lines(
    name: &str,
    lines: &[&str],
    defs: &Defines,
    dir: Option<&Path>,
    out: &mut String,
    depth: u32,
) -> Result<()> {
    // Stack of (this branch active, some branch taken) for #if nesting.
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        i += 1;
        let t = raw.trim();
        let active = stack.iter().all(|&(a, _)| a);
        if let Some(k) = t.strip_prefix("#if ") {
            // `#if KEY` or `#if !KEY`.
            let k = k.trim();
            let (neg, key) = k
                .strip_prefix('!')
                .map_or((false, k), |key| (true, key.trim()));
            let on = defs.0.get(key).is_some_and(|v| v == "1") != neg;
            stack.push((on, on));
            continue;
        }
        if t == "#else" {
            let top = stack
                .last_mut()
                .ok_or_else(|| Error::Gpu(format!("{name}: #else without #if")))?;
            *top = (!top.1, true);
            continue;
        }
        if t == "#endif" {
            stack
                .pop()
                .ok_or_else(|| Error::Gpu(format!("{name}: #endif without #if")))?;
            continue;
        }
        if let Some(spec) = t.strip_prefix("#for ") {
            let start = i;
            let mut nest = 1;
            while i < lines.len() {
                let l = lines[i].trim();
                if l.starts_with("#for ") {
                    nest += 1;
                } else if l == "#endfor" {
                    nest -= 1;
                    if nest == 0 {
                        break;
                    }
                }
                i += 1;
            }
            if i >= lines.len() {
                return Err(Error::Gpu(format!("{name}: #for without #endfor")));
            }
            let body = &lines[start..i];
            i += 1;
            if !active {
                continue;
            }
            let spec = substitute(spec, defs, name)?;
            let (var, range) = spec
                .split_once(" in ")
                .ok_or_else(|| Error::Gpu(format!("{name}: bad #for '{spec}'")))?;
            let n: usize = range
                .trim()
                .strip_prefix("0..")
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| Error::Gpu(format!("{name}: bad #for range '{range}'")))?;
            for k in 0..n {
                let d = defs.clone().set(var.trim(), k);
                expand_lines(name, body, &d, dir, out, depth)?;
            }
            continue;
        }
        if !active {
            continue;
        }
        let line = substitute(raw, defs, name)?;
        if let Some(inc) = line.trim().strip_prefix("#include ") {
            expand(inc.trim().trim_matches('"'), defs, dir, out, depth + 1)?;
            continue;
        }
        out.push_str(&line);
        out.push('\n');
    }
    if !stack.is_empty() {
        return Err(Error::Gpu(format!("{name}: unclosed #if")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_and_if_not() {
        let lines = [
            "#if A", "a", "#else", "not a", "#endif", "#if !A", "b", "#endif",
        ];
        let run = |on: bool| {
            let mut out = String::new();
            let defs = Defines::new().flag("A", on);
            expand_lines("t", &lines, &defs, None, &mut out, 0).unwrap();
            out.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        assert_eq!(run(true), "a");
        assert_eq!(run(false), "not a b");
    }
}
