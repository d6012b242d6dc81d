// Classify: the photo, its labels as bars with percentages (POST /v2/classify), and where the
// time went. Runs when the photo, the model or the number of labels changes.

import { call, photoBody } from "./api.js";
import { $, fillTimes, h, percent, showError } from "./dom.js";
import { onPhoto, photo } from "./photo.js";

let visible = false;
let done = null;       // what the shown answer was asked with
let sequence = 0;      // only the latest request's answer is shown

export function init() {
  $("#classify-run").addEventListener("click", () => run());
  $("#classify-model").addEventListener("change", () => run());
  $("#classify-topk").addEventListener("change", () => run());
  onPhoto(() => visible && run());
}

export function show() {
  visible = true;
  if (photo() && done !== asked()) run();
}

export function hide() {
  visible = false;
}

function params() {
  const topK = Math.min(50, Math.max(1, Math.round(Number($("#classify-topk").value)) || 5));
  $("#classify-topk").value = topK;
  const model = $("#classify-model").value;
  return model ? { model, top_k: topK } : { top_k: topK };
}

function asked() {
  return JSON.stringify([photo() && photo().id, params()]);
}

async function run() {
  const current = photo();
  if (!current) {
    showError($("#classify-error"), { message: "Choose, drop or paste a photo first." });
    return;
  }
  const mine = ++sequence;
  const key = asked();
  $("#panel-classify").setAttribute("aria-busy", "true");
  try {
    const { data, timing } = await call("v2/classify", { method: "POST", params: params(), body: photoBody(current) });
    if (mine !== sequence) return;
    done = key;
    showError($("#classify-error"), null);
    render(current, data, timing);
  } catch (error) {
    if (mine !== sequence) return;
    $("#classify-result").hidden = true;
    showError($("#classify-error"), error);
  } finally {
    if (mine === sequence) $("#panel-classify").removeAttribute("aria-busy");
  }
}

function render(current, answer, timing) {
  const result = answer.results[0];
  const image = $("#classify-photo");
  image.hidden = !current.objectUrl;
  if (current.objectUrl) image.src = current.objectUrl;
  $("#classify-note").textContent = current.objectUrl ? ""
    : "The service fetched this photo from its URL; the page loads nothing from other sites.";
  $("#classify-labels").replaceChildren(...result.predictions.map(bar));
  fillTimes($("#classify-times"), timing, answer, result);
  $("#classify-result").hidden = false;
}

function bar(prediction) {
  const fill = h("span", { class: "fill" });
  fill.style.width = `${(prediction.score * 100).toFixed(2)}%`;
  return h("li", { "data-label": prediction.label, "data-score": prediction.score },
    h("span", { class: "label" }, prediction.label),
    h("span", { class: "track", "aria-hidden": "true" }, fill),
    h("span", { class: "value" }, percent(prediction.score)));
}
