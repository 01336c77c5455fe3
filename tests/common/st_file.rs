//! Safetensors files as editable lists of tensors, for tests that break one thing in a good
//! file and check the error.
use std::path::PathBuf;

pub struct StFile {
    pub tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
    pub meta: std::collections::HashMap<String, String>,
}

pub fn read_st(path: &std::path::Path) -> StFile {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    StFile {
        tensors,
        meta: meta.metadata().clone().unwrap_or_default(),
    }
}

pub fn write_st(f: &StFile, name: &str) -> PathBuf {
    let views: Vec<(String, safetensors::tensor::TensorView)> = f
        .tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, Some(f.meta.clone())).unwrap();
    let p = std::env::temp_dir().join(format!("tide-bad-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

pub fn tensor<'a>(
    f: &'a mut StFile,
    name: &str,
) -> &'a mut (String, safetensors::Dtype, Vec<usize>, Vec<u8>) {
    f.tensors.iter_mut().find(|t| t.0 == name).unwrap()
}
