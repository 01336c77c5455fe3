// What both pages share: pick the model (?model=URL, else the first that `tide serve` lists),
// load it with a progress bar, show the adapter and any notice or error, and set window.tide:
// the tide.js API bound to the loaded model, with window.tide.ready a promise of its info.
import { load, listModels } from './tide.js';

export const $ = (sel) => document.querySelector(sel);

export function showError(msg) {
  const box = $('#error');
  box.textContent = msg;
  // A lost device, a GPU out of memory or a dead worker leave the model unusable: offer a
  // fresh start (the files come from the browser's cache, so it is quick).
  if (/device lost|out of memory|worker failed|unreachable/i.test(msg)) {
    const b = Object.assign(document.createElement('button'), { textContent: 'Reload the model' });
    b.onclick = () => location.reload();
    box.append(' ', b);
  }
  box.hidden = false;
}

export function clearError() {
  $('#error').hidden = true;
}

// The measured link to a streamed memory file and the gap chosen from it.
function linkText(l) {
  if (!l) return '';
  const rtt = l.round_trip_s == null ? '' : `round trip ${(l.round_trip_s * 1e3).toFixed(1)} ms, `;
  return `; ${rtt}requests read through gaps up to ${Math.round(l.gap_bytes / 1024)} KB`;
}

function describe(info) {
  const g = info.gpu;
  if (!g) return `CPU reference (wasm) · ${info.layers} layers · K = ${info.k}`;
  const mib = (b) => `${Math.round(b / 1048576)} MiB`;
  return `${g.name} · WebGPU · f16 ${g.f16 ? 'on' : 'off'} · subgroups ${g.subgroups ? 'on' : 'off'} · ` +
    `weights in ${g.weights_in} · binding ${mib(g.max_storage_buffer_binding_size)}, ` +
    `buffer ${mib(g.max_buffer_size)}, ${g.max_storage_buffers_per_shader_stage} storage buffers/stage · ` +
    `${info.layers} layers · K = ${info.k}`;
}

export function fmtBytes(b) {
  return b >= 1048576 ? `${(b / 1048576).toFixed(1)} MB` : `${Math.round(b / 1024)} kB`;
}

function fmtDuration(s) {
  return s >= 90 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.max(1, Math.round(s))} s`;
}

/**
 * The memory row counters (memoryStats(), or a result's `memory`) as a line; '' for none. With
 * `fileBytes` (a streamed memory file's size), also the share of that file fetched so far.
 */
export function memoryLine(m, fileBytes) {
  if (!m) return '';
  const share = fileBytes ? ` = ${(100 * m.bytes_fetched / fileBytes).toFixed(1)}% of the ` +
    `${fmtBytes(fileBytes)} memory file` : '';
  return `memory rows: ${m.rows_requested} read, ${m.hits} from the cache, ` +
    `${m.misses} fetched (${fmtBytes(m.bytes_fetched)}${m.streamed ? ' over HTTP' : ''}${share}) · ` +
    `cache ${fmtBytes(m.resident_bytes)} of ${m.cache_tokens} tokens`;
}

/** Fill the model picker, load the chosen model, and bind window.tide. */
export function boot() {
  const params = new URLSearchParams(location.search);
  let resolveReady, rejectReady;
  const ready = new Promise((r, j) => { resolveReady = r; rejectReady = j; });
  ready.catch(() => {}); // the page shows the error; scripts still see the rejection
  const tide = { ready, model: null, info: null, error: null };
  window.tide = tide;
  const bar = $('#progress');
  const status = $('#status');
  const picker = $('#model');

  if (!('gpu' in navigator)) {
    $('#notice').textContent = 'This browser has no WebGPU: the model runs on the CPU kernels compiled to wasm, slower than on a GPU.';
    $('#notice').hidden = false;
  }

  (async () => {
    let models = [];
    try {
      models = await listModels();
    } catch (e) {
      console.warn(`models.json: ${e.message}`);
    }
    const wanted = params.get('model') || models[0]?.name;
    const size = (m) => {
      const all = m.files.reduce((s, f) => s + f.bytes, 0);
      const mem = m.memory === 'stream' ? m.files.find((f) => f.url.endsWith('/memory.safetensors'))?.bytes : 0;
      return mem ? `${fmtBytes(all - mem)} + ${fmtBytes(mem)} memory, streamed` : fmtBytes(all);
    };
    for (const m of models) picker.add(new Option(`${m.name} (${size(m)})`, m.name));
    if (wanted && !models.some((m) => m.name === wanted)) picker.add(new Option(wanted, wanted));
    picker.value = wanted ?? '';
    picker.onchange = () => {
      const u = new URL(location.href);
      u.searchParams.set('model', picker.value);
      location.href = u.href;
    };
    if (!wanted) throw new Error('no model: this page is served without models (start it with `tide serve`), or give ?model=URL');
    status.textContent = `loading ${wanted} ...`;
    bar.hidden = false;
    const model = await load(wanted, {
      backend: params.get('backend') || undefined,
      memory: params.get('memory') || undefined,
      memoryCacheMb: Number(params.get('memoryCacheMb')) || undefined,
      memoryGapKb: params.has('memoryGapKb') ? Number(params.get('memoryGapKb')) : undefined,
      onProgress: ({ phase, loaded, total, file, fileLoaded, fileTotal, rate, etaSeconds }) => {
        // Downloads have a size; building the kernels does not (an indeterminate bar).
        if (phase === 'open') bar.removeAttribute('value');
        else {
          bar.max = total || 1;
          bar.value = loaded;
        }
        const what = { check: 'checking that it fits this GPU', download: 'downloading', cache: 'reading from the browser\'s storage', open: 'compiling kernels and uploading weights', ready: 'ready' }[phase] || phase;
        let text = `${wanted}: ${what}`;
        if (fileTotal && (phase === 'download' || phase === 'cache')) {
          text += ` ${file} ${fmtBytes(fileLoaded)} / ${fmtBytes(fileTotal)}`;
          if (rate > 0) text += ` · ${fmtBytes(rate)}/s`;
          if (phase === 'download' && etaSeconds != null) text += ` · ${fmtDuration(etaSeconds)} left`;
          if (total && total !== fileTotal) text += ` (all files: ${fmtBytes(loaded)} / ${fmtBytes(total)})`;
        } else if (total) text += ` ${fmtBytes(loaded)} / ${fmtBytes(total)}`;
        status.textContent = text;
      },
      onWarning: (message) => {
        $('#notice').textContent = message;
        $('#notice').hidden = false;
      },
    });
    bar.hidden = true;
    const info = model.info;
    status.textContent = `${wanted} · ${describe(info)} · loaded in ${info.load.seconds.toFixed(1)} s` +
      (info.load.downloaded_bytes ? ` (${fmtBytes(info.load.downloaded_bytes)} downloaded)` : ' (from the browser cache)') +
      (info.memory_streamed ? ` · memory rows streamed (cache of ${info.memory_cache_tokens} tokens${linkText(info.memory_link)})` : '');
    const notes = [info.note, ...(info.load.warnings || [])].filter(Boolean);
    if (notes.length) {
      $('#notice').textContent = notes.join(' · ');
      $('#notice').hidden = false;
    }
    Object.assign(tide, {
      model, info,
      generate: (p, o) => model.generate(p, o),
      complete: (p, o) => model.complete(p, o),
      inspect: (t) => model.inspect(t),
      memoryStats: () => model.memoryStats(),
      chat: model.chat,
      completions: model.completions,
    });
    resolveReady(info);
  })().catch((e) => {
    bar.hidden = true;
    status.textContent = 'no model loaded';
    tide.error = e.message;
    showError(e.message);
    rejectReady(e);
  });
  return tide;
}
