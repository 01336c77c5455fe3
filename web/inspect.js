// Router inspection: a token x layer heatmap of the router's weights (memory share 1 - NULL,
// one slot, or the dominant slot), coloured over the data's own range with a legend; hover for
// every slot's weight; per-layer means, NULL weight by token-frequency decile; JSON and PNG.
// Only the visible rows are drawn, so long texts scroll without freezing the page.
import { $, boot, showError, clearError, memoryLine } from './page.js';

const tide = boot();
const CELL = 18;
const LABEL = 170;
const SLOT_COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];
const NULL_COLOUR = '#9a9a9a';
let data = null; // the inspection object (tide inspect --json's shape)

const show = (p) => p.replace(/\n/g, '\\n').replace(/\t/g, '\\t').replace(/ /g, '·');

function views(k) {
  const v = [['share', 'memory share (1 - NULL)'], ['dominant', 'dominant slot']];
  for (let j = 0; j < k; j++) v.push([`slot${j}`, `block ${j}`]);
  v.push([`slot${k}`, 'NULL']);
  return v;
}

// The value a cell shows in the current view, and the view's range over the data.
function valueOf(slots, view, k) {
  if (view === 'share') return 1 - slots[k];
  return slots[Number(view.slice(4))];
}

function rangeOf(view) {
  let lo = Infinity, hi = -Infinity;
  for (const t of data.weights) for (const s of t) {
    const x = valueOf(s, view, data.k);
    lo = Math.min(lo, x);
    hi = Math.max(hi, x);
  }
  if (!(hi > lo)) { lo -= 5e-7; hi = lo + 1e-6; }
  return [lo, hi];
}

function colourFor(view, range) {
  if (view === 'dominant') {
    return (s) => {
      let best = 0;
      for (let j = 1; j < s.length; j++) if (s[j] > s[best]) best = j;
      return best === data.k ? NULL_COLOUR : SLOT_COLOURS[best % SLOT_COLOURS.length];
    };
  }
  const [lo, hi] = range;
  return (s) => {
    const t = Math.min(1, Math.max(0, (valueOf(s, view, data.k) - lo) / (hi - lo)));
    // light yellow to dark blue (viridis-like ends), readable for every level
    const r = Math.round(253 + (38 - 253) * t), g = Math.round(231 + (48 - 231) * t), b = Math.round(37 + (140 - 37) * t);
    return `rgb(${r},${g},${b})`;
  };
}

function drawLegend(view, range, colour) {
  const el = $('#legend');
  el.replaceChildren();
  if (view === 'dominant') {
    for (let j = 0; j <= data.k; j++) {
      const sw = document.createElement('span');
      sw.style.cssText = `display:inline-block;width:14px;height:14px;background:${j === data.k ? NULL_COLOUR : SLOT_COLOURS[j % SLOT_COLOURS.length]}`;
      el.append(sw, j === data.k ? 'NULL' : `block ${j}`);
    }
    return;
  }
  const c = document.createElement('canvas');
  c.width = 160; c.height = 14;
  const g = c.getContext('2d');
  for (let x = 0; x < 160; x++) {
    const v = range[0] + (range[1] - range[0]) * x / 159;
    const slots = Array(data.k + 1).fill(0);
    if (view === 'share') slots[data.k] = 1 - v; else slots[Number(view.slice(4))] = v;
    g.fillStyle = colour(slots);
    g.fillRect(x, 0, 1, 14);
  }
  const lo = Object.assign(document.createElement('span'), { className: 'legend-min', textContent: range[0].toFixed(4) });
  const hi = Object.assign(document.createElement('span'), { className: 'legend-max', textContent: range[1].toFixed(4) });
  el.append('scale', lo, c, hi);
}

function draw() {
  if (!data) return;
  const view = $('#view').value;
  const range = view === 'dominant' ? [0, 1] : rangeOf(view);
  const colour = colourFor(view, range);
  drawLegend(view, range, colour);
  const scroller = $('#scroller');
  const n = data.tokens.length;
  const head = 22;
  $('#spacer').style.height = `${head + n * CELL}px`;
  const canvas = $('#heat');
  const width = LABEL + data.layers * CELL + 10;
  const rows = Math.min(n, Math.ceil(scroller.clientHeight / CELL) + 2);
  const first = Math.min(Math.floor(scroller.scrollTop / CELL), Math.max(0, n - rows));
  canvas.width = width;
  canvas.height = head + rows * CELL;
  canvas.style.position = 'relative';
  canvas.style.top = `${first * CELL}px`;
  paint(canvas.getContext('2d'), first, rows, colour, head);
}

function paint(g, first, rows, colour, head) {
  g.fillStyle = '#fff';
  g.fillRect(0, 0, g.canvas.width, g.canvas.height);
  g.font = '11px ui-monospace, monospace';
  g.fillStyle = '#333';
  g.textAlign = 'center';
  for (let l = 0; l < data.layers; l++) g.fillText(String(l), LABEL + (l + 0.5) * CELL, 14);
  for (let r = 0; r < rows; r++) {
    const t = first + r;
    if (t >= data.tokens.length) break;
    const y = head + r * CELL;
    g.fillStyle = '#333';
    g.textAlign = 'right';
    g.fillText(`${t} ${show(data.pieces[t]).slice(0, 18)}`, LABEL - 6, y + CELL * 0.7);
    data.weights[t].forEach((s, l) => {
      g.fillStyle = colour(s);
      g.fillRect(LABEL + l * CELL, y, CELL - 1, CELL - 1);
    });
  }
}

function hover(ev) {
  const tip = $('#tip');
  if (!data) return;
  const rect = $('#heat').getBoundingClientRect();
  const first = Math.round((parseFloat($('#heat').style.top) || 0) / CELL);
  const l = Math.floor((ev.clientX - rect.left - LABEL) / CELL);
  const t = first + Math.floor((ev.clientY - rect.top - 22) / CELL);
  if (l < 0 || l >= data.layers || t < 0 || t >= data.tokens.length || ev.clientY - rect.top < 22) {
    tip.hidden = true;
    return;
  }
  const s = data.weights[t][l];
  const lines = [`token ${t} '${show(data.pieces[t])}' (id ${data.tokens[t]}), layer ${l}`,
    `memory share ${(1 - s[data.k]).toFixed(4)}`];
  s.forEach((x, j) => lines.push(`${j === data.k ? 'NULL   ' : `block ${j}`} ${x.toFixed(4)}`));
  tip.textContent = lines.join('\n');
  tip.style.left = `${ev.clientX + 14}px`;
  tip.style.top = `${ev.clientY + 14}px`;
  tip.hidden = false;
}

// A small SVG bar chart: groups of bars (one group per x label), values in [0, max].
function bars(svg, labels, series, colours, max) {
  const W = Number(svg.getAttribute('width')), H = Number(svg.getAttribute('height'));
  const left = 40, bottom = 20, top = 8;
  const gw = (W - left - 4) / labels.length;
  const bw = Math.max(1, (gw - 4) / series.length);
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  let s = `<line x1="${left}" y1="${y(0)}" x2="${W}" y2="${y(0)}" stroke="#888"/>`;
  s += `<text x="${left - 4}" y="${y(max) + 8}" text-anchor="end" font-size="10">${max.toFixed(3)}</text>`;
  s += `<text x="${left - 4}" y="${y(0)}" text-anchor="end" font-size="10">0</text>`;
  labels.forEach((lab, i) => {
    series.forEach((vals, j) => {
      const v = vals[i];
      s += `<rect x="${left + i * gw + 2 + j * bw}" y="${y(v)}" width="${bw}" height="${y(0) - y(v)}" fill="${colours[j]}"><title>${lab}: ${v.toFixed(4)}</title></rect>`;
    });
    s += `<text x="${left + (i + 0.5) * gw}" y="${H - 6}" text-anchor="middle" font-size="10">${lab}</text>`;
  });
  svg.innerHTML = s;
}

function charts() {
  const { k, layers, weights } = data;
  const means = Array.from({ length: k + 1 }, (_, j) =>
    Array.from({ length: layers }, (_, l) => weights.reduce((a, t) => a + t[l][j], 0) / weights.length));
  const colours = means.map((_, j) => (j === k ? NULL_COLOUR : SLOT_COLOURS[j % SLOT_COLOURS.length]));
  bars($('#layers'), Array.from({ length: layers }, (_, l) => `L${l}`), means, colours, Math.max(...means.flat(), 1e-6));
  const counts = data.token_counts;
  $('#decileFig').hidden = !counts;
  if (!counts) return;
  const order = counts.map((c, i) => [c, i]).sort((a, b) => a[0] - b[0]);
  const dec = Array.from({ length: 10 }, () => []);
  order.forEach(([, i], r) => dec[Math.min(9, Math.floor((r * 10) / order.length))].push(i));
  const nullOf = (i) => weights[i].reduce((a, s) => a + s[k], 0) / layers;
  const vals = dec.map((d) => (d.length ? d.reduce((a, i) => a + nullOf(i), 0) / d.length : 0));
  bars($('#deciles'), dec.map((_, i) => String(i)), [vals], [NULL_COLOUR], Math.max(...vals, 1e-6));
}

function setData(d) {
  data = d;
  tide.lastInspection = d;
  const sel = $('#view');
  const keep = sel.value;
  sel.replaceChildren(...views(d.k).map(([v, label]) => new Option(label, v)));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  $('#json').disabled = $('#png').disabled = false;
  $('#scroller').scrollTop = 0;
  draw();
  charts();
}

async function run(generateFirst) {
  clearError();
  const buttons = ['#inspect', '#generate'].map((s) => $(s));
  buttons.forEach((b) => { b.disabled = true; });
  try {
    let text = $('#text').value;
    if (generateFirst) {
      const r = await tide.complete(text, { maxTokens: Number($('#genTokens').value), temperature: 0 });
      text += r.text;
      $('#text').value = text;
    }
    $('#status').dataset.busy = 'inspecting';
    setData(await tide.inspect(text));
    $('#memory').textContent = memoryLine(await tide.memoryStats());
  } catch (e) {
    showError(e.message);
  } finally {
    delete $('#status').dataset.busy;
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function save(name, blob) {
  const a = Object.assign(document.createElement('a'), { href: URL.createObjectURL(blob), download: name });
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// The JSON export is `tide inspect --json`'s object.
function exportJson() {
  const { model, tokens, pieces, k, layers, weights } = data;
  save('inspect.json', new Blob([JSON.stringify({ model, tokens, pieces, k, layers, weights })], { type: 'application/json' }));
}

// The PNG holds the whole heatmap (up to the browser's canvas size), not only the visible rows.
function exportPng() {
  const view = $('#view').value;
  const colour = colourFor(view, view === 'dominant' ? [0, 1] : rangeOf(view));
  const rows = Math.min(data.tokens.length, Math.floor(30000 / CELL));
  const c = document.createElement('canvas');
  c.width = LABEL + data.layers * CELL + 10;
  c.height = 22 + rows * CELL;
  paint(c.getContext('2d'), 0, rows, colour, 22);
  c.toBlob((b) => save('inspect.png', b), 'image/png');
}

tide.ready.then((info) => {
  if (!info.k) {
    showError(`${info.model} has no TIDE memory (K = 0): there are no router weights to inspect. Pick a TIDE model.`);
    return;
  }
  $('#inspect').disabled = $('#generate').disabled = false;
  run(false);
}, () => {});
$('#inspect').onclick = () => run(false);
$('#generate').onclick = () => run(true);
$('#view').onchange = draw;
$('#json').onclick = exportJson;
$('#png').onclick = exportPng;
$('#scroller').addEventListener('scroll', () => requestAnimationFrame(draw), { passive: true });
$('#heat').addEventListener('mousemove', hover);
$('#heat').addEventListener('mouseleave', () => { $('#tip').hidden = true; });
window.addEventListener('resize', draw);
