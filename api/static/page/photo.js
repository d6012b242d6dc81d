// The photo every tab works on: one for the page, so a photo picked in Classify is there in
// Detect and Benchmark. Dropped anywhere on the page, pasted (Ctrl+V), picked with the file
// chooser, or an image URL that the service fetches (the page itself loads nothing from
// another origin, so a URL's photo is not shown: its boxes are drawn on a blank of its size).

import { h } from "./dom.js";

let current = null;   // {id, name, blob, objectUrl} or {id, name, url}
let counter = 0;
const listeners = [];
const labels = [];    // every chooser's "current photo" line

export function photo() {
  return current;
}

export function onPhoto(listener) {
  listeners.push(listener);
}

export function setFile(blob, name) {
  forget();
  current = { id: ++counter, name: name || "pasted image", blob, objectUrl: URL.createObjectURL(blob) };
  changed();
}

export function setUrl(url) {
  forget();
  current = { id: ++counter, name: url, url };
  changed();
}

function forget() {
  if (current && current.objectUrl) URL.revokeObjectURL(current.objectUrl);
}

function changed() {
  const size = current.blob ? ` (${Math.max(1, Math.round(current.blob.size / 1024))} KB)` : ", fetched by the service";
  for (const label of labels) label.textContent = `Photo: ${current.name}${size}`;
  listeners.forEach((listener) => listener(current));
}

/** A chooser in `slot`: a file button, a URL field, and the current photo's name. */
export function chooser(slot, prefix) {
  const file = h("input", { type: "file", accept: "image/*", id: `${prefix}-file`, class: "visually-hidden",
                            tabindex: "-1", "aria-label": "Photo file" });
  const pick = h("button", { type: "button", class: "primary" }, "Choose a photo…");
  pick.addEventListener("click", () => file.click());
  file.addEventListener("change", () => {
    if (file.files.length) setFile(file.files[0], file.files[0].name);
    file.value = "";   // choosing the same file again is a new photo
  });
  const url = h("input", { type: "url", id: `${prefix}-url`, placeholder: "https://example.com/photo.jpg",
                           spellcheck: "false" });
  const form = h("form", { class: "url-form" },
    h("label", { for: `${prefix}-url` }, "or an image URL (the service fetches it)"), url,
    h("button", { type: "submit" }, "Use URL"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const href = url.value.trim();
    if (/^https?:\/\//i.test(href)) {
      setUrl(href);
    } else {
      url.setCustomValidity("An http:// or https:// address");
      url.reportValidity();
    }
  });
  url.addEventListener("input", () => url.setCustomValidity(""));
  const name = h("p", { class: "current muted", "aria-live": "polite" },
    current ? `Photo: ${current.name}` : "No photo yet.");
  labels.push(name);
  slot.replaceChildren(h("div", { class: "chooser" },
    h("div", { class: "drop" }, pick, file, h("span", { class: "muted" }, "or drop a photo on the page, or paste one (Ctrl+V)")),
    form, name));
}

/** Drop anywhere on the page, paste anywhere (a file on the clipboard; text pastes as usual). */
export function installDropAndPaste() {
  document.addEventListener("dragover", (event) => {
    if (![...event.dataTransfer.types].includes("Files")) return;
    event.preventDefault();
    document.body.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) document.body.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    document.body.classList.remove("dragging");
    const dropped = [...event.dataTransfer.files];
    if (!dropped.length) return;
    event.preventDefault();
    setFile(dropped[0], dropped[0].name);
  });
  document.addEventListener("paste", (event) => {
    const pasted = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
    if (!pasted) return;
    event.preventDefault();
    setFile(pasted, pasted.name && pasted.name !== "image.png" ? pasted.name : "pasted image");
  });
}
