// Detect: boxes over the photo in per-class colours, a table sorted by score, and the service's
// own annotated image on request. The service is asked once per photo and model, at the
// slider's lowest score (FLOOR); the slider then filters that answer here, without asking again.
// The boxes shown at a score s are those /v2/detect answers with min_score=s: a detection's
// box and score do not depend on the threshold, and candidates under s never suppress one above.

import { call, photoBody } from "./api.js";
import { $, classColours, fillTimes, h, percent, showError, svg } from "./dom.js";
import { onPhoto, photo } from "./photo.js";

export const FLOOR = 0.05;

let visible = false;
let answer = null;     // {key, data, timing}
let sequence = 0;
let annotatedUrl = null;

export function init() {
  $("#detect-model").addEventListener("change", () => run());
  $("#detect-min").addEventListener("input", () => {
    $("#detect-min-value").textContent = threshold().toFixed(2);
    if (answer) draw();
  });
  $("#detect-annotate").addEventListener("click", annotated);
  onPhoto(() => visible && run());
}

export function show() {
  visible = true;
  if (photo() && (!answer || answer.key !== asked())) run();
}

export function hide() {
  visible = false;
}

function threshold() {
  return Number($("#detect-min").value);
}

function model() {
  const name = $("#detect-model").value;
  return name ? { model: name } : {};
}

function asked() {
  return JSON.stringify([photo() && photo().id, model()]);
}

async function run() {
  const current = photo();
  if (!current) {
    showError($("#detect-error"), { message: "Choose, drop or paste a photo first." });
    return;
  }
  const mine = ++sequence;
  const key = asked();
  $("#detect-annotated-figure").hidden = true;
  $("#panel-detect").setAttribute("aria-busy", "true");
  try {
    const { data, timing } = await call("v2/detect", {
      method: "POST", params: { min_score: FLOOR, ...model() }, body: photoBody(current) });
    if (mine !== sequence) return;
    answer = { key, data, timing, photo: current };
    showError($("#detect-error"), null);
    draw();
  } catch (error) {
    if (mine !== sequence) return;
    answer = null;
    $("#detect-result").hidden = true;
    showError($("#detect-error"), error);
  } finally {
    if (mine === sequence) $("#panel-detect").removeAttribute("aria-busy");
  }
}

/** The answer's detections at or above the slider, highest score first. */
function shown() {
  const least = threshold();
  return answer.data.results[0].detections.filter((d) => d.score >= least).sort((a, b) => b.score - a.score);
}

function draw() {
  const result = answer.data.results[0];
  const detections = shown();
  stage(answer.photo, result);
  const font = Math.max(12, Math.round(Math.max(result.width, result.height) / 45));
  const colours = classColours(result.detections.map((d) => d.label));
  // The highest scores drawn last: on top where boxes and labels overlap.
  $("#detect-boxes").replaceChildren(...detections.map((d) => box(d, colours.get(d.label), font, result.width)).reverse());
  $("#detect-table tbody").replaceChildren(...detections.map((d) => row(d, colours.get(d.label))));
  const total = result.detections.length;
  $("#detect-count").textContent = `${detections.length} of ${total} detections at a score of at least `
    + `${threshold().toFixed(2)} (${answer.data.model})`;
  fillTimes($("#detect-times"), answer.timing, answer.data, result);
  $("#detect-result").hidden = false;
}

/** The photo with the overlay in its pixels; a URL's photo (not loaded here) is a blank of its size. */
function stage(current, result) {
  const image = $("#detect-photo");
  const stageBox = $("#detect-stage");
  image.hidden = !current.objectUrl;
  if (current.objectUrl && image.getAttribute("src") !== current.objectUrl) image.src = current.objectUrl;
  stageBox.classList.toggle("blank", !current.objectUrl);
  stageBox.style.aspectRatio = `${result.width} / ${result.height}`;
  stageBox.style.width = `min(100%, ${((55 * result.width) / result.height).toFixed(2)}vh)`;
  $("#detect-boxes").setAttribute("viewBox", `0 0 ${result.width} ${result.height}`);
  $("#detect-note").textContent = current.objectUrl ? ""
    : "The service fetched this photo from its URL; the page loads nothing from other sites, so the boxes are drawn "
      + "on a blank of the photo's size. The annotated image shows them on the photo.";
}

function box(detection, colour, font, width) {
  const { x1, y1, x2, y2 } = detection.box;
  const text = `${detection.label} ${percent(detection.score)}`;
  const labelWidth = Math.min(text.length * font * 0.6 + font * 0.6, width);
  const labelY = y1 >= font * 1.4 ? y1 - font * 1.4 : y1;
  const labelX = Math.min(x1, width - labelWidth);
  return svg("g", { class: "box", "data-label": detection.label, "data-score": detection.score,
                    "data-box": [x1, y1, x2, y2].join(",") },
    svg("title", {}, text),
    svg("rect", { x: x1, y: y1, width: x2 - x1, height: y2 - y1, fill: "none", stroke: colour,
                  "stroke-width": 3, "vector-effect": "non-scaling-stroke" }),
    svg("rect", { x: labelX, y: labelY, width: labelWidth, height: font * 1.4, fill: colour }),
    svg("text", { x: labelX + font * 0.3, y: labelY + font * 1.05, "font-size": font, fill: "#fff" }, text));
}

function row(detection, colour) {
  const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
  swatch.style.background = colour;
  const { x1, y1, x2, y2 } = detection.box;
  return h("tr", { "data-label": detection.label, "data-score": detection.score },
    h("td", {}, swatch, detection.label), h("td", {}, percent(detection.score)),
    h("td", {}, `${x1}, ${y1}, ${x2}, ${y2}`));
}

/** POST /v2/detect?annotate=true at the slider's score: the service's drawing, shown from a blob: URL. */
async function annotated() {
  const current = photo();
  if (!current) {
    showError($("#detect-error"), { message: "Choose, drop or paste a photo first." });
    return;
  }
  const least = threshold();
  try {
    const { data, response } = await call("v2/detect", {
      method: "POST", params: { annotate: "true", min_score: least, ...model() }, body: photoBody(current), as: "blob" });
    if (annotatedUrl) URL.revokeObjectURL(annotatedUrl);
    annotatedUrl = URL.createObjectURL(data);
    $("#detect-annotated").src = annotatedUrl;
    const found = response.headers.get("X-Detections");
    const drawn = response.headers.get("X-Detections-Drawn");
    $("#detect-annotated-caption").textContent = `The service's drawing: ${drawn} of ${found} detections at a score `
      + `of at least ${least.toFixed(2)}, ${response.headers.get("X-Annotated-Size")} pixels.`;
    $("#detect-annotated-figure").hidden = false;
    showError($("#detect-error"), null);
  } catch (error) {
    showError($("#detect-error"), error);
  }
}
