//! Compiled kernels: a pipeline, the explicit bind-group layout its variants share, and its
//! bindings by name. A kernel spec names each binding after the shader's variable; the names
//! and kinds are checked against the WGSL when the pipeline is built, and bind groups are made
//! by name, so a binding added to a shader is one edit that the build-time check guides.
use std::collections::HashMap;
use std::path::Path;

use super::shader::{preprocess, Defines};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
    /// An rgba32uint texture (weights, or rows mirrored from a buffer).
    Texture,
    /// A write-only rgba32uint storage texture (the K/V cache on CPU adapters).
    StorageTexture,
}

/// One binding of a kernel: its number, the shader's variable name, and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub index: u32,
    pub name: &'static str,
    pub kind: Binding,
}

/// Shorthand for a `Slot`.
pub const fn slot(index: u32, name: &'static str, kind: Binding) -> Slot {
    Slot { index, name, kind }
}

/// A compiled entry point and the layout of its bindings.
pub struct Kernel {
    /// "shader:entry [defines that tell variants apart]", for profiles and messages.
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub bindings: Vec<Slot>,
}

/// The bindings' layout key: kernels with equal keys share one bind-group layout.
pub fn layout_key(bindings: &[Slot]) -> Vec<(u32, Binding)> {
    bindings.iter().map(|s| (s.index, s.kind)).collect()
}

/// Checks a spec's bindings against the variables the expanded WGSL declares in group 0: each
/// slot must name the variable declared at its number, with its kind; every variable the entry
/// point uses must be bound. (A spec may bind a declared variable its entry leaves unused:
/// variants of one shader share a layout.)
fn check_bindings(
    label: &str,
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    bindings: &[Slot],
) -> Result<()> {
    let ep = module
        .entry_points
        .iter()
        .position(|e| e.name == entry)
        .ok_or_else(|| Error::Gpu(format!("{label}: the shader has no entry point {entry}")))?;
    let uses = info.get_entry_point(ep);
    let mut declared: HashMap<u32, (String, Binding, bool)> = HashMap::new();
    for (h, v) in module.global_variables.iter() {
        let Some(rb) = &v.binding else { continue };
        let kind = match v.space {
            naga::AddressSpace::Uniform => Binding::Uniform,
            naga::AddressSpace::Storage { access } => {
                if access.contains(naga::StorageAccess::STORE) {
                    Binding::ReadWrite
                } else {
                    Binding::Read
                }
            }
            naga::AddressSpace::Handle => match module.types[v.ty].inner {
                naga::TypeInner::Image {
                    class: naga::ImageClass::Storage { .. },
                    ..
                } => Binding::StorageTexture,
                _ => Binding::Texture,
            },
            other => {
                return Err(Error::Gpu(format!(
                    "{label}: binding {} is in address space {other:?}",
                    rb.binding
                )))
            }
        };
        if rb.group != 0 {
            return Err(Error::Gpu(format!(
                "{label}: only group 0 is used, binding {} is in group {}",
                rb.binding, rb.group
            )));
        }
        let used = !uses[h].is_empty();
        declared.insert(rb.binding, (v.name.clone().unwrap_or_default(), kind, used));
    }
    for s in bindings {
        match declared.remove(&s.index) {
            Some((name, kind, _)) if name == s.name && kind == s.kind => {}
            Some((name, kind, _)) => {
                return Err(Error::Gpu(format!(
                    "{label}: binding {} is declared as {name} ({kind:?}) in the shader but the spec says {} ({:?})",
                    s.index, s.name, s.kind
                )))
            }
            None => {
                return Err(Error::Gpu(format!(
                    "{label}: the spec binds {} at {} but the shader declares nothing there",
                    s.name, s.index
                )))
            }
        }
    }
    if let Some((i, (name, _, _))) = declared.into_iter().find(|(_, (_, _, used))| *used) {
        return Err(Error::Gpu(format!(
            "{label}: entry {entry} uses {name} at binding {i} but the spec does not bind it"
        )));
    }
    Ok(())
}

impl Kernel {
    pub fn layout_for(device: &wgpu::Device, bindings: &[Slot]) -> wgpu::BindGroupLayout {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|s| wgpu::BindGroupLayoutEntry {
                binding: s.index,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match s.kind {
                    Binding::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::Texture => wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Uint,
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    Binding::StorageTexture => wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::WriteOnly,
                        format: wgpu::TextureFormat::Rgba32Uint,
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                    Binding::Read | Binding::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: matches!(s.kind, Binding::Read),
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: None,
            entries: &entries,
        })
    }

    /// The WGSL of one variant, checked by naga and against the spec's bindings.
    pub fn source(
        name: &str,
        entry: &str,
        defs: &Defines,
        bindings: &[Slot],
        dir: Option<&Path>,
    ) -> Result<String> {
        let src = preprocess(name, defs, dir)?;
        // Validate with naga first so a bad shader is an error, not a device panic.
        let module = naga::front::wgsl::parse_str(&src).map_err(|e| {
            Error::Gpu(format!(
                "shader {name} ({defs:?}): {}",
                e.emit_to_string(&src)
            ))
        })?;
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| {
            Error::Gpu(format!(
                "shader {name} ({defs:?}): {}",
                e.emit_to_string(&src)
            ))
        })?;
        check_bindings(&label(name, entry, defs), &module, &info, entry, bindings)?;
        Ok(src)
    }

    /// Compile `entry` of shader `name` with `defs`, on an existing layout (variants share it).
    /// `dir`: read the shaders from this folder instead of the embedded copies.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        device: &wgpu::Device,
        name: &str,
        entry: &str,
        defs: &Defines,
        layout: &wgpu::BindGroupLayout,
        bindings: &[Slot],
        dir: Option<&Path>,
    ) -> Result<Kernel> {
        Ok(Kernel {
            label: label(name, entry, defs),
            pipeline: Self::compile(device, name, entry, defs, layout, bindings, dir)?,
            layout: layout.clone(),
            bindings: bindings.to_vec(),
        })
    }

    /// The pipeline alone (see `build`). Thread-safe: the decoder compiles its variants on
    /// several threads at once (lavapipe compiles while the pipeline is created).
    #[allow(clippy::too_many_arguments)]
    pub fn compile(
        device: &wgpu::Device,
        name: &str,
        entry: &str,
        defs: &Defines,
        layout: &wgpu::BindGroupLayout,
        bindings: &[Slot],
        dir: Option<&Path>,
    ) -> Result<wgpu::ComputePipeline> {
        let src = Self::source(name, entry, defs, bindings, dir)?;
        let sm = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(layout)],
            immediate_size: 0,
        });
        Ok(
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: Some(&pl),
                module: &sm,
                entry_point: Some(entry),
                // Every kernel writes its workgroup memory before reading it; skipping the zero fill
                // saves a pass over it at every workgroup start.
                compilation_options: wgpu::PipelineCompilationOptions {
                    zero_initialize_workgroup_memory: false,
                    ..Default::default()
                },
                cache: None,
            }),
        )
    }

    /// A bind group from (binding name, resource) pairs: see `bind_named`.
    pub fn bind(
        &self,
        device: &wgpu::Device,
        named: &[(&str, wgpu::BindingResource<'_>)],
    ) -> Result<wgpu::BindGroup> {
        bind_named(device, &self.label, &self.layout, &self.bindings, named)
    }
}

/// A bind group for a kernel with `bindings` on `layout` from (binding name, resource) pairs:
/// every binding must be given exactly once, by the name its spec (and shader) use.
pub fn bind_named(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    bindings: &[Slot],
    named: &[(&str, wgpu::BindingResource<'_>)],
) -> Result<wgpu::BindGroup> {
    let mut entries = Vec::with_capacity(bindings.len());
    for s in bindings {
        let mut found = named.iter().filter(|(n, _)| *n == s.name);
        let Some((_, r)) = found.next() else {
            return Err(Error::Gpu(format!(
                "internal: {label}: no resource for binding {}",
                s.name
            )));
        };
        if found.next().is_some() {
            return Err(Error::Gpu(format!(
                "internal: {label}: binding {} given twice",
                s.name
            )));
        }
        entries.push(wgpu::BindGroupEntry {
            binding: s.index,
            resource: r.clone(),
        });
    }
    if let Some((n, _)) = named
        .iter()
        .find(|(n, _)| !bindings.iter().any(|s| s.name == *n))
    {
        return Err(Error::Gpu(format!(
            "internal: {label}: it has no binding named {n}"
        )));
    }
    Ok(device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout,
        entries: &entries,
    }))
}

/// "shader:entry [flags and the values that tell variants apart]".
pub fn label(name: &str, entry: &str, defs: &Defines) -> String {
    let tag = defs.tags(|k, v| v == "1" || k == "QUANT" || k == "T");
    format!("{name}:{entry} [{}]", tag.join(" "))
}
