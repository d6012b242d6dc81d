// Every call the page makes goes through here: the public API, relative to the page (so a
// service behind a path prefix works), with the user's key as X-API-Key when one is set.

const KEY = "image-classification-service.api-key";
const keyListeners = [];

/** The key for this browser session (sessionStorage: gone when the tab closes). */
export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
  keyListeners.forEach((listener) => listener(key));
}

export function onKeyChange(listener) {
  keyListeners.push(listener);
}

/** An error answer of the API, or a call that got no answer (status 0). */
export class ApiError extends Error {
  constructor(status, type, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.type = type;
    this.retryAfter = retryAfter;
  }
}

/**
 * Call the API. `body`: FormData, or an object sent as JSON. `as`: "json" or "blob".
 * Resolves to {data, response, timing}; timing holds the round trip measured here and the
 * service's own Server-Timing figures (decode, inference, total), in milliseconds.
 */
export async function call(path, { method = "GET", params = null, body = null, as = "json", signal } = {}) {
  const url = params ? `${path}?${new URLSearchParams(params)}` : path;
  const headers = {};
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  let payload = body;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const started = performance.now();
  let response;
  try {
    response = await fetch(url, { method, headers, body: payload, cache: "no-store", signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", "The service could not be reached.");
  }
  if (!response.ok) throw await errorOf(response);
  const data = as === "blob" ? await response.blob() : await response.json();
  const timing = { roundTrip: performance.now() - started, ...serverTiming(response.headers.get("Server-Timing")) };
  return { data, response, timing };
}

/** The API's own error message, from its JSON error shape; Retry-After with a 503. */
async function errorOf(response) {
  let type = "http_error";
  let message = `The service answered ${response.status} ${response.statusText}.`;
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error.message === "string") {
      ({ type, message } = body.error);
    } else if (body && body.success === false && typeof body.error === "string") {
      message = body.error;   // DeepStack's shape (the /v1/vision routes)
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, type, message, response.headers.get("Retry-After"));
}

/** "decode;dur=3.1, inference;dur=12.4, total;dur=16.0" → {decode: 3.1, inference: 12.4, total: 16}. */
export function serverTiming(header) {
  const figures = {};
  for (const entry of (header || "").split(",")) {
    const [name, ...parameters] = entry.trim().split(";");
    const duration = parameters.map((p) => p.trim()).find((p) => p.startsWith("dur="));
    if (name && duration) figures[name] = Number(duration.slice(4));
  }
  return figures;
}

/** The request body for one photo: the file as multipart `image`, or the URL as JSON. */
export function photoBody(photo, bytes = null) {
  if (photo.url) return { image_url: photo.url };
  const form = new FormData();
  form.append("image", bytes || photo.blob, photo.name || "photo");
  return form;
}

let modelsPromise = null;

/** GET /models, once per key (a new key asks again). */
export function models({ fresh = false } = {}) {
  if (fresh || !modelsPromise) {
    const asked = call("models").then(({ data }) => data.models);
    asked.catch(() => { if (modelsPromise === asked) modelsPromise = null; });
    modelsPromise = asked;
  }
  return modelsPromise;
}
