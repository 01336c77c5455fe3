# Sourced by the scripts that open the GPU: wgpu's Vulkan probing wants a runtime dir, and any
# private writable folder will do when the session has none.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}/tide-xdg-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
