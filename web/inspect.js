// Router inspection: a token x layer heatmap of the router's weights (memory share 1 - NULL,
// one slot, or the dominant slot), coloured over the data's own range with a legend; hover for
// every slot's weight and the token's training count; tokens marked by their training-frequency
// decile; per-layer mean weights (stacked, one bar per layer) and NULL weight by decile, both
// with axis titles, legends and hover values; JSON and PNG export.
// Only the visible rows are drawn, so long texts scroll without freezing the page; the layer
// numbers stay above the rows (a sticky header).
import { $, boot, showError, clearError, memoryLine } from './page.js';

const tide = boot();
const CELL = 18; // a heatmap cell, CSS px
const LABEL = 190; // the token label column
const STRIP = 8; // the frequency marker at the label column's left edge
const PNG_HEAD = 40; // the exported PNG's header: axis titles and layer numbers
const SLOT_COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];
const NULL_COLOUR = '#9a9a9a';
// The heatmap's scale: viridis reversed, light yellow (low) through green and teal to dark
// purple (high): every level distinct, and readable in grey.
const VIRIDIS = [[253, 231, 37], [94, 201, 98], [33, 145, 140], [59, 82, 139], [68, 1, 84]];
// Training-frequency deciles, 0 (rarest) dark magenta to 9 (most common) pale grey: a hue no
// slot colour of K <= 6 uses.
const DECILE_STOPS = [[142, 1, 82], [222, 119, 174], [212, 208, 218]];
// What each "mark tokens" choice marks: deciles up to this one (-1: none).
const MARK_UPTO = { none: -1, rare10: 0, rare30: 2, decile: 9 };
let data = null; // the inspection object (tide inspect --json's shape)
let cellColour = null; // the current view's cell colour: slots -> CSS colour
let freq = null; // {dec, scope: 'vocabulary' | 'text'}: each token's decile; null without counts

const show = (p) => p.replace(/\n/g, '\\n').replace(/\t/g, '\\t').replace(/ /g, '·');
const slotColour = (j) => (j === data.k ? NULL_COLOUR : SLOT_COLOURS[j % SLOT_COLOURS.length]);
const slotName = (j) => (j === data.k ? 'NULL' : `block ${j}`);
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const decileColour = (d) => ramp(DECILE_STOPS, d / 9);

function views(k) {
  const v = [['share', 'memory share (1 - NULL)'], ['dominant', 'dominant slot']];
  for (let j = 0; j < k; j++) v.push([`slot${j}`, `block ${j}`]);
  v.push([`slot${k}`, 'NULL']);
  return v;
}

// Each token's training-frequency decile (0 = rarest): the vocabulary-wide one the model
// reports (token_deciles, `tide eval`'s), else ranked within this text by token_counts.
function frequencyOf(d) {
  if (d.token_deciles) return { dec: d.token_deciles, scope: 'vocabulary' };
  if (!d.token_counts) return null;
  const order = d.token_counts.map((c, i) => [c, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const dec = Array(order.length);
  order.forEach(([, i], r) => { dec[i] = Math.min(9, Math.floor((r * 10) / order.length)); });
  return { dec, scope: 'text' };
}

const markUpTo = () => (freq ? MARK_UPTO[$('#mark').value] ?? -1 : -1);
const isMarked = (t, upto) => upto >= 0 && freq.dec[t] <= upto;

// The token's training count and decile, as the hover tips say it.
function frequencyLine(t) {
  if (!freq) return null;
  const d = freq.dec[t];
  const where = freq.scope === 'vocabulary' ? 'of the vocabulary' : 'ranked within this text';
  const c = data.token_counts?.[t];
  const seen = c === undefined ? '' : `seen ${c} time${c === 1 ? '' : 's'} in training, `;
  return `${seen}decile ${d} (${where}; 0 = rarest)`;
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
      return slotColour(best);
    };
  }
  const [lo, hi] = range;
  return (s) => ramp(VIRIDIS, (valueOf(s, view, data.k) - lo) / (hi - lo));
}

// The colour at t in [0, 1] along evenly spaced RGB stops.
function ramp(stops, t) {
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const [a, b] = [stops[i], stops[i + 1]];
  return `rgb(${a.map((v, c) => Math.round(v + (b[c] - v) * f)).join(',')})`;
}

// A legend entry: a colour swatch and its name.
function entry(colour, text) {
  const e = Object.assign(document.createElement('span'), { className: 'entry' });
  const sw = Object.assign(document.createElement('span'), { className: 'swatch' });
  sw.style.background = colour;
  e.append(sw, text);
  return e;
}

function drawLegend(view, range, colour) {
  const el = $('#legend');
  el.replaceChildren();
  if (view === 'dominant') {
    el.append('heatmap colour: the slot with the most weight');
    for (let j = 0; j <= data.k; j++) el.append(entry(slotColour(j), slotName(j)));
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
  const what = view === 'share' ? 'memory share (1 - NULL weight)' : `router weight on ${slotName(Number(view.slice(4)))}`;
  const lo = Object.assign(document.createElement('span'), { className: 'legend-min', textContent: range[0].toFixed(4) });
  const hi = Object.assign(document.createElement('span'), { className: 'legend-max', textContent: range[1].toFixed(4) });
  el.append(`heatmap colour: ${what}, this text's lowest`, lo, c, hi, 'highest');
}

// The frequency marking's legend, or the note saying why there is none.
function drawMarkLegend() {
  const el = $('#markLegend');
  el.replaceChildren();
  $('#markControl').hidden = !freq;
  $('#markNote').hidden = !!freq || !data;
  if (!freq) {
    $('#markNote').textContent = 'mark tokens: this model has no training counts, so its tokens cannot be marked by how often they were seen in training.';
    el.hidden = true;
    return;
  }
  const upto = markUpTo();
  el.hidden = upto < 0;
  if (upto < 0) return;
  const n = freq.dec.filter((d) => d <= upto).length;
  const scope = freq.scope === 'vocabulary' ? 'of the whole vocabulary' : 'ranked within this text (the model gives no vocabulary deciles)';
  const which = upto ? `deciles 0–${upto}` : 'decile 0';
  el.append(n ? `marked tokens (${n} of ${freq.dec.length}, a strip left of the token): their training-frequency decile ${scope}, 0 = rarest:`
    : `marked tokens: none of this text's ${freq.dec.length} tokens is in training-frequency ${which} ${scope} (0 = rarest):`);
  for (let d = 0; d <= upto; d++) el.append(entry(decileColour(d), String(d)));
}

// The layer numbers above the columns (HTML, so they stay put while the rows scroll).
function drawHead(width) {
  const head = $('#heatHead');
  head.style.width = `${width}px`;
  $('#yTitle').style.width = `${LABEL - 6}px`;
  const x = $('#xTitle');
  x.style.left = `${LABEL}px`;
  x.style.width = `${data.layers * CELL}px`;
  const nums = $('#layerNums');
  if (nums.childElementCount !== data.layers) {
    nums.replaceChildren(...Array.from({ length: data.layers }, (_, l) => {
      const s = Object.assign(document.createElement('span'), { textContent: String(l) });
      s.style.left = `${LABEL + l * CELL}px`;
      s.style.width = `${CELL - 1}px`;
      return s;
    }));
  }
}

// The whole heatmap: legends, header and the visible rows.
function draw() {
  if (!data) return;
  const view = $('#view').value;
  const range = view === 'dominant' ? [0, 1] : rangeOf(view);
  cellColour = colourFor(view, range);
  drawLegend(view, range, cellColour);
  drawMarkLegend();
  drawRows();
}

// The rows in view (on each scroll).
function drawRows() {
  if (!data) return;
  const scroller = $('#scroller');
  const n = data.tokens.length;
  const width = LABEL + data.layers * CELL + 4;
  drawHead(width);
  $('#spacer').style.height = `${n * CELL}px`;
  $('#spacer').style.width = `${width}px`;
  const canvas = $('#heat');
  const visible = Math.max(CELL, scroller.clientHeight - $('#heatHead').offsetHeight);
  const rows = Math.min(n, Math.ceil(visible / CELL) + 2);
  const first = Math.min(Math.floor(scroller.scrollTop / CELL), Math.max(0, n - rows));
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(rows * CELL * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${rows * CELL}px`;
  canvas.style.top = `${first * CELL}px`;
  canvas.dataset.first = String(first);
  const upto = markUpTo();
  canvas.dataset.marked = data.tokens.map((_, t) => t).filter((t) => isMarked(t, upto)).join(',');
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  paintRows(g, first, rows, cellColour, 0, width);
}

// Rows first .. first + rows - 1 of the heatmap, from y = top: each token's frequency marker
// and label, then its cells.
function paintRows(g, first, rows, colour, top, width) {
  const upto = markUpTo();
  g.fillStyle = '#fff';
  g.fillRect(0, top, width, rows * CELL);
  g.font = '11px ui-monospace, monospace';
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  for (let r = 0; r < rows; r++) {
    const t = first + r;
    if (t >= data.tokens.length) break;
    const y = top + r * CELL;
    if (isMarked(t, upto)) {
      // A strip in the decile's colour; the rarest 30% also tint their label.
      const c = decileColour(freq.dec[t]);
      g.fillStyle = c;
      if (freq.dec[t] <= 2) {
        g.globalAlpha = 0.2;
        g.fillRect(STRIP, y, LABEL - STRIP - 2, CELL - 1);
        g.globalAlpha = 1;
      }
      g.fillRect(0, y, STRIP, CELL - 1);
    }
    const piece = show(data.pieces[t]);
    g.fillStyle = '#1d2330';
    g.fillText(`${t} ${piece.length > 20 ? `${piece.slice(0, 19)}…` : piece}`, LABEL - 6, y + CELL / 2);
    data.weights[t].forEach((s, l) => {
      g.fillStyle = colour(s);
      g.fillRect(LABEL + l * CELL, y, CELL - 1, CELL - 1);
    });
  }
}

// The exported PNG's header: the axis titles and the layer numbers.
function paintHead(g, width) {
  g.fillStyle = '#fff';
  g.fillRect(0, 0, width, PNG_HEAD);
  g.fillStyle = '#1d2330';
  g.font = 'bold 12px system-ui, sans-serif';
  g.textBaseline = 'alphabetic';
  g.textAlign = 'center';
  g.fillText('layer', LABEL + (data.layers * CELL) / 2, 14);
  g.textAlign = 'right';
  g.fillText('token (position, text)', LABEL - 6, PNG_HEAD - 6);
  g.font = '10px ui-monospace, monospace';
  g.textAlign = 'center';
  for (let l = 0; l < data.layers; l++) g.fillText(String(l), LABEL + (l + 0.5) * CELL, PNG_HEAD - 6);
}

function placeTip(ev, text) {
  const tip = $('#tip');
  tip.textContent = text;
  tip.hidden = false;
  const w = tip.offsetWidth, h = tip.offsetHeight;
  const x = ev.clientX + 14 + w > window.innerWidth ? ev.clientX - 14 - w : ev.clientX + 14;
  const y = ev.clientY + 14 + h > window.innerHeight ? ev.clientY - 14 - h : ev.clientY + 14;
  tip.style.left = `${Math.max(0, x)}px`;
  tip.style.top = `${Math.max(0, y)}px`;
}

const hideTip = () => { $('#tip').hidden = true; };

function hover(ev) {
  if (!data) return;
  const canvas = $('#heat');
  const rect = canvas.getBoundingClientRect();
  const first = Number(canvas.dataset.first) || 0;
  const x = ev.clientX - rect.left;
  const t = first + Math.floor((ev.clientY - rect.top) / CELL);
  const l = Math.floor((x - LABEL) / CELL);
  if (t < 0 || t >= data.tokens.length || l >= data.layers) return hideTip();
  const lines = [`token ${t} '${show(data.pieces[t])}' (id ${data.tokens[t]})`];
  const f = frequencyLine(t);
  if (f) lines.push(f);
  if (x >= LABEL) {
    const s = data.weights[t][l];
    lines[0] += `, layer ${l}`;
    lines.push(`memory share ${(1 - s[data.k]).toFixed(4)}`);
    s.forEach((w, j) => lines.push(`${slotName(j).padEnd(7)} ${w.toFixed(4)}`));
  }
  placeTip(ev, lines.join('\n'));
}

// An SVG bar chart: one bar per label, each a stack of segments (values bottom up, in
// `colours`); y from 0 to `max`; axis titles; `notes[i]` above bar i; hover shows `tips[i]`.
function barChart(svg, { labels, stacks, colours, max, xTitle, yTitle, tips, notes, barWidth }) {
  const left = 58, right = 8, top = notes ? 18 : 10, bottom = 40;
  const H = Number(svg.getAttribute('height'));
  const W = left + right + Math.max(300, labels.length * barWidth);
  svg.setAttribute('width', String(W));
  const gw = (W - left - right) / labels.length;
  const bw = Math.max(2, gw * 0.75);
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const fmt = (v) => (v === 0 ? '0' : max < 1e-3 ? v.toExponential(1) : String(Number(v.toPrecision(2))));
  let s = '';
  for (const v of [0, max / 2, max]) {
    s += `<line x1="${left}" y1="${y(v)}" x2="${W - right}" y2="${y(v)}" stroke="${v ? '#e2e4ea' : '#888'}"/>`;
    s += `<text x="${left - 5}" y="${y(v) + 3.5}" text-anchor="end" font-size="10">${fmt(v)}</text>`;
  }
  const every = Math.ceil(labels.length / Math.max(1, Math.floor((W - left - right) / 16)));
  labels.forEach((lab, i) => {
    const x0 = left + i * gw;
    let acc = 0;
    let segs = '';
    stacks[i].forEach((v, j) => {
      if (!(v > 0)) return;
      segs += `<rect x="${x0 + (gw - bw) / 2}" y="${y(acc + v)}" width="${bw}" height="${y(acc) - y(acc + v)}" fill="${colours[j]}"/>`;
      acc += v;
    });
    // A transparent rect over the whole column: hovering anywhere above the label shows the tip.
    s += `<g class="bar" data-tip="${esc(tips[i])}" aria-label="${esc(tips[i])}" role="img">${segs}` +
      `<rect x="${x0}" y="${top}" width="${gw}" height="${H - top - bottom}" fill="transparent"/></g>`;
    if (notes) s += `<text x="${x0 + gw / 2}" y="${Math.min(y(acc), y(0)) - 3}" text-anchor="middle" font-size="9" fill="#555">${esc(notes[i])}</text>`;
    if (i % every === 0) s += `<text x="${x0 + gw / 2}" y="${H - bottom + 13}" text-anchor="middle" font-size="10">${esc(lab)}</text>`;
  });
  s += `<text class="axis-title" x="${left + (W - left - right) / 2}" y="${H - 8}" text-anchor="middle">${esc(xTitle)}</text>`;
  s += `<text class="axis-title" transform="translate(14 ${top + (H - top - bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(yTitle)}</text>`;
  svg.innerHTML = s;
}

function barHover(ev) {
  const bar = ev.target.closest?.('[data-tip]');
  if (!bar) return hideTip();
  placeTip(ev, bar.dataset.tip);
}

function charts() {
  const { k, layers, weights } = data;
  const n = weights.length;
  const means = Array.from({ length: layers }, (_, l) =>
    Array.from({ length: k + 1 }, (_, j) => weights.reduce((a, t) => a + t[l][j], 0) / n));
  const colours = Array.from({ length: k + 1 }, (_, j) => slotColour(j));
  $('#layersLegend').replaceChildren('slot:', ...colours.map((c, j) => entry(c, slotName(j))));
  barChart($('#layers'), {
    labels: Array.from({ length: layers }, (_, l) => String(l)),
    stacks: means,
    colours,
    max: 1,
    barWidth: 22,
    xTitle: 'layer',
    yTitle: 'mean router weight',
    tips: means.map((m, l) => [`layer ${l}, mean over ${n} tokens`,
      ...m.map((v, j) => `${slotName(j).padEnd(7)} ${v.toFixed(4)}`)].join('\n')),
  });
  $('#decileFig').hidden = !freq;
  if (!freq) return;
  const groups = Array.from({ length: 10 }, () => []);
  freq.dec.forEach((d, t) => groups[d].push(t));
  const nullOf = (t) => weights[t].reduce((a, s) => a + s[k], 0) / layers;
  const vals = groups.map((g) => (g.length ? g.reduce((a, t) => a + nullOf(t), 0) / g.length : 0));
  $('#decileCaption').textContent = freq.scope === 'vocabulary'
    ? 'Mean NULL weight (over layers) of the text\'s tokens in each training-frequency decile of the whole vocabulary (0 = the rarest 10% of the tokens seen in training, as `tide eval` counts them); n = the text\'s tokens in that decile.'
    : 'Mean NULL weight (over layers) by training-frequency decile, ranked within this text (the model gives no vocabulary-wide deciles; 0 = this text\'s rarest tokens); n = tokens in that decile.';
  $('#decileLegend').replaceChildren(entry(NULL_COLOUR, 'NULL weight, mean over layers and the decile\'s tokens'));
  const list = (g) => g.slice(0, 8).map((t) => `'${show(data.pieces[t])}'`).join(' ') + (g.length > 8 ? ' ...' : '');
  barChart($('#deciles'), {
    labels: groups.map((_, d) => String(d)),
    stacks: vals.map((v) => [v]),
    colours: [NULL_COLOUR],
    max: Math.max(...vals, 1e-6),
    barWidth: 34,
    xTitle: 'training-frequency decile (0 = rarest)',
    yTitle: 'mean NULL weight',
    notes: groups.map((g) => `n=${g.length}`),
    tips: groups.map((g, d) => (g.length
      ? `decile ${d}: mean NULL weight ${vals[d].toFixed(4)}\n${g.length} token${g.length === 1 ? '' : 's'}: ${list(g)}`
      : `decile ${d}: no token of this text`)),
  });
}

function setData(d) {
  data = d;
  freq = frequencyOf(d);
  tide.lastInspection = d;
  const sel = $('#view');
  const keep = sel.value;
  sel.replaceChildren(...views(d.k).map(([v, label]) => new Option(label, v)));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  $('#json').disabled = $('#png').disabled = false;
  $('#scroller').scrollTop = 0;
  $('#layerNums').replaceChildren();
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
  const { model, tokens, pieces, k, layers, weights, token_counts, token_deciles } = data;
  const out = { model, tokens, pieces, k, layers, weights };
  if (token_counts) out.token_counts = token_counts;
  if (token_deciles) out.token_deciles = token_deciles;
  save('inspect.json', new Blob([JSON.stringify(out)], { type: 'application/json' }));
}

// The PNG holds the whole heatmap (up to the browser's canvas size), not only the visible rows,
// under a header with the axis titles and layer numbers; marked tokens as on the page.
function exportPng() {
  const view = $('#view').value;
  const colour = colourFor(view, view === 'dominant' ? [0, 1] : rangeOf(view));
  const rows = Math.min(data.tokens.length, Math.floor(30000 / CELL));
  const c = document.createElement('canvas');
  c.width = LABEL + data.layers * CELL + 4;
  c.height = PNG_HEAD + rows * CELL;
  const g = c.getContext('2d');
  paintHead(g, c.width);
  paintRows(g, 0, rows, colour, PNG_HEAD, c.width);
  c.toBlob((b) => save('inspect.png', b), 'image/png');
}

// Show an inspection object without running the model (scripts and tests: e.g. a recorded
// `tide inspect --json` of another model).
tide.showInspection = setData;

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
$('#mark').onchange = draw;
$('#json').onclick = exportJson;
$('#png').onclick = exportPng;
$('#scroller').addEventListener('scroll', () => requestAnimationFrame(drawRows), { passive: true });
$('#heat').addEventListener('mousemove', hover);
$('#heat').addEventListener('mouseleave', hideTip);
for (const svg of ['#layers', '#deciles']) {
  $(svg).addEventListener('mousemove', barHover);
  $(svg).addEventListener('mouseleave', hideTip);
}
window.addEventListener('resize', draw);
