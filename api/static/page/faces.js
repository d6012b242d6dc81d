// Faces: register the photo under a name (POST /v1/vision/face/register, DeepStack's route), name
// the faces in a photo (POST /v2/faces: boxes, names, confidence and distance), and the people
// registered (POST /v1/vision/face/list), each with a button that deletes them. Recognises when
// the photo changes while the tab is shown.

import { call, photoBody } from "./api.js";
import { $, h, percent, showError, svg } from "./dom.js";
import { onPhoto, photo } from "./photo.js";

const KNOWN = "#059669";
const UNKNOWN = "#6b7280";

let visible = false;
let done = null;       // the photo the shown answer is for
let sequence = 0;

export function init() {
  $("#faces-register-form").addEventListener("submit", (event) => {
    event.preventDefault();
    register();
  });
  $("#faces-recognize").addEventListener("click", () => recognize());
  onPhoto(() => visible && recognize());
}

export function show() {
  visible = true;
  people();
  if (photo() && done !== photo().id) recognize();
}

export function hide() {
  visible = false;
}

function needPhoto() {
  const current = photo();
  if (!current) showError($("#faces-error"), { message: "Choose, drop or paste a photo first." });
  return current;
}

async function register() {
  const current = needPhoto();
  if (!current) return;
  const name = $("#faces-name").value.trim();
  if (!name) {
    showError($("#faces-error"), { message: "Type the person's name first." });
    return;
  }
  if (current.url) {
    showError($("#faces-error"), { message: "Registering takes a photo file: choose, drop or paste one." });
    return;
  }
  const form = photoBody(current);
  form.append("userid", name);
  try {
    const { data } = await call("v1/vision/face/register", { method: "POST", body: form });
    showError($("#faces-error"), null);
    const several = data.used[0].faces_found > 1 ? ` (the largest of ${data.used[0].faces_found} faces)` : "";
    $("#faces-status").textContent = `Registered ${data.userid}${several}: ${data.message}.`;
    await people();
    await recognize();
  } catch (error) {
    showError($("#faces-error"), error);
  }
}

async function recognize() {
  const current = needPhoto();
  if (!current) return;
  const mine = ++sequence;
  $("#panel-faces").setAttribute("aria-busy", "true");
  try {
    const { data } = await call("v2/faces", { method: "POST", body: photoBody(current) });
    if (mine !== sequence) return;
    done = current.id;
    showError($("#faces-error"), null);
    draw(current, data.results[0]);
  } catch (error) {
    if (mine !== sequence) return;
    $("#faces-result").hidden = true;
    showError($("#faces-error"), error);
  } finally {
    if (mine === sequence) $("#panel-faces").removeAttribute("aria-busy");
  }
}

function draw(current, result) {
  const image = $("#faces-photo");
  const stage = $("#faces-stage");
  image.hidden = !current.objectUrl;
  if (current.objectUrl && image.getAttribute("src") !== current.objectUrl) image.src = current.objectUrl;
  stage.classList.toggle("blank", !current.objectUrl);
  stage.style.aspectRatio = `${result.width} / ${result.height}`;
  stage.style.width = `min(100%, ${((55 * result.width) / result.height).toFixed(2)}vh)`;
  $("#faces-boxes").setAttribute("viewBox", `0 0 ${result.width} ${result.height}`);
  const font = Math.max(12, Math.round(Math.max(result.width, result.height) / 45));
  $("#faces-boxes").replaceChildren(...result.faces.map((face) => box(face, font, result.width)));
  $("#faces-table tbody").replaceChildren(...result.faces.map(row));
  const named = result.faces.filter((face) => face.userid).length;
  $("#faces-count").textContent = `${result.faces.length} face${result.faces.length === 1 ? "" : "s"} found, `
    + `${named} recognised.`;
  $("#faces-result").hidden = false;
}

function label(face) {
  return face.userid ? `${face.userid} ${percent(face.confidence)}` : "unknown";
}

function box(face, font, width) {
  const { x1, y1, x2, y2 } = face.box;
  const colour = face.userid ? KNOWN : UNKNOWN;
  const text = label(face);
  const labelWidth = Math.min(text.length * font * 0.6 + font * 0.6, width);
  const labelY = y1 >= font * 1.4 ? y1 - font * 1.4 : y1;
  const labelX = Math.min(x1, width - labelWidth);
  return svg("g", { class: "box", "data-userid": face.userid || "unknown", "data-box": [x1, y1, x2, y2].join(",") },
    svg("title", {}, text),
    svg("rect", { x: x1, y: y1, width: x2 - x1, height: y2 - y1, fill: "none", stroke: colour,
                  "stroke-width": 3, "vector-effect": "non-scaling-stroke" }),
    svg("rect", { x: labelX, y: labelY, width: labelWidth, height: font * 1.4, fill: colour }),
    svg("text", { x: labelX + font * 0.3, y: labelY + font * 1.05, "font-size": font, fill: "#fff" }, text));
}

function row(face) {
  const { x1, y1, x2, y2 } = face.box;
  return h("tr", { "data-userid": face.userid || "unknown" },
    h("td", {}, face.userid || "unknown"), h("td", {}, face.userid ? percent(face.confidence) : "–"),
    h("td", {}, face.distance === null ? "–" : face.distance.toFixed(3)), h("td", {}, `${x1}, ${y1}, ${x2}, ${y2}`));
}

/** The registered people, each with a delete button. */
async function people() {
  try {
    const { data } = await call("v1/vision/face/list", { method: "POST" });
    $("#faces-people").replaceChildren(...data.faces.map((userid) => person(userid)));
    $("#faces-none").hidden = data.faces.length > 0;
  } catch (error) {
    showError($("#faces-error"), error);
  }
}

function person(userid) {
  const remove = h("button", { type: "button", "aria-label": `Delete ${userid}` }, "Delete");
  remove.addEventListener("click", async () => {
    const form = new FormData();
    form.append("userid", userid);
    try {
      await call("v1/vision/face/delete", { method: "POST", body: form });
      $("#faces-status").textContent = `Deleted ${userid}.`;
      await people();
      if (photo()) await recognize();
    } catch (error) {
      showError($("#faces-error"), error);
    }
  });
  return h("li", { "data-userid": userid }, h("span", {}, userid), remove);
}
