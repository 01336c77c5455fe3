#!/usr/bin/env bash
# The browser runtime as an npm package folder, target/npm/tide-gpu, which `npm pack` accepts:
# tide.js (the API) with its TypeScript declarations (tide.d.ts), the worker and its download
# store, and the wasm builds (pkg/, and pkg-threads/ when scripts/build-web.sh made it).
# package.json's `exports` name the API and the worker. Run by scripts/build-web.sh after the
# builds; tests/web/package.test.mjs packs it, installs it and imports it by name.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/npm/tide-gpu
rm -rf "$out"
mkdir -p "$out"
cp web/tide.js web/tide.d.ts web/worker.js web/downloads.js web/shared.js "$out"/
cp -r web/pkg "$out"/pkg
[[ -d web/pkg-threads ]] && cp -r web/pkg-threads "$out"/pkg-threads
# wasm-bindgen's own ignore files would keep its output out of the tarball.
find "$out" -name .gitignore -delete
cp web/README.md "$out"/README.md
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
license="$(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -1)"
node - "$out/package.json" "$version" "${license:-UNLICENSED}" <<'JS'
const [file, version, license] = process.argv.slice(2);
const fs = require('node:fs');
const files = ['tide.js', 'tide.d.ts', 'worker.js', 'downloads.js', 'shared.js', 'pkg/', 'README.md'];
if (fs.existsSync(require('node:path').join(file, '..', 'pkg-threads'))) files.push('pkg-threads/');
fs.writeFileSync(file, JSON.stringify({
  name: 'tide-gpu',
  version,
  description: 'TIDE and LLaMA-family language models in the browser: WGSL kernels on WebGPU, SIMD CPU kernels in wasm without it',
  license,
  type: 'module',
  main: './tide.js',
  types: './tide.d.ts',
  exports: {
    '.': { types: './tide.d.ts', default: './tide.js' },
    './worker.js': './worker.js',
    './package.json': './package.json',
  },
  files,
  sideEffects: false,
}, null, 2) + '\n');
JS
echo "npm package folder: $out ($(du -sh "$out" | cut -f1))" >&2
