// The dashboard's charts, drawn here (no chart library): requests per minute as SVG columns,
// and horizontal bars in HTML (long route names wrap instead of being cut).

import { h, ms, svg } from "./dom.js";

const WIDTH = 600;
const HEIGHT = 150;
const AXIS = 18;

/** Columns of requests per minute, the errors of each minute in red at their foot. */
export function minutes(container, series) {
  const count = series.minutes.length;
  const top = Math.max(1, ...series.requests);
  const step = WIDTH / Math.max(count, 1);
  const scale = (HEIGHT - AXIS - 4) / top;
  const columns = series.minutes.flatMap((minute, i) => {
    const x = i * step + step * 0.1;
    const width = step * 0.8;
    const total = series.requests[i] * scale;
    const errors = series.errors[i] * scale;
    const label = `${clock(minute)}: ${series.requests[i]} requests, ${series.errors[i]} errors`;
    return [svg("g", { class: "minute", "data-minute": minute, "data-requests": series.requests[i] },
      svg("title", {}, label),
      svg("rect", { x, y: HEIGHT - AXIS - total, width, height: total, class: "requests" }),
      svg("rect", { x, y: HEIGHT - AXIS - errors, width, height: errors, class: "errors" }))];
  });
  const ticks = series.minutes.map((minute, i) => [minute, i]).filter(([minute]) => minute % 15 === 0)
    .map(([minute, i]) => svg("text", { x: Math.min(Math.max(i * step + step / 2, 18), WIDTH - 18), y: HEIGHT - 4,
                                        class: "tick", "text-anchor": "middle" }, clock(minute)));
  const sum = (values) => values.reduce((a, b) => a + b, 0);
  container.replaceChildren(svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "columns",
    "aria-label": `${sum(series.requests)} requests and ${sum(series.errors)} errors in the last `
      + `${count} minutes; at most ${top} in one minute` },
  svg("line", { x1: 0, x2: WIDTH, y1: HEIGHT - AXIS, y2: HEIGHT - AXIS, class: "axis" }),
  svg("text", { x: 2, y: 12, class: "tick" }, `${top} / min`), ...columns, ...ticks));
}

function clock(minute) {
  return new Date(minute * 60000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** Horizontal bars: [{name, value, text}] scaled to the largest value. */
export function bars(container, entries, empty = "Nothing yet.") {
  if (!entries.length) {
    container.replaceChildren(h("p", { class: "muted" }, empty));
    return;
  }
  const top = Math.max(...entries.map((e) => e.value), 1e-9);
  container.replaceChildren(h("ul", { class: "bars" }, ...entries.map((entry) => {
    const fill = h("span", { class: "fill" });
    fill.style.width = `${(100 * entry.value) / top}%`;
    return h("li", { "data-name": entry.name },
      h("span", { class: "label" }, entry.name),
      h("span", { class: "track", "aria-hidden": "true" }, fill),
      h("span", { class: "value" }, entry.text));
  })));
}

/** Processing time per name: the mean as a bar, min to max as a line across it. */
export function latency(container, groups) {
  const entries = Object.entries(groups).filter(([, s]) => s.processing_time_mean !== null);
  if (!entries.length) {
    container.replaceChildren(h("p", { class: "muted" }, "No request was processed yet (cache hits take no time)."));
    return;
  }
  const top = Math.max(...entries.map(([, s]) => s.processing_time_max));
  container.replaceChildren(h("ul", { class: "bars" }, ...entries.map(([name, s]) => {
    const fill = h("span", { class: "fill" });
    fill.style.width = `${(100 * s.processing_time_mean) / top}%`;
    const range = h("span", { class: "range" });
    range.style.left = `${(100 * s.processing_time_min) / top}%`;
    range.style.width = `${(100 * (s.processing_time_max - s.processing_time_min)) / top}%`;
    return h("li", { "data-name": name },
      h("span", { class: "label" }, name),
      h("span", { class: "track", "aria-hidden": "true" }, fill, range),
      h("span", { class: "value" }, `${ms(s.processing_time_mean * 1000)} (${ms(s.processing_time_min * 1000)}`
        + `–${ms(s.processing_time_max * 1000)})`));
  })));
}
