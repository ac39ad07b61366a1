// cnnlab view: every layer's feature maps, and one clicked cell explained step by step.
// Loaded before view.js, which holds the state, the helpers and the requests.
"use strict";

// ---------------------------------------------------------------- layers and feature maps

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
