//! llama.cpp's split GGUF models (`llama-gguf-split`, gguf-py's writer with a size or tensor
//! limit): one model's tensors spread over `NAME-00001-of-0000N.gguf` .. `NAME-0000N-of-0000N.gguf`.
//! The first part holds the model's metadata; every part says which it is (`split.no`, from 0)
//! and of how many (`split.count`), and the first how many tensors there are in all
//! (`split.tensors.count`). The parts join into one `GgufFile` whose tensors each keep their
//! own part's bytes, so nothing is copied.
use std::collections::HashSet;

use super::gguf::GgufFile;
use crate::error::{format_err, Result};

pub const SPLIT_NO: &str = "split.no";
pub const SPLIT_COUNT: &str = "split.count";
pub const SPLIT_TENSORS: &str = "split.tensors.count";

/// A split part's file name taken apart: ("NAME", part from 1, parts) for
/// "NAME-00002-of-00003.gguf"; None for any other name.
pub fn split_name(file_name: &str) -> Option<(&str, usize, usize)> {
    let s = file_name.strip_suffix(".gguf")?;
    let (rest, count) = s.rsplit_once("-of-")?;
    let (stem, no) = rest.rsplit_once('-')?;
    let num = |x: &str| {
        (x.len() >= 5 && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse::<usize>().ok())
            .flatten()
    };
    let (no, count) = (num(no)?, num(count)?);
    (!stem.is_empty() && (1..=count).contains(&no)).then_some((stem, no, count))
}

/// The file name of part `no` (from 1) of `count`, as llama.cpp names them.
pub fn part_name(stem: &str, no: usize, count: usize) -> String {
    format!("{stem}-{no:05}-of-{count:05}.gguf")
}

/// Every part's file name, first to last, from any one part's name.
pub fn part_names(file_name: &str) -> Option<Vec<String>> {
    let (stem, _, count) = split_name(file_name)?;
    Some((1..=count).map(|i| part_name(stem, i, count)).collect())
}

impl GgufFile {
    /// How many parts this file says its model is split into (1: a whole file).
    pub fn split_count(&self) -> usize {
        self.get(SPLIT_COUNT)
            .and_then(|v| v.as_u64())
            .map_or(1, |n| n as usize)
    }

    /// An error naming the file when it is one part of a split model, whose tensors alone do
    /// not make the model (a joined file has no split keys left).
    pub(crate) fn check_whole(&self) -> Result<()> {
        let count = self.split_count();
        if count <= 1 {
            return Ok(());
        }
        let no = self.get(SPLIT_NO).and_then(|v| v.as_u64()).unwrap_or(0) + 1;
        let first = part_names(file_of(&self.name))
            .map(|p| p[0].clone())
            .unwrap_or_else(|| format!("NAME-00001-of-{count:05}.gguf"));
        Err(format_err(
            &self.name,
            format!(
                "part {no} of a model split into {count} files (split.count): load it from its \
                 first part, {first}, with the other parts beside it"
            ),
        ))
    }

    /// Join the parts of a split model, given first to last, into one file: the first part's
    /// metadata (less the split keys) and every part's tensors. Each part must say it is the
    /// part at its place, of as many as were given, and the tensors must number what the
    /// first part says, each name once.
    pub fn join(parts: Vec<GgufFile>) -> Result<GgufFile> {
        let Some(first) = parts.first() else {
            return Err(format_err("split GGUF", "no parts given"));
        };
        let count = first.split_count();
        if parts.len() == 1 && count <= 1 {
            return Ok(parts.into_iter().next().unwrap());
        }
        if parts.len() != count {
            return Err(format_err(
                &first.name,
                format!(
                    "split.count says the model is in {count} files, but {} were given",
                    parts.len()
                ),
            ));
        }
        let mut names = HashSet::new();
        for (i, p) in parts.iter().enumerate() {
            let no = p.get(SPLIT_NO).and_then(|v| v.as_u64());
            if no != Some(i as u64) {
                return Err(format_err(
                    &p.name,
                    format!(
                        "split.no is {no:?} where part {} of {count} belongs (split.no {i})",
                        i + 1
                    ),
                ));
            }
            if p.split_count() != count {
                return Err(format_err(
                    &p.name,
                    format!(
                        "split.count is {}, but the first part {} says {count}",
                        p.split_count(),
                        first.name
                    ),
                ));
            }
            for t in &p.tensors {
                if !names.insert(t.info.name.as_str()) {
                    return Err(format_err(
                        &p.name,
                        format!("tensor '{}' is also in an earlier part", t.info.name),
                    ));
                }
            }
        }
        let total = first.get(SPLIT_TENSORS).and_then(|v| v.as_u64());
        if total != Some(names.len() as u64) {
            return Err(format_err(
                &first.name,
                format!(
                    "the {count} parts hold {} tensors, but split.tensors.count says {total:?}",
                    names.len()
                ),
            ));
        }
        drop(names);
        let mut parts = parts.into_iter();
        let mut whole = parts.next().unwrap();
        whole.metadata.retain(|k, _| !k.starts_with("split."));
        for p in parts {
            whole.tensors.extend(p.tensors);
        }
        Ok(whole)
    }
}

/// The file name at the end of a path or URL.
fn file_of(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names() {
        assert_eq!(
            split_name("Qwen2.5-3B-00002-of-00003.gguf"),
            Some(("Qwen2.5-3B", 2, 3))
        );
        assert_eq!(split_name("m-00001-of-00001.gguf"), Some(("m", 1, 1)));
        for bad in [
            "m.gguf",
            "m-00004-of-00003.gguf",
            "m-00000-of-00003.gguf",
            "m-1-of-3.gguf",
            "-00001-of-00002.gguf",
            "m-00001-of-00002.bin",
        ] {
            assert_eq!(split_name(bad), None, "{bad}");
        }
        assert_eq!(
            part_names("a/b-00002-of-00002.gguf".rsplit('/').next().unwrap()).unwrap(),
            ["b-00001-of-00002.gguf", "b-00002-of-00002.gguf"]
        );
    }
}
