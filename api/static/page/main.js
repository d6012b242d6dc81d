// The page's start: tabs (a WAI-ARIA tablist: arrow keys, Home and End), the API key field,
// the model lists from GET /models, and the photo choosers. Each tab is its own module.

import { apiKey, models, onKeyChange, setApiKey } from "./api.js";
import * as bench from "./bench.js";
import * as classify from "./classify.js";
import * as dashboard from "./dashboard.js";
import { $, describeError } from "./dom.js";
import * as detect from "./detect.js";
import * as faces from "./faces.js";
import { chooser, installDropAndPaste } from "./photo.js";

const TABS = { classify, detect, faces, bench, dashboard };
const tabs = [...document.querySelectorAll("[role=tab]")];
let selected = "classify";

function name(tab) {
  return tab.id.replace("tab-", "");
}

function select(tab, { focus = false } = {}) {
  const next = name(tab);
  for (const each of tabs) {
    const on = each === tab;
    each.setAttribute("aria-selected", String(on));
    each.tabIndex = on ? 0 : -1;
    $(`#${each.getAttribute("aria-controls")}`).hidden = !on;
  }
  if (focus) tab.focus();
  if (next !== selected) TABS[selected].hide();
  selected = next;
  history.replaceState(null, "", `#${next}`);
  TABS[next].show();
}

function installTabs() {
  const list = $("[role=tablist]");
  list.addEventListener("click", (event) => {
    const tab = event.target.closest("[role=tab]");
    if (tab) select(tab);
  });
  list.addEventListener("keydown", (event) => {
    const at = tabs.indexOf(document.activeElement);
    if (at < 0) return;
    const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    select(tabs[(moves[event.key] + tabs.length) % tabs.length], { focus: true });
  });
}

function installKey() {
  const field = $("#api-key");
  field.value = apiKey();
  $("#key-state").textContent = apiKey() ? "A key is set for this browser session." : "";
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(field.value.trim());
  });
  $("#key-forget").addEventListener("click", () => {
    field.value = "";
    setApiKey("");
  });
  onKeyChange((key) => {
    $("#key-state").textContent = key ? "Key set for this browser session." : "No key.";
    loadModels(true);
  });
}

/** Fill the model lists from GET /models (the service's default, its first, selected). */
async function loadModels(fresh = false) {
  try {
    const all = await models({ fresh });
    for (const [id, task] of [["#classify-model", "classification"], ["#detect-model", "detection"]]) {
      const select = $(id);
      const kept = select.value;
      const names = all.filter((m) => m.task === task).map((m) => m.name);
      select.replaceChildren(...names.map((n) => new Option(n, n)));
      if (names.includes(kept)) select.value = kept;
    }
    await bench.fillModels();
    $("#banner").hidden = true;
    document.body.dataset.models = "loaded";
    if (fresh) TABS[selected].show();   // a new key: what failed without one is asked again
  } catch (error) {
    const banner = $("#banner");
    banner.textContent = `The models could not be listed: ${describeError(error)}`
      + (error.status === 401 ? " Enter an API key above." : "");
    banner.hidden = false;
    document.body.dataset.models = "failed";
  }
}

for (const slot of document.querySelectorAll(".photo-slot")) chooser(slot, slot.closest("[role=tabpanel]").id);
installDropAndPaste();
Object.values(TABS).forEach((tab) => tab.init());
installTabs();
installKey();
const start = tabs.find((tab) => `#${name(tab)}` === location.hash) || tabs[0];
select(start);
loadModels();
