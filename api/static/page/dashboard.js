// Dashboard: every model's state (GET /models), the service's (GET /status) and the usage report
// (GET /report) as charts, refreshed every few seconds while the tab is shown (pausable).

import { call } from "./api.js";
import { $, h, ms, showError } from "./dom.js";
import * as charts from "./charts.js";

const EVERY_MS = 5000;
let visible = false;
let timer = null;

export function init() {
  $("#dash-auto").addEventListener("change", schedule);
  $("#dash-refresh").addEventListener("click", refresh);
  document.addEventListener("visibilitychange", schedule);
}

export function show() {
  visible = true;
  refresh();
}

export function hide() {
  visible = false;
  schedule();
}

/** The next refresh, only while the tab is shown, the page visible and refreshing not paused. */
function schedule() {
  clearTimeout(timer);
  timer = null;
  if (visible && !document.hidden && $("#dash-auto").checked) timer = setTimeout(refresh, EVERY_MS);
}

export async function refresh() {
  clearTimeout(timer);
  try {
    const [models, status, report] = await Promise.all(["models", "status", "report"].map((path) => call(path)));
    renderModels(models.data.models, status.data);
    renderReport(report.data);
    showError($("#dash-error"), null);
    $("#dash-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    showError($("#dash-error"), error);
  } finally {
    schedule();
  }
}

function renderModels(models, status) {
  $("#dash-models tbody").replaceChildren(...models.map((m) => {
    const state = h("td", { class: `state state-${m.state}` }, m.state);
    if (m.reason) state.append(h("span", { class: "reason" }, `: ${m.reason}`));
    return h("tr", { "data-model": m.name, "data-state": m.state },
      h("th", { scope: "row" }, m.name), h("td", {}, m.task), state,
      h("td", { title: m.runtime_reason || "" }, m.runtime || "–"), h("td", {}, m.device || "–"),
      h("td", {}, m.memory_mb === undefined ? "–" : `${m.memory_mb} MB`),
      h("td", {}, m.load_seconds === undefined ? "–" : `${m.load_seconds} s`));
  }));
  const store = status.shared_store.backend === "redis"
    ? `Redis (${status.shared_store.available ? "available" : "unavailable"})` : "this process' memory";
  $("#dash-service").textContent = `Ready: ${status.ready ? "yes" : "no"}. Inference requests running or queued: `
    + `${status.admission.admitted} of ${status.admission.capacity}. Cache and report: ${store}. `
    + `Worker ${status.worker.index + 1} of ${status.worker.count} answered.`;
}

function renderReport(report) {
  const hours = report.window_seconds / 3600;
  $("#dash-window").textContent = `Over the last ${hours >= 1 ? `${+hours.toFixed(1)} hours` : `${report.window_seconds} s`}`
    + ` (MONITOR_WINDOW): ${report.distinct_images} distinct images`
    + (report.shared ? ", every replica's requests (Redis)" : "")
    + (report.partial ? "; some requests are not in it yet (Redis was away)" : "") + ".";
  charts.minutes($("#chart-minutes"), report.series);
  const counted = (groups) => Object.entries(groups).sort((a, b) => b[1].num_requested - a[1].num_requested)
    .map(([name, s]) => ({ name, value: s.num_requested,
                           text: `${s.num_requested} (${s.num_cache_hits} cached, ${s.num_errors} errors)` }));
  charts.bars($("#chart-routes"), counted(report.routes));
  charts.bars($("#chart-models"), counted(report.models));
  charts.latency($("#chart-latency"), { ...prefixed("model", report.models), ...prefixed("route", report.routes) });
  $("#dash-images tbody").replaceChildren(...report.images.map((image) => h("tr", {},
    h("td", { title: image.key }, shortKey(image.key)), h("td", {}, String(image.num_requested)),
    h("td", {}, String(image.num_cache_hits)), h("td", {}, String(image.num_errors)),
    h("td", {}, image.processing_time_mean === null ? "–" : ms(image.processing_time_mean * 1000)))));
}

function prefixed(kind, groups) {
  return Object.fromEntries(Object.entries(groups).map(([name, stats]) => [`${kind} ${name}`, stats]));
}

function shortKey(key) {
  const [kind, hex] = key.split(":");
  return hex ? `${kind}:${hex.slice(0, 12)}…` : key;
}
