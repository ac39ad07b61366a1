// cnnlab view: the slide mode, the lecture's examples stepped one window at a time.
// Loaded before view.js, which holds the state and the helpers.
"use strict";

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

// Requests can overtake one another (a Next click right after a changed field sends two): only
// the newest one's answer is drawn, so the page never ends on an older cell.
async function slideTo(at) {
  const request = ++state.slide.requests;
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
    if (request !== state.slide.requests) return;
    $("slide-message").textContent = "";
    state.slide.at = trace.at;
    state.slide.shape = trace.output_shape;
    renderSlide(trace);
  } catch (error) {
    if (request === state.slide.requests) $("slide-message").textContent = error.message;
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
