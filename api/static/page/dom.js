// Small DOM helpers. Text always goes in as text (textContent), never as HTML: labels, model
// names and error messages come from the service, and none of it is markup.

export const $ = (selector, root = document) => root.querySelector(selector);

/** An element with attributes and children (strings become text nodes). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.filter((child) => child !== null && child !== undefined));
  return element;
}

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element (presentation attributes only; the policy allows no style attribute). */
export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  element.append(...children);
  return element;
}

export function ms(value) {
  if (value === undefined || value === null || Number.isNaN(value)) return "–";
  return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

export function percent(score) {
  return `${(score * 100).toFixed(2)} %`;
}

/** A definition list's content from [term, value] pairs. */
export function fillList(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

// Distinct colours that carry white text; a class keeps its colour for the whole answer.
const PALETTE = ["#1d4ed8", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2",
                 "#c026d3", "#65a30d", "#b45309", "#4f46e5", "#be123c", "#0f766e"];

/** A colour per class of an answer (its labels in alphabetical order), distinct up to 12 classes. */
export function classColours(labels) {
  const sorted = [...new Set(labels)].sort();
  return new Map(sorted.map((label, i) => [label, PALETTE[i % PALETTE.length]]));
}

/** Show an error (or hide the box when `error` is null): the API's own message, and when to retry. */
export function showError(box, error) {
  box.hidden = !error;
  box.textContent = error ? describeError(error) : "";
}

export function describeError(error) {
  let text = error.message;
  if (error.retryAfter) text += ` Retry after ${error.retryAfter} s.`;
  if (error.status) text += ` (HTTP ${error.status}${error.type ? ", " + error.type : ""})`;
  return text;
}

/** The figures every inference answer gets: the round trip measured by the page, the service's
 * Server-Timing (processing = decoding plus inference), and whether it came from the cache. */
export function fillTimes(dl, timing, answer, result) {
  const processing = timing.decode === undefined ? undefined : timing.decode + timing.inference;
  fillList(dl, [
    ["Round trip", ms(timing.roundTrip)],
    ["Processing", ms(processing)],
    ["Inference", ms(timing.inference)],
    ["From the cache", answer.cached ? "yes" : "no"],
    ["Model", answer.model],
    ["Image", `${result.width} × ${result.height}`],
  ]);
}
