// Benchmark, as CodeProject.AI's Explorer does it: 3 warm-up calls, then N requests with P in
// flight at a time, and live requests per second, median and 95th percentile round trips and
// errors. Each request is the public API's, as any client's would be. Unless the box is
// unchecked, every request's JPEG carries its own comment (same pixels, new bytes), so each one
// misses the result cache and measures the model, not the cache.

import { call, models, photoBody } from "./api.js";
import { $, fillList, ms, showError } from "./dom.js";
import { photo } from "./photo.js";

const WARM_UP = 3;
const ROUTES = { classify: ["v2/classify", "classification"], detect: ["v2/detect", "detection"] };
let running = null;    // the AbortController of the run in progress

export function init() {
  $("#bench-route").addEventListener("change", () => fillModels());
  $("#bench-start").addEventListener("click", () => (running ? stop() : start()));
}

export function show() {}
export function hide() {}

/** The route's models in the model list (after /models answered or the route changed). */
export async function fillModels() {
  const task = ROUTES[$("#bench-route").value][1];
  const select = $("#bench-model");
  const kept = select.value;
  const names = (await models()).filter((m) => m.task === task).map((m) => m.name);
  select.replaceChildren(...names.map((name) => new Option(name, name)));
  if (names.includes(kept)) select.value = kept;
}

function settings() {
  const count = Math.min(10000, Math.max(1, Math.round(Number($("#bench-n").value)) || 50));
  $("#bench-n").value = count;
  return { path: ROUTES[$("#bench-route").value][0], model: $("#bench-model").value,
           parallel: Number($("#bench-parallel").value), count, vary: $("#bench-vary").checked };
}

function stop() {
  running.abort();
}

async function start() {
  const current = photo();
  if (!current) {
    showError($("#bench-error"), { message: "Choose, drop or paste a photo first." });
    return;
  }
  const run = { ...settings(), photo: current, token: Math.random().toString(36).slice(2),
                latencies: [], errors: 0, done: 0, started: 0 };
  running = new AbortController();
  run.signal = running.signal;
  $("#bench-start").textContent = "Stop";
  showError($("#bench-error"), null);
  try {
    run.jpeg = run.vary && current.blob ? await jpegOf(current.blob) : null;
    phase(`Warming up: ${WARM_UP} calls…`);
    for (let i = 0; i < WARM_UP; i++) await request(run, `warm-up ${i}`);
    phase(`Running ${run.count} requests, ${run.parallel} at a time…`);
    run.started = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < run.count && !run.signal.aborted) await measured(run, next++);
    };
    await Promise.all(Array.from({ length: run.parallel }, worker));
    update(run);
    phase(run.signal.aborted ? `Stopped after ${run.done} requests.` : `Done: ${run.done} requests.`);
  } catch (error) {
    if (error.name !== "AbortError") showError($("#bench-error"), error);
    phase(error.name === "AbortError" ? "Stopped." : "The warm-up failed; nothing was measured.");
  } finally {
    running = null;
    $("#bench-start").textContent = "Start";
  }
}

async function measured(run, index) {
  const started = performance.now();
  try {
    await request(run, index);
    run.latencies.push(performance.now() - started);
  } catch (error) {
    if (error.name === "AbortError") return;
    run.errors += 1;
    showError($("#bench-error"), error);
  }
  run.done += 1;
  if (!run.pending) {
    run.pending = true;
    requestAnimationFrame(() => { run.pending = false; update(run); });
  }
}

function request(run, index) {
  const bytes = run.jpeg ? commented(run.jpeg, `benchmark ${run.token} ${index}`) : null;
  return call(run.path, { method: "POST", params: run.model ? { model: run.model } : null,
                          body: photoBody(run.photo, bytes), signal: run.signal });
}

function update(run) {
  const seconds = (performance.now() - run.started) / 1000;
  const sorted = [...run.latencies].sort((a, b) => a - b);
  $("#bench-progress").value = run.done / run.count;
  fillList($("#bench-stats"), [
    ["Requests", `${run.done} of ${run.count}`],
    ["Rate", `${(run.done / seconds).toFixed(1)} requests/s`],
    ["p50", ms(rank(sorted, 0.5))],
    ["p95", ms(rank(sorted, 0.95))],
    ["Errors", String(run.errors)],
    ["Elapsed", `${seconds.toFixed(1)} s`],
  ]);
}

/** The nearest-rank percentile of sorted values. */
function rank(sorted, q) {
  return sorted.length ? sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] : undefined;
}

function phase(text) {
  $("#bench-phase").textContent = text;
}

/** The photo as JPEG bytes: as it is when it is a JPEG, else drawn once and encoded. */
async function jpegOf(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return bytes;
  try {
    const bitmap = await createImageBitmap(blob);
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    return new Uint8Array(await (await canvas.convertToBlob({ type: "image/jpeg", quality: 0.92 })).arrayBuffer());
  } catch {
    return null;   // not an image the browser reads: sent as it is (the service says what is wrong)
  }
}

/** The JPEG with a comment segment (FF FE) after its start marker: new bytes, the same pixels. */
function commented(jpeg, text) {
  const comment = new TextEncoder().encode(text);
  const length = comment.length + 2;
  const out = new Uint8Array(jpeg.length + 2 + length);
  out.set([0xff, 0xd8, 0xff, 0xfe, length >> 8, length & 0xff]);
  out.set(comment, 6);
  out.set(jpeg.subarray(2), 6 + comment.length);
  return new Blob([out], { type: "image/jpeg" });
}
