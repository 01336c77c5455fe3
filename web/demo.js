// The generation demo: stream text from the model in its worker, with time to first token
// and tokens/s; Stop aborts the generation.
import { $, boot, showError, clearError, memoryLine } from './page.js';

const tide = boot();
let abort = null;

function options() {
  const num = (id) => Number($(`#${id}`).value);
  return { maxTokens: num('maxTokens'), temperature: num('temperature'), topK: num('topK'),
    topP: num('topP'), repeatPenalty: num('repeatPenalty'), seed: num('seed') };
}

async function run() {
  clearError();
  const prompt = $('#prompt').value;
  const out = $('#output');
  out.replaceChildren(Object.assign(document.createElement('span'), { className: 'prompt', textContent: prompt }));
  const gen = document.createElement('span');
  out.append(gen);
  $('#go').disabled = true;
  $('#stop').disabled = false;
  abort = new AbortController();
  const t0 = performance.now();
  let first = null;
  let n = 0;
  try {
    const fileBytes = tide.info?.memory_file_bytes;
    const live = (m) => { $('#memory').textContent = memoryLine(m, fileBytes); };
    const it = tide.generate(prompt, { ...options(), signal: abort.signal, onMemory: live });
    for await (const piece of it) {
      first ??= performance.now();
      n++;
      gen.textContent += piece;
      $('#stats').textContent = `time to first token ${((first - t0) / 1000).toFixed(2)} s · ${n} pieces`;
    }
    const r = await it.done;
    $('#stats').textContent = `${r.prompt_tokens.length} prompt tokens, ${r.tokens.length} generated · ` +
      `time to first token ${r.time_to_first_token_s.toFixed(2)} s · prefill ${r.prefill_tokens_per_s.toFixed(1)} tok/s · ` +
      `decode ${r.decode_tokens_per_s.toFixed(1)} tok/s · stop: ${r.stop}`;
    $('#memory').textContent = memoryLine(r.memory, fileBytes);
  } catch (e) {
    showError(e.message);
  } finally {
    $('#go').disabled = false;
    $('#stop').disabled = true;
  }
}

tide.ready.then(() => { $('#go').disabled = false; }, () => {});
$('#go').onclick = run;
$('#stop').onclick = () => abort?.abort();
$('#prompt').addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) run(); });
