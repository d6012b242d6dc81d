"""The page at `/` in a real browser (headless Chromium, see tests/support/browser.py) over the
real server (`python app.py` with the real small models of ../shared as model folders): what
the page shows is what the API answers for the same photo, and the page stays inside its
policy and its origin. One server and one browser for the module; a second server for keys.

Screenshots go to pytest's temporary directory; WRITE_SCREENSHOTS=1 also writes the Detect tab
at 1280x800 to docs/images/page-detect.png (normal runs leave the tree alone)."""
from __future__ import annotations

import os
import re

import pytest
import requests

from errors import Overloaded, Unauthorized
from tests.support.browser import Watched, launch, require_browser
from tests.support.image_server import ImageServer
from tests.support.paths import ROOT
from tests.support.servers import start_server, stop_server, wait_until
from tests.support.shared_models import build_folder, photo

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # require_browser() skips the tests, or fails them in CI
    expect = sync_playwright = None

pytestmark = pytest.mark.slow

CLASSIFIER, DETECTOR = "mobilenet_v2_quant", "yolov8n_int8"
KEY = "page-test-key-1"
WAIT_MS = 20_000
# What Chromium logs for every error status a fetch gets (the API's answer is what the page shows).
FAILED_LOAD = "Failed to load resource: the server responded with a status of"


def serve(tmp_path_factory, name: str, **env: str):
    """`python app.py` with both real small models as folders (preloaded), ready."""
    models_dir = tmp_path_factory.mktemp(f"{name}-models")
    for folder in (CLASSIFIER, DETECTOR):
        build_folder(models_dir, folder)
    log_path = tmp_path_factory.mktemp(name) / "server.log"
    process, url = start_server({"IMAGE_CLASSIFICATION_ENABLED": "true", "IMAGE_CLASSIFICATION_MODEL": CLASSIFIER,
                                 "OBJECT_DETECTION_ENABLED": "true", "OBJECT_DETECTION_MODEL": DETECTOR,
                                 "MODELS_DIR": str(models_dir), "MODEL_DOWNLOAD": "false",
                                 "PRELOAD_MODELS": "true", **env}, log_path)
    headers = {"X-API-Key": env["API_KEYS"]} if "API_KEYS" in env else {}
    wait_until(lambda: requests.get(url + "/ready", headers=headers, timeout=2).status_code == 200, 120, "readiness")
    return process, url, log_path


@pytest.fixture(scope="module")
def images():
    """An image server on 127.0.0.1 that the service may fetch from (FETCH_ALLOW_HOSTS)."""
    with ImageServer() as started:
        yield started


@pytest.fixture(scope="module")
def server(tmp_path_factory, images):
    require_browser()
    process, url, log_path = serve(tmp_path_factory, "page", FETCH_ALLOW_HOSTS=f"127.0.0.1:{images.port}",
                                   FACE_ENABLED="true", DATA_DIR=str(tmp_path_factory.mktemp("faces-data")))
    try:
        yield url
    finally:
        stop_server(process, log_path)


@pytest.fixture(scope="module")
def browser():
    require_browser()
    with sync_playwright() as playwright:
        started = launch(playwright)
        yield started
        started.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def watched(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield Watched(page, server)
    context.close()


def open_page(watched: Watched, tab: str = "classify"):
    page = watched.page
    assert page.goto(f"{watched.origin}/#{tab}").status == 200
    expect(page.locator("body")).to_have_attribute("data-models", "loaded")
    return page


def api(url: str, path: str, image: bytes, **params) -> requests.Response:
    return requests.post(url + path, params=params, files={"image": ("photo", image)}, timeout=30)


def names(url: str, task: str) -> list[str]:
    return [m["name"] for m in requests.get(url + "/models", timeout=5).json()["models"] if m["task"] == task]


def shown_times(page, which: str) -> dict[str, str]:
    terms = page.locator(f"#{which}-times dt").all_inner_texts()
    return dict(zip(terms, page.locator(f"#{which}-times dd").all_inner_texts()))


# --- classify ------------------------------------------------------------------------------------

def test_classify_shows_the_apis_labels_times_and_cache(watched, shots):
    page = open_page(watched)
    assert page.locator("#classify-model option").all_inner_texts() == names(watched.origin, "classification")
    cat = photo("coral/cat.bmp")
    page.set_input_files("#panel-classify-file", cat)
    expect(page.locator("#classify-labels li")).to_have_count(5)
    answer = api(watched.origin, "/v2/classify", cat.read_bytes(), top_k=5, model=CLASSIFIER).json()
    predictions = answer["results"][0]["predictions"]
    rows = page.locator("#classify-labels li")
    shown = [(rows.nth(i).get_attribute("data-label"), float(rows.nth(i).get_attribute("data-score")))
             for i in range(rows.count())]
    assert shown == [(p["label"], p["score"]) for p in predictions]
    assert rows.locator(".value").all_inner_texts() == [f"{p['score'] * 100:.2f} %" for p in predictions]
    assert predictions[0]["label"] == "Egyptian cat"
    times = shown_times(page, "classify")
    for figure in ("Round trip", "Processing", "Inference"):
        assert re.fullmatch(r"[\d.]+ ms", times[figure]), times
    assert times["From the cache"] == "no"   # the page's first request for this photo (cat.bmp: nobody else's)
    page.click("#classify-run")
    expect(page.locator("#classify-times dd").nth(3)).to_have_text("yes")
    page.screenshot(path=shots / "classify.png")
    watched.check()


def test_an_image_url_is_fetched_by_the_service_never_by_the_page(watched, images):
    page = open_page(watched)
    url = images.url("/cat.jpg")
    page.fill("#panel-classify-url", url)
    page.press("#panel-classify-url", "Enter")
    rows = page.locator("#classify-labels li")
    expect(rows).to_have_count(5)
    answer = requests.post(watched.origin + "/v2/classify", params={"top_k": 5, "model": CLASSIFIER},
                           json={"image_url": url}, timeout=30).json()
    assert rows.evaluate_all("rows => rows.map(r => [r.dataset.label, Number(r.dataset.score)])") == \
        [[p["label"], p["score"]] for p in answer["results"][0]["predictions"]]
    assert page.locator("#classify-photo").is_hidden()
    expect(page.locator("#classify-note")).to_contain_text("fetched this photo from its URL")
    page.click("#tab-detect")                       # the same photo, detected at once
    expect(page.locator("#detect-stage")).to_have_class(re.compile(r"\bblank\b"))
    expect(page.locator("#detect-count")).to_contain_text("detections at a score of at least 0.30")
    assert images.hits["/cat.jpg"] >= 2              # the service fetched it, once per model
    watched.check()                                   # and the page never asked the image server


# A photo handed to the page as a user's drop or paste would: a File in a DataTransfer.
HAND_OVER = """async ([kind, name]) => {
  const canvas = new OffscreenCanvas(64, 48);
  canvas.getContext("2d").fillRect(0, 0, 32, 48);
  const file = new File([await canvas.convertToBlob({ type: "image/png" })], name, { type: "image/png" });
  const data = new DataTransfer();
  data.items.add(file);
  const event = kind === "drop" ? new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true })
                                : new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
  document.body.dispatchEvent(event);
}"""


def test_a_dropped_or_pasted_photo_is_answered(watched):
    page = open_page(watched)
    for kind, name in (("drop", "dropped.png"), ("paste", "pasted.png")):
        page.evaluate(HAND_OVER, [kind, name])
        expect(page.locator("#panel-classify .current")).to_have_text(re.compile(rf"^Photo: {name} "))
        expect(page.locator("#classify-photo")).to_have_attribute("src", re.compile(r"^blob:"))
        expect(page.locator("#classify-labels li")).to_have_count(5)
    watched.check()


# --- detect --------------------------------------------------------------------------------------

def boxes_shown(page) -> list[tuple]:
    boxes = page.locator("#detect-boxes g.box")
    found = [(boxes.nth(i).get_attribute("data-label"), float(boxes.nth(i).get_attribute("data-score")),
              tuple(int(v) for v in boxes.nth(i).get_attribute("data-box").split(","))) for i in range(boxes.count())]
    return sorted(found, key=lambda d: (-d[1], d[0], d[2]))


def boxes_answered(url: str, image: bytes, min_score: float) -> list[tuple]:
    detections = api(url, "/v2/detect", image, min_score=min_score, model=DETECTOR).json()["results"][0]["detections"]
    found = [(d["label"], d["score"], tuple(d["box"][k] for k in ("x1", "y1", "x2", "y2"))) for d in detections]
    return sorted(found, key=lambda d: (-d[1], d[0], d[2]))


def test_detect_draws_the_apis_boxes_and_the_slider_filters_them(watched, shots):
    page = open_page(watched, "detect")
    assert page.locator("#detect-model option").all_inner_texts() == names(watched.origin, "detection")
    dog = photo("darknet/dog.jpg")
    page.set_input_files("#panel-detect-file", dog)
    expect(page.locator("#detect-result")).to_be_visible()
    at_default = boxes_answered(watched.origin, dog.read_bytes(), 0.3)
    assert {"dog", "bicycle"} <= {label for label, _, _ in at_default}
    assert boxes_shown(page) == at_default
    table = page.locator("#detect-table tbody tr")
    assert [float(s) for s in table.evaluate_all("rows => rows.map(r => r.dataset.score)")] == [d[1] for d in at_default]
    if os.environ.get("WRITE_SCREENSHOTS") == "1":
        page.screenshot(path=ROOT / "docs" / "images" / "page-detect.png")
    page.screenshot(path=shots / "detect.png")
    page.focus("#detect-min")                      # the slider, from the keyboard: 0.30 → 0.80
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    assert page.input_value("#detect-min") == "0.8"
    expect(page.locator("#detect-min-value")).to_have_text("0.80")
    higher = boxes_answered(watched.origin, dog.read_bytes(), 0.8)
    assert 0 < len(higher) < len(at_default) and boxes_shown(page) == higher
    expect(page.locator("#detect-table tbody tr")).to_have_count(len(higher))
    page.click("#detect-annotate")
    annotated = page.locator("#detect-annotated")
    expect(annotated).to_have_attribute("src", re.compile(r"^blob:"))
    expect(page.locator("#detect-annotated-caption")).to_contain_text(f"{len(higher)} of {len(higher)} detections")
    assert annotated.evaluate("image => image.decode().then(() => image.naturalWidth)") == 768
    page.screenshot(path=shots / "detect-annotated.png", full_page=True)
    watched.check()


# --- faces -----------------------------------------------------------------------------------------

def test_faces_registers_a_person_from_one_photo_and_names_them_in_another(watched, shots):
    from tests.support.faces import FACES
    page = open_page(watched, "faces")
    expect(page.locator("#faces-none")).to_be_visible()
    page.set_input_files("#panel-faces-file", FACES / "obama1.jpg")
    expect(page.locator("#faces-table tbody tr[data-userid='unknown']")).to_have_count(1)   # nobody registered yet
    page.fill("#faces-name", "Barack Obama")
    page.click("#faces-register")
    expect(page.locator("#faces-people li[data-userid='Barack Obama']")).to_have_count(1)
    expect(page.locator("#faces-status")).to_contain_text("Registered Barack Obama")
    other = FACES / "obama2.jpg"
    page.set_input_files("#panel-faces-file", other)
    expect(page.locator("#faces-boxes g.box[data-userid='Barack Obama']")).to_have_count(1)
    answer = requests.post(watched.origin + "/v2/faces", files={"image": ("photo", other.read_bytes())},
                           timeout=60).json()["results"][0]["faces"]
    assert [[f["userid"], ",".join(map(str, f["box"].values()))] for f in answer] == \
        page.locator("#faces-boxes g.box").evaluate_all("gs => gs.map(g => [g.dataset.userid, g.dataset.box])")
    assert page.locator("#faces-table tbody td").first.inner_text() == "Barack Obama"
    page.screenshot(path=shots / "faces.png", full_page=True)
    page.click("#faces-people li button")                       # delete: the same photo is unknown again
    expect(page.locator("#faces-people li")).to_have_count(0)
    expect(page.locator("#faces-boxes g.box[data-userid='unknown']")).to_have_count(1)
    watched.check()


# --- errors --------------------------------------------------------------------------------------

def test_a_bad_file_shows_the_apis_message(watched):
    page = open_page(watched)
    bad = b"this is not an image at all"
    message = api(watched.origin, "/v2/classify", bad).json()["error"]["message"]
    page.set_input_files("#panel-classify-file", files=[{"name": "bad.jpg", "mimeType": "image/jpeg", "buffer": bad}])
    error = page.locator("#classify-error")
    expect(error).to_be_visible()
    assert error.inner_text() == f"{message} (HTTP 400, invalid_image)"
    watched.check(expected_console=(f"{FAILED_LOAD} 400",))


def test_overloaded_shows_the_message_and_when_to_retry(watched):
    """A 503 as the service answers it at capacity (played by the test: overloading the real
    server on purpose would cost seconds): the message and Retry-After."""
    page = open_page(watched, "detect")
    body = {"error": {"code": 503, "type": "overloaded", "message": Overloaded.message}}
    page.route("**/v2/detect*", lambda route: route.fulfill(status=503, json=body, headers={"Retry-After": "1"}))
    page.set_input_files("#panel-detect-file", photo("darknet/dog.jpg"))
    expect(page.locator("#detect-error")).to_have_text(f"{Overloaded.message} Retry after 1 s. (HTTP 503, overloaded)")
    watched.check(expected_console=(f"{FAILED_LOAD} 503",))


# --- benchmark, dashboard ------------------------------------------------------------------------

def test_the_benchmark_runs_n_requests_in_parallel_and_shows_a_rate(watched, shots):
    page = open_page(watched, "bench")
    page.set_input_files("#panel-bench-file", photo("darknet/dog.jpg"))
    page.select_option("#bench-route", "classify")
    page.select_option("#bench-parallel", "2")
    page.fill("#bench-n", "10")
    before = requests.get(watched.origin + "/report", timeout=5).json()["routes"].get("/v2/classify", {})
    page.click("#bench-start")
    expect(page.locator("#bench-phase")).to_have_text("Done: 10 requests.", timeout=60_000)
    stats = dict(zip(page.locator("#bench-stats dt").all_inner_texts(), page.locator("#bench-stats dd").all_inner_texts()))
    assert stats["Requests"] == "10 of 10" and stats["Errors"] == "0", stats
    assert float(re.fullmatch(r"([\d.]+) requests/s", stats["Rate"]).group(1)) > 0
    assert re.fullmatch(r"[\d.]+ ms", stats["p50"]) and re.fullmatch(r"[\d.]+ ms", stats["p95"])
    after = requests.get(watched.origin + "/report", timeout=5).json()["routes"]["/v2/classify"]
    # 3 warm-up calls and 10 measured, every one a miss (each JPEG carries its own comment).
    assert after["num_requested"] - before.get("num_requested", 0) == 13
    assert after["num_cache_hits"] == before.get("num_cache_hits", 0)
    page.screenshot(path=shots / "benchmark.png")
    watched.check()


def test_the_dashboard_shows_every_models_state_and_refreshes(watched, shots):
    api(watched.origin, "/v2/classify", photo("coral/parrot.jpg").read_bytes())
    page = watched.page
    page.clock.install()
    open_page(watched, "dashboard")
    models = requests.get(watched.origin + "/models", timeout=5).json()["models"]
    rows = page.locator("#dash-models tbody tr")
    expect(rows).to_have_count(len(models))
    assert rows.evaluate_all("rows => rows.map(r => [r.dataset.model, r.dataset.state])") == \
        [[m["name"], m["state"]] for m in models]
    assert rows.evaluate_all("rows => rows.map(r => [...r.cells].slice(1, 5).map(c => c.textContent))") == \
        [[m["task"], m["state"], m["runtime"], m["device"]] for m in models]
    expect(page.locator("#chart-minutes g.minute")).to_have_count(60)
    expect(page.locator("#chart-routes li[data-name='/v2/classify']")).to_be_visible()
    assert page.locator("#panel-dashboard a").evaluate_all("links => links.map(a => a.href)") == \
        [watched.origin + "/metrics", watched.origin + "/docs"]
    reports = lambda: sum(r.url == watched.origin + "/report" for r in watched.requests)  # noqa: E731
    counted = reports()
    page.clock.run_for(5_500)                      # auto-refresh: every 5 s
    expect(page.locator("#dash-updated")).to_contain_text("Updated")
    wait_until(lambda: reports() == counted + 1, 10, "the dashboard's refresh")
    page.uncheck("#dash-auto")                     # paused: no more requests
    page.clock.run_for(20_000)
    assert reports() == counted + 1
    page.screenshot(path=shots / "dashboard.png", full_page=True)
    watched.check()


# --- keyboard, narrow screens ----------------------------------------------------------------------

def test_tabs_work_from_the_keyboard_and_every_field_has_a_label(watched):
    page = open_page(watched)
    page.focus("#tab-classify")
    for key, tab in (("ArrowRight", "detect"), ("End", "dashboard"), ("ArrowRight", "classify"),
                     ("ArrowLeft", "dashboard"), ("Home", "classify")):
        page.keyboard.press(key)
        assert page.evaluate("document.activeElement.id") == f"tab-{tab}"
        assert page.get_attribute(f"#tab-{tab}", "aria-selected") == "true"
        expect(page.locator(f"#panel-{tab}")).to_be_visible()
        assert page.locator("[role=tab][tabindex='0']").count() == 1
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"  # focus shows
    unlabelled = page.evaluate("""[...document.querySelectorAll("input, select")]
        .filter(e => !e.labels.length && !e.getAttribute("aria-label")).map(e => e.id)""")
    assert unlabelled == []
    watched.check()


def test_a_narrow_screen_needs_no_sideways_scrolling(watched, shots):
    page = watched.page
    page.set_viewport_size({"width": 375, "height": 740})
    open_page(watched, "detect")
    page.set_input_files("#panel-detect-file", photo("darknet/dog.jpg"))
    expect(page.locator("#detect-boxes g.box").first).to_be_attached()
    for tab in ("detect", "classify", "faces", "bench", "dashboard"):
        page.click(f"#tab-{tab}")
        expect(page.locator(f"#panel-{tab}")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, tab
    page.click("#tab-detect")
    page.screenshot(path=shots / "narrow-detect.png", full_page=True)
    watched.check()


# --- API keys ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    require_browser()
    process, url, log_path = serve(tmp_path_factory, "page-keyed", API_KEYS=KEY)
    try:
        yield url
    finally:
        stop_server(process, log_path)


def test_with_api_keys_the_page_loads_and_calls_need_the_key(browser, keyed_server, shots):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    watched = Watched(page, keyed_server)
    try:
        assert page.goto(keyed_server + "/").status == 200   # the page's own files need no key
        banner = page.locator("#banner")
        expect(banner).to_contain_text(Unauthorized.message)
        page.set_input_files("#panel-classify-file", photo("coral/cat.bmp"))
        expect(page.locator("#classify-error")).to_have_text(f"{Unauthorized.message} (HTTP 401, unauthorized)")
        keyless = len(watched.requests)
        page.fill("#api-key", KEY)
        page.press("#api-key", "Enter")
        expect(page.locator("#classify-labels li").first).to_have_attribute("data-label", "Egyptian cat")
        expect(banner).to_be_hidden()
        expect(page.locator("#classify-error")).to_be_hidden()
        assert page.evaluate("Object.values(sessionStorage)") == [KEY]
        calls = [r for r in watched.requests[keyless:] if not r.url.startswith(("blob:", keyed_server + "/page/"))]
        assert calls and all(r.headers.get("x-api-key") == KEY for r in calls)
        page.reload()                               # kept for the browser session
        expect(page.locator("body")).to_have_attribute("data-models", "loaded")
        page.screenshot(path=shots / "keys.png")
        watched.check(expected_console=(f"{FAILED_LOAD} 401",))
    finally:
        context.close()
