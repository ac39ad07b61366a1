// cnnlab view: the page's logic. Plain JavaScript, served by cnnlab; no build step, no CDN.
// Images travel as raw uint8 pixels of the training data's shape (base64); the server runs the
// model and the reference arithmetic, the page draws.
"use strict";

const state = {
  model: null,
  pixels: null, // Uint8Array C*H*W: what the model sees now
  scale: 1, // drawing-canvas pixels per data pixel
  drawing: false,
  last: null,
  pendingSince: null,
  lastActivations: 0,
  layers: null,
  selected: null, // {layer, channel, row, col}
  updateMs: [], // per update: request sent -> bars drawn
  inputMs: [], // per update: oldest input not yet shown -> bars drawn
  updates: 0,
  top: [],
  testStart: 0,
  slide: { at: [0, 0], shape: null, timer: null, examples: [] },
};
window.cnnlabView = state; // for scripts and tests: read-only use

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, body, init = {}) {
  const options = body === undefined ? init : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    ...init,
  };
  const response = await fetch(path, options);
  let data = null;
  try {
    data = await response.json();
  } catch (error) {
    throw new Error(`${path}: HTTP ${response.status}, not JSON`);
  }
  if (!response.ok) throw new Error(data && data.error ? data.error : `${path}: HTTP ${response.status}`);
  return data;
}

function showMessage(text) {
  $("message").textContent = text || "";
}

function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function formatNumber(value, digits = 4) {
  if (value === null || value === undefined) return "";
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
  return Number(value.toPrecision(digits)).toString();
}

function dims(shape) {
  return shape.join("\u00d7");
}

// ---------------------------------------------------------------- drawing and the input pixels

function setupCanvas() {
  const [, h, w] = state.model.data_shape;
  const canvas = $("draw");
  state.scale = Math.max(1, Math.ceil(280 / Math.max(h, w)));
  canvas.width = w * state.scale;
  canvas.height = h * state.scale;
  canvas.style.width = `${Math.round((280 * w) / Math.max(h, w))}px`;
  canvas.style.height = `${Math.round((280 * h) / Math.max(h, w))}px`;
  canvas.getContext("2d", { willReadFrequently: true }); // read back on every update
  clearCanvas();
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    state.drawing = true;
    state.last = canvasPoint(event);
    stroke(state.last, state.last);
    inputChanged(event.timeStamp);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.drawing) return;
    const point = canvasPoint(event);
    stroke(state.last, point);
    state.last = point;
    inputChanged(event.timeStamp);
  });
  const end = () => {
    if (!state.drawing) return;
    state.drawing = false;
    requestActivations(true);
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

function canvasPoint(event) {
  const canvas = $("draw");
  const box = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * canvas.width) / box.width,
    y: ((event.clientY - box.top) * canvas.height) / box.height,
  };
}

function stroke(from, to) {
  const canvas = $("draw");
  const context = canvas.getContext("2d");
  const [, h, w] = state.model.data_shape;
  // about the stroke of an MNIST digit (2-3 of 28 pixels); at least one data pixel wide
  context.lineWidth = Math.max(canvas.width * 0.085, state.scale * 1.2) * (Math.max(h, w) < 16 ? 1.3 : 1);
  context.lineCap = "round";
  context.lineJoin = "round";
  context.strokeStyle = "#fff";
  context.beginPath();
  context.moveTo(from.x, from.y);
  context.lineTo(to.x + 0.01, to.y);
  context.stroke();
}

function clearCanvas() {
  const canvas = $("draw");
  const context = canvas.getContext("2d");
  context.fillStyle = "#000";
  context.fillRect(0, 0, canvas.width, canvas.height);
}

// The canvas averaged over blocks of scale x scale: the data's own resolution.
function readPixels() {
  const [c, h, w] = state.model.data_shape;
  const k = state.scale;
  const canvas = $("draw");
  const rgba = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const pixels = new Uint8Array(c * h * w);
  const area = k * k;
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let total = 0;
        for (let dy = 0; dy < k; dy++) {
          let offset = (((y * k + dy) * canvas.width) + x * k) * 4 + ch;
          for (let dx = 0; dx < k; dx++, offset += 4) total += rgba[offset];
        }
        pixels[(ch * h + y) * w + x] = Math.round(total / area);
      }
    }
  }
  return pixels;
}

// An image of the data's shape (grey or RGB) on a canvas of its own size.
function imageCanvas(pixels) {
  const [c, h, w] = state.model.data_shape;
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  const context = small.getContext("2d");
  const image = context.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let ch = 0; ch < 3; ch++) image.data[i * 4 + ch] = pixels[(c === 3 ? ch : 0) * h * w + i];
    image.data[i * 4 + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return small;
}

// An image of the data's shape painted on the drawing canvas, each pixel a scale x scale block.
function paintPixels(pixels) {
  const small = imageCanvas(pixels);
  const canvas = $("draw");
  const big = canvas.getContext("2d");
  big.imageSmoothingEnabled = false;
  big.drawImage(small, 0, 0, canvas.width, canvas.height);
}

// Runs an async job at most once at a time; asked again while it runs, it runs once more after,
// on the newest input: the page never queues stale updates.
class Coalesced {
  constructor(job) {
    this.job = job;
    this.busy = false;
    this.again = false;
  }

  async request() {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    do {
      this.again = false;
      await this.job();
    } while (this.again);
    this.busy = false;
  }
}

const predictions = new Coalesced(predictOnce);
const activations = new Coalesced(activationsOnce);
state.idle = () => !predictions.busy && !activations.busy; // nothing in flight: for tests

function inputChanged(since) {
  if (state.pendingSince === null) state.pendingSince = since;
  predictions.request();
}

async function predictOnce() {
  const since = state.pendingSince === null ? performance.now() : state.pendingSince;
  state.pendingSince = null;
  const started = performance.now();
  state.pixels = readPixels();
  try {
    const result = await api("/api/predict", { pixels: toBase64(state.pixels) });
    renderBars(result.top);
    const done = performance.now();
    state.updateMs.push(done - started);
    state.inputMs.push(done - since);
    state.updates += 1;
    showLatency();
    showMessage("");
  } catch (error) {
    showMessage(error.message);
  }
  requestActivations(!state.drawing);
}

function median(values) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function showLatency() {
  const last = state.updateMs[state.updateMs.length - 1];
  $("latency").textContent =
    `update ${last.toFixed(1)} ms (median ${median(state.updateMs).toFixed(1)} ms over ` +
    `${state.updateMs.length}; input to bars ${median(state.inputMs).toFixed(1)} ms)`;
}

function renderBars(top) {
  state.top = top;
  const bars = $("bars");
  bars.replaceChildren();
  for (const entry of top) {
    const percent = 100 * entry.probability;
    const fill = el("div", { class: "bar-fill" });
    fill.style.width = `${percent.toFixed(1)}%`;
    bars.append(el("div", { class: "bar-row", "data-class": entry.class },
      el("span", { class: "name", text: entry.class, title: entry.class }),
      el("div", { class: "bar-track" }, fill),
      el("span", { class: "pct", text: `${percent.toFixed(1)}%` })));
  }
}

async function setImage(pixels, truth) {
  paintPixels(pixels);
  state.pixels = pixels;
  $("truth").textContent = truth ? `true label: ${truth}` : "";
  inputChanged(performance.now());
}

// ---------------------------------------------------------------- layers and feature maps

function requestActivations(now) {
  if (!state.model.layers.length || state.pixels === null) return;
  if (!now && performance.now() - state.lastActivations < 250) return; // while drawing: 4 a second
  activations.request();
}

async function activationsOnce() {
  state.lastActivations = performance.now();
  try {
    const result = await api("/api/activations", { pixels: toBase64(state.pixels) });
    state.layers = result.layers;
    renderMaps(result.layers);
    if (state.selected) await explainCell(state.selected);
  } catch (error) {
    showMessage(error.message);
  }
}

function buildColumns() {
  const columns = $("columns");
  columns.replaceChildren();
  const kernels = state.model.first_kernels;
  for (const layer of state.model.layers) {
    const title = `${layer.path}: ${layer.module_type}${layer.activation ? " + " + layer.activation : ""}`;
    let detail = "";
    if (layer.kernel_size) detail = `${dims(layer.kernel_size)} / ${layer.stride[0]}`;
    const column = el("div", { class: `column${layer.traceable ? " traceable" : ""}`, id: `layer-${layer.index}`, "data-layer": layer.index },
      el("header", {},
        el("div", { class: "name", text: title }),
        el("div", { class: "meta", text: `${dims(layer.output_shape)}${detail ? "  \u00b7  " + detail : ""}` }),
        el("div", { class: "meta", text: `${layer.params.toLocaleString("en-US")} params` })),
      el("div", { class: "maps" }));
    if (kernels && kernels.layer === layer.index) column.classList.add("first-conv");
    columns.append(column);
  }
}

function mapScale(h, count) {
  const target = count > 8 ? 60 : 92;
  return Math.max(1, Math.min(16, Math.floor(target / h)));
}

function colour(value, low, high, signed) {
  if (signed) {
    const bound = Math.max(Math.abs(low), Math.abs(high)) || 1;
    const t = value / bound;
    if (t >= 0) return [Math.round(255 * t), Math.round(140 * t), 0]; // positive: orange on black
    return [0, Math.round(-110 * t), Math.round(-255 * t)]; // negative: blue on black
  }
  const t = high > low ? (value - low) / (high - low) : 0;
  const g = Math.round(255 * t);
  return [g, g, g];
}

function drawMap(canvas, values, offset, h, w, scale, low, high, signed) {
  canvas.width = w * scale;
  canvas.height = h * scale;
  const context = canvas.getContext("2d");
  const image = context.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const [r, g, b] = colour(values[offset + i], low, high, signed);
    image.data[i * 4] = r;
    image.data[i * 4 + 1] = g;
    image.data[i * 4 + 2] = b;
    image.data[i * 4 + 3] = 255;
  }
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  small.getContext("2d").putImageData(image, 0, 0);
  context.imageSmoothingEnabled = false;
  context.drawImage(small, 0, 0, canvas.width, canvas.height);
}

function kernelImage(weights) {
  // One kernel (C_in, kH, kW): grey for one input channel, RGB for three, else the mean.
  const channels = weights.length;
  const kh = weights[0].length;
  const kw = weights[0][0].length;
  const flat = weights.flat(2);
  const bound = Math.max(...flat.map(Math.abs)) || 1;
  const canvas = el("canvas", { class: "kernel-image", title: "the kernel: white positive, black negative" });
  canvas.width = kw;
  canvas.height = kh;
  const context = canvas.getContext("2d");
  const image = context.createImageData(kw, kh);
  for (let y = 0; y < kh; y++) {
    for (let x = 0; x < kw; x++) {
      for (let ch = 0; ch < 3; ch++) {
        let v;
        if (channels === 3) v = weights[ch][y][x];
        else v = weights.reduce((sum, kernel) => sum + kernel[y][x], 0) / channels;
        image.data[(y * kw + x) * 4 + ch] = Math.round(127.5 + (127.5 * v) / bound);
      }
      image.data[(y * kw + x) * 4 + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
  canvas.style.width = "30px";
  canvas.style.height = `${Math.round((30 * kh) / kw)}px`;
  return canvas;
}

function renderMaps(layers) {
  const kernels = state.model.first_kernels;
  for (const layer of layers) {
    const column = $(`layer-${layer.index}`);
    const maps = column.querySelector(".maps");
    const values = new Float32Array(fromBase64(layer.values).buffer);
    const signed = layer.min < 0;
    maps.replaceChildren();
    if (layer.shape.length === 3) {
      const [, h, w] = layer.shape;
      const count = layer.maps_sent;
      const scale = mapScale(h, count);
      maps.style.gridTemplateColumns = `repeat(${count > 8 ? 2 : 1}, auto)`;
      for (let c = 0; c < count; c++) {
        const canvas = el("canvas", { class: "values", "data-channel": c, title: `map ${c}: click a cell` });
        drawMap(canvas, values, c * h * w, h, w, scale, layer.min, layer.max, signed);
        const holder = el("div", { class: "map" });
        if (kernels && kernels.layer === layer.index) holder.append(kernelImage(kernels.weights[c]));
        holder.append(canvas);
        maps.append(holder);
        const info = state.model.layers[layer.index];
        if (info.traceable) {
          canvas.addEventListener("click", (event) => {
            const box = canvas.getBoundingClientRect();
            const clamp = (v, n) => Math.min(n - 1, Math.max(0, Math.floor(v * n)));
            const col = clamp((event.clientX - box.left) / box.width, w);
            const row = clamp((event.clientY - box.top) / box.height, h);
            state.selected = { layer: layer.index, channel: c, row, col };
            markSelection();
            explainCell(state.selected);
          });
        }
      }
      if (layer.shape[0] > count) {
        maps.append(el("div", { class: "meta", text: `first ${count} of ${layer.shape[0]} maps` }));
      }
    } else {
      const n = values.length;
      const rows = Math.min(n, 40);
      const cols = Math.ceil(n / rows);
      const padded = new Float32Array(rows * cols).fill(layer.min);
      for (let i = 0; i < n; i++) padded[(i % rows) * cols + Math.floor(i / rows)] = values[i];
      const canvas = el("canvas", { class: "vector", title: `${n} values, top to bottom then left to right` });
      const classes = state.model.classes;
      const labelled = n === classes.length && n <= 20 && layer.index === state.model.layers.at(-1).index;
      const cell = labelled ? 14 : n <= 40 ? 8 : 4;
      drawMap(canvas, padded, 0, rows, cols, cell, layer.min, layer.max, signed);
      const holder = el("div", { class: "map" }, canvas);
      if (labelled) { // the output layer: one logit per class, named
        const names = el("div", { class: "class-names" });
        classes.forEach((name, i) => names.append(el("div", { text: `${name} ${formatNumber(values[i], 3)}` })));
        holder.append(names);
      }
      maps.append(holder);
    }
  }
  markSelection();
}

function markSelection() {
  for (const old of document.querySelectorAll("canvas.values.selected")) old.classList.remove("selected");
  if (!state.selected || !state.layers) return;
  const { layer, channel, row, col } = state.selected;
  const canvas = document.querySelector(`#layer-${layer} canvas.values[data-channel="${channel}"]`);
  if (!canvas) return;
  const shape = state.layers[layer].shape;
  const scale = canvas.width / shape[2];
  const context = canvas.getContext("2d");
  context.strokeStyle = "#ff3b1f";
  context.lineWidth = 2;
  context.strokeRect(col * scale - 2, row * scale - 2, scale + 4, scale + 4);
  canvas.classList.add("selected");
}

// ---------------------------------------------------------------- one cell, explained

async function explainCell(cell) {
  try {
    const trace = await api("/api/explain", { pixels: toBase64(state.pixels), ...cell });
    renderExplanation(trace);
  } catch (error) {
    showMessage(error.message);
  }
}

function numbersTable(matrix, classify) {
  const table = el("table", { class: "numbers" });
  matrix.forEach((row, r) => {
    const tr = el("tr");
    row.forEach((value, c) => {
      const td = el("td", { text: value === null ? "\u00b7" : formatNumber(value, 3) });
      const kind = classify ? classify(r, c) : "";
      if (kind) td.className = kind;
      tr.append(td);
    });
    table.append(tr);
  });
  return table;
}

function windowCanvas(map, trace, label) {
  const h = map.length;
  const w = map[0].length;
  const flat = map.flat().map((v) => (v === null ? NaN : v));
  const finite = flat.filter(Number.isFinite);
  const low = Math.min(...finite);
  const high = Math.max(...finite);
  const scale = Math.max(1, Math.min(12, Math.floor(150 / Math.max(h, w))));
  const canvas = el("canvas", { class: "input-map" }); // CSS keeps a large input at 200 px
  drawMap(canvas, flat.map((v) => (Number.isFinite(v) ? v : low)), 0, h, w, scale, low, high, low < 0);
  const context = canvas.getContext("2d");
  const [ph, pw] = trace.padding;
  if (ph || pw) {
    context.strokeStyle = "#8fa3c7";
    context.setLineDash([3, 2]);
    context.strokeRect(pw * scale + 0.5, ph * scale + 0.5, (w - 2 * pw) * scale - 1, (h - 2 * ph) * scale - 1);
    context.setLineDash([]);
  }
  const [r0, c0] = trace.window_origin;
  const [eh, ew] = trace.extent;
  context.strokeStyle = "#e0452b";
  context.lineWidth = 2;
  context.strokeRect(c0 * scale + 1, r0 * scale + 1, ew * scale - 2, eh * scale - 2);
  return el("div", { class: "grid-box" }, el("div", { text: label }), canvas);
}

function renderExplanation(trace) {
  $("explain-empty").hidden = true;
  $("explain-body").hidden = false;
  const info = state.model.layers[trace.layer];
  const what = trace.kind === "conv"
    ? `stride ${trace.stride.join(",")}, padding ${trace.padding.join(",")}${trace.groups > 1 ? `, groups ${trace.groups}` : ""}`
    : `${trace.mode} pooling ${dims(trace.extent)}, stride ${trace.stride.join(",")}, padding ${trace.padding.join(",")}`;
  $("explain-title").textContent =
    `Layer ${info.path} (${info.module_type}), map ${trace.channel}, cell (${trace.at[0]}, ${trace.at[1]}): ${what}. ` +
    `Window at (${trace.window_origin.join(", ")}) of the ${trace.padding.some((p) => p) ? "padded " : ""}input.`;
  const inputs = $("explain-inputs");
  inputs.replaceChildren();
  trace.input_maps.forEach((map, i) => {
    const channel = trace.kind === "conv" ? trace.first_channel + i : trace.channel;
    const first = trace.layer === state.model.layers[0].index;
    inputs.append(windowCanvas(map, trace, first ? `the normalised image, channel ${channel}` : `input map ${channel}`));
  });
  if (trace.input_channels > trace.input_maps.length) {
    inputs.append(el("div", { class: "grid-box", text: `(+${trace.input_channels - trace.input_maps.length} more input maps)` }));
  }
  const channels = $("explain-channels");
  channels.replaceChildren();
  for (const part of trace.channels.slice(0, 8)) {
    const box = el("div", { class: "grid-box" });
    const label = trace.kind === "conv" ? `channel ${trace.first_channel + part.channel}: window \u00d7 kernel` : "window";
    box.append(el("div", { text: label }));
    const row = el("div", { class: "grids" }, numbersTable(part.window));
    if (part.kernel) row.append(numbersTable(part.kernel));
    box.append(row);
    channels.append(box);
  }
  const lines = [];
  if (trace.kind === "conv") {
    for (const part of trace.channels) lines.push(part.equation);
    if (trace.input_channels > trace.channels.length) lines.push(`... ${trace.input_channels - trace.channels.length} more channels`);
    lines.push(`channel sums${trace.bias !== null ? " + bias" : ""}: ${trace.sum_equation}`);
  } else {
    lines.push(trace.equation);
  }
  if (trace.activation) lines.push(trace.activation_equation);
  $("explain-equation").textContent = lines.join("\n");
  const check = $("explain-check");
  check.replaceChildren();
  const sum = el("strong", { id: "explain-sum", "data-value": trace.result, text: formatNumber(trace.result, 6) });
  const shown = el("strong", { id: "explain-model", "data-value": trace.model_before, text: formatNumber(trace.model_before, 6) });
  check.append("Sum ", sum, "; the map's value before the activation: ", shown);
  if (trace.activation) {
    check.append(`; after ${trace.activation}: `,
      el("strong", { id: "explain-activated", "data-value": trace.activated, text: formatNumber(trace.activated, 6) }),
      " vs the map's ",
      el("strong", { id: "explain-model-after", "data-value": trace.model_after, text: formatNumber(trace.model_after, 6) }));
  }
  check.append(" ", el("span", {
    class: trace.matches ? "ok" : "off",
    id: "explain-verdict",
    text: trace.matches ? `\u2713 equal to float tolerance (difference ${trace.difference.toExponential(1)})` : `\u2717 differ by ${trace.difference}`,
  }));
}

// ---------------------------------------------------------------- test images and uploads

async function loadTestImages(start) {
  if (!state.model.test_images) {
    $("test-note").textContent = state.model.data_note || "";
    $("test-pages").hidden = true;
    return;
  }
  try {
    const page = await api(`/api/test-images?start=${start}&count=24`);
    state.testStart = page.start;
    $("test-note").textContent = `${page.total.toLocaleString("en-US")} in ${state.model.test_data}`;
    $("test-range").textContent = `${page.start}\u2013${page.start + page.images.length - 1}`;
    const grid = $("test-images");
    grid.replaceChildren();
    for (const item of page.images) {
      const pixels = fromBase64(item.pixels);
      const canvas = imageCanvas(pixels);
      const thumb = el("div", { class: "thumb", "data-index": item.index, "data-label": item.label, title: `test image ${item.index}: ${item.label}` },
        canvas, el("span", { text: item.label }));
      thumb.addEventListener("click", () => {
        for (const other of grid.querySelectorAll(".thumb.chosen")) other.classList.remove("chosen");
        thumb.classList.add("chosen");
        setImage(pixels, `${item.label} (test image ${item.index})`);
      });
      grid.append(thumb);
    }
  } catch (error) {
    $("test-note").textContent = error.message;
  }
}

async function upload(file) {
  const limit = state.model.max_upload_bytes;
  if (file.size > limit) {
    const mib = limit >= 2 ** 20 ? ` (${(limit / 2 ** 20).toFixed(1)} MiB)` : "";
    showMessage(`${file.name} is too large: uploads are limited to ${limit.toLocaleString("en-US")} bytes${mib}; ` +
      "expected a smaller image");
    return;
  }
  const invert = $("invert").checked ? "true" : "false";
  try {
    const result = await api(`/api/upload?name=${encodeURIComponent(file.name)}&invert=${invert}`, undefined, {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: file,
    });
    showMessage("");
    setImage(fromBase64(result.pixels), "");
  } catch (error) {
    showMessage(error.message);
  }
}

// ---------------------------------------------------------------- slide mode

async function setupSlides() {
  const data = await api("/api/slides");
  state.slide.examples = data.examples;
  const select = $("slide-example");
  for (const example of data.examples) select.append(el("option", { value: example.name, text: `${example.name}: ${example.title}` }));
  for (const name of data.kernels) $("slide-kernel").append(el("option", { value: name, text: name === "slide" ? "the slide's kernel" : name }));
  select.addEventListener("change", () => { applyExample(); slideTo([0, 0]); });
  for (const id of ["slide-kernel", "slide-stride", "slide-padding", "slide-size"]) {
    $(id).addEventListener("change", () => slideTo([0, 0]));
  }
  $("slide-next").addEventListener("click", () => slideStep(1));
  $("slide-prev").addEventListener("click", () => slideStep(-1));
  $("slide-reset").addEventListener("click", () => slideTo([0, 0]));
  $("slide-play").addEventListener("click", togglePlay);
  applyExample();
  await slideTo([0, 0]);
}

function currentExample() {
  return state.slide.examples.find((e) => e.name === $("slide-example").value);
}

function applyExample() {
  const example = currentExample();
  $("slide-stride").value = example.stride;
  $("slide-padding").value = example.padding;
  $("slide-size").value = example.size;
  $("slide-kernel").value = "slide";
  const conv = example.kind === "conv";
  $("slide-kernel-label").hidden = !conv;
  $("slide-size-label").hidden = conv;
  $("slide-kernel-title").textContent = conv ? "Kernel" : "Window";
}

function slideStep(delta) {
  const shape = state.slide.shape;
  if (!shape) return;
  const cells = shape[0] * shape[1];
  const index = (state.slide.at[0] * shape[1] + state.slide.at[1] + delta + cells) % cells;
  slideTo([Math.floor(index / shape[1]), index % shape[1]]);
}

function togglePlay() {
  if (state.slide.timer) {
    clearInterval(state.slide.timer);
    state.slide.timer = null;
    $("slide-play").textContent = "Play";
  } else {
    state.slide.timer = setInterval(() => slideStep(1), 800);
    $("slide-play").textContent = "Pause";
  }
}

async function slideTo(at) {
  const example = currentExample();
  const body = {
    example: example.name,
    row: at[0],
    col: at[1],
    stride: Number($("slide-stride").value),
    padding: Number($("slide-padding").value),
  };
  if (example.kind === "conv") body.kernel = $("slide-kernel").value;
  else body.size = Number($("slide-size").value);
  try {
    const trace = await api("/api/slide", body);
    $("slide-message").textContent = "";
    state.slide.at = trace.at;
    state.slide.shape = trace.output_shape;
    renderSlide(trace);
  } catch (error) {
    $("slide-message").textContent = error.message;
  }
}

function renderSlide(trace) {
  const [ph, pw] = trace.padding;
  const [r0, c0] = trace.window_origin;
  const [eh, ew] = trace.extent;
  $("slide-title").textContent = trace.title;
  $("slide-note").textContent = trace.note || "";
  const inputs = $("slide-input");
  inputs.replaceChildren();
  trace.input_maps.forEach((map, i) => {
    const h = map.length;
    const w = map[0].length;
    const classify = (r, c) => {
      const inWindow = r >= r0 && r < r0 + eh && c >= c0 && c < c0 + ew;
      if (inWindow) return "win";
      return r < ph || r >= h - ph || c < pw || c >= w - pw ? "pad" : "";
    };
    const label = trace.input_maps.length > 1 ? ["red", "green", "blue"][i] || `channel ${i}` : "";
    inputs.append(el("div", { class: "grid-box" }, el("div", { text: label }), numbersTable(map, classify)));
  });
  const kernels = $("slide-kernels");
  kernels.replaceChildren();
  for (const part of trace.channels) {
    kernels.append(el("div", { class: "grid-box" }, numbersTable(part.kernel || part.window)));
  }
  if (trace.bias !== null && trace.bias !== undefined) kernels.append(el("div", { class: "grid-box", text: `bias ${formatNumber(trace.bias)}` }));
  const [row, col] = trace.at;
  const cols = trace.output_shape[1];
  const classify = (r, c) => {
    const index = r * cols + c;
    const current = row * cols + col;
    if (index === current) return "current";
    return index < current ? "done" : "todo";
  };
  const output = $("slide-output");
  output.replaceChildren(numbersTable(trace.output, classify));
  $("slide-at").textContent = `cell (${row}, ${col}) of ${dims(trace.output_shape)}`;
  const lines = trace.kind === "conv" && trace.channels.length > 1
    ? [...trace.channels.map((c) => c.equation), trace.sum_equation]
    : [trace.equation];
  $("slide-equation").textContent = lines.join("\n");
  $("slide-result").textContent = formatNumber(trace.result, 6);
}

// ---------------------------------------------------------------- start

function showTab(name) {
  $("layers-mode").hidden = name !== "layers";
  $("slide-mode").hidden = name !== "slide";
  $("tab-layers").classList.toggle("active", name === "layers");
  $("tab-slide").classList.toggle("active", name === "slide");
}

async function start() {
  $("tab-layers").addEventListener("click", () => showTab("layers"));
  $("tab-slide").addEventListener("click", () => showTab("slide"));
  try {
    state.model = await api("/api/model");
  } catch (error) {
    $("model-line").textContent = error.message;
    return;
  }
  const m = state.model;
  const trained = m.trained_on ? `trained on ${m.trained_on}` : "untrained";
  $("model-line").textContent =
    `${m.model} (${trained}; ${m.total_params.toLocaleString("en-US")} params) from ${m.source}` +
    (m.kind === "export" ? " \u2014 predictions by the export's runtime" : "");
  $("adapter").textContent = `Input ${dims(m.data_shape)}; into the model: ${m.adapter}.`;
  $("layers-note").textContent = m.layers_note || "";
  setupCanvas();
  $("clear").addEventListener("click", () => {
    clearCanvas();
    $("truth").textContent = "";
    inputChanged(performance.now());
  });
  $("upload").addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (file) upload(file);
  });
  $("prev-tests").addEventListener("click", () => loadTestImages(Math.max(0, state.testStart - 24)));
  $("next-tests").addEventListener("click", () => {
    const next = state.testStart + 24;
    if (next < m.test_images) loadTestImages(next);
  });
  buildColumns();
  await loadTestImages(0);
  inputChanged(performance.now());
  setupSlides();
}

start();
