// cnnlab view: the state, the helpers, drawing, predictions, test images and uploads; runs last
// (layers.js draws the feature maps and explains a cell, slide.js is the slide mode). Plain
// JavaScript, served by cnnlab; no build step, no CDN. Images travel as raw uint8 pixels of the
// training data's shape (base64); the server runs the model and the reference arithmetic, the
// page draws.
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
  serverMs: [], // per update: the server's share (the forward pass and the top-5)
  updates: 0,
  top: [],
  testStart: 0,
  slide: { at: [0, 0], shape: null, timer: null, examples: [], requests: 0 },
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
let uploadsInFlight = 0;
// nothing in flight (an upload, then the prediction it starts): for tests
state.idle = () => uploadsInFlight === 0 && !predictions.busy && !activations.busy;

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
    state.serverMs.push(result.server_ms);
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

// ---------------------------------------------------------------- layer updates

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
  uploadsInFlight += 1;
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
  } finally {
    uploadsInFlight -= 1;
  }
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
