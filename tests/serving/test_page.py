"""The upload page in a real headless Chromium: pick a file, translate, see the result; see an error; draw on
the canvas and get its translation at its size; follow a large image's job to its full-size result; the API
documentation renders with no network."""
import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


SKETCH_SIDE = 96  # the `sketches` model's training size (its config), a multiple of its 32
DOODLE_SIDE = 64  # the multimodal `doodles` model's


@pytest.fixture(scope="module")
def page(service):
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (make test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from .conftest import tiny_multimodal_onnx, tiny_onnx

    # a model named `sketches` (as the demo serves) makes the page open on the drawing canvas
    service.store.register("sketches", tiny_onnx("unet_32", seed=5), meta={"config": {"size": SKETCH_SIDE}})
    service.store.register("aerial", tiny_onnx("unet_32", seed=3, batch_stats=False))  # tiles in one pass
    # a multimodal model: several variants of one drawing
    service.store.register("doodles", tiny_multimodal_onnx(seed=6), meta={"config": {"size": DOODLE_SIDE}})
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            pg = browser.new_page()
            pg.set_default_timeout(120_000)
            load(pg, service)
            yield pg
        finally:
            browser.close()


def load(pg, service):
    pg.goto(service.url + "/")
    pg.wait_for_selector("#model[data-loaded='1']", state="attached")


def canvas_pixels(page) -> np.ndarray:
    """What the canvas holds now, as the PNG the page sends."""
    url = page.eval_on_selector("#canvas", "c => c.toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def stroke(page, points, steps=8):
    """A mouse stroke through ``points`` given as fractions of the canvas's box."""
    box = page.locator("#canvas").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=steps)
    page.mouse.up()


def set_width(page, px: int) -> None:
    page.eval_on_selector("#width", "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", str(px))
    assert page.inner_text("#width-value") == str(px)


def shown_result(page) -> bytes:
    """The bytes behind the result the page shows and offers to download."""
    href = page.get_attribute("#download", "href")
    assert href.startswith("blob:")
    return bytes(page.evaluate("async (u) => Array.from(new Uint8Array(await (await fetch(u)).arrayBuffer()))", href))


def wait_for_result(page, w, h):
    page.wait_for_function(f"""() => {{ const r = document.getElementById('result');
        return !r.hidden && r.complete && r.naturalWidth === {w} && r.naturalHeight === {h}; }}""")


def test_upload_shows_the_result_at_the_input_size(page, service, tmp_path):
    img = tmp_path / "aerial.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 46, 3), dtype=np.uint8)).save(img)
    options = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    assert options == service.store.names()  # the store's names, each once, in order
    page.select_option("#model", "unet")
    page.set_input_files("#file", str(img))
    page.click("#submit")
    page.wait_for_function("() => { const r = document.getElementById('result');"
                           " return !r.hidden && r.complete && r.naturalWidth > 0; }")
    size = page.eval_on_selector("#result", "r => [r.naturalWidth, r.naturalHeight]")
    assert size == [46, 30]
    assert page.eval_on_selector("#input", "i => [i.naturalWidth, i.naturalHeight]") == [46, 30]
    assert page.is_hidden("#error")
    href = page.get_attribute("#download", "href")
    assert href.startswith("blob:") and page.get_attribute("#download", "download") == "aerial-translated.png"
    # the bytes the page shows are the service's PNG of the right size
    data = page.evaluate("async (u) => Array.from(new Uint8Array(await (await fetch(u)).arrayBuffer()))", href)
    assert Image.open(io.BytesIO(bytes(data))).size == (46, 30)


def test_a_refused_upload_shows_the_error(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all")
    page.set_input_files("#file", str(bad))
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])")
    assert "unsupported_format" in page.inner_text("#error")


def test_a_dropped_file_is_translated(page):
    page.select_option("#model", "resnet")
    page.evaluate("""async () => {
        const c = document.createElement("canvas");
        c.width = 20; c.height = 12;
        c.getContext("2d").fillRect(0, 0, 10, 6);
        const blob = await new Promise((resolve) => c.toBlob(resolve, "image/png"));
        const dt = new DataTransfer();
        dt.items.add(new File([blob], "dropped.png", { type: "image/png" }));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    }""")
    assert "dropped.png" in page.inner_text("#filename")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('download').download === 'dropped-translated.png'")
    page.wait_for_function("() => { const r = document.getElementById('result');"
                           " return r.complete && r.naturalWidth === 20 && r.naturalHeight === 12; }")
    assert page.is_hidden("#error") and "resnet" in page.inner_text("#status")


def test_the_page_opens_on_the_canvas_for_sketches_and_a_drawing_comes_back_translated(page, service):
    load(page, service)
    assert page.input_value("#model") == "sketches" and page.is_visible("#canvas") and page.is_hidden("#drop")
    assert page.eval_on_selector("#canvas", "c => [c.width, c.height]") == [SKETCH_SIDE, SKETCH_SIDE]
    assert (canvas_pixels(page) == 255).all()  # a blank sheet
    set_width(page, 6)
    stroke(page, [(0.2, 0.2), (0.8, 0.3), (0.5, 0.8)])  # each stroke is translated when it ends
    wait_for_result(page, SKETCH_SIDE, SKETCH_SIDE)
    drawn = canvas_pixels(page)
    assert (drawn < 128).all(axis=2).sum() > 100  # black ink along the stroke
    page.wait_for_function("() => !document.getElementById('submit').disabled")  # no translation in flight
    shown = np.asarray(Image.open(io.BytesIO(shown_result(page))))
    np.testing.assert_array_equal(shown, np.asarray(service.predictor("sketches")(Image.fromarray(drawn))))
    assert page.get_attribute("#download", "download") == "sketch-translated.png"

    page.check("#eraser")  # the eraser paints the sheet white again where it goes
    set_width(page, 40)
    stroke(page, [(0.1, 0.2), (0.9, 0.2)])
    erased = canvas_pixels(page)
    assert (erased < 128).all(axis=2).sum() < (drawn < 128).all(axis=2).sum()
    page.click("#undo")  # the eraser stroke, undone
    np.testing.assert_array_equal(canvas_pixels(page), drawn)
    page.click("#clear")
    assert (canvas_pixels(page) == 255).all()
    page.click("#undo")  # a clear is undone too
    np.testing.assert_array_equal(canvas_pixels(page), drawn)


def test_touch_strokes_draw_and_a_chosen_canvas_size_comes_back_at_that_size(page, service):
    load(page, service)
    page.uncheck("#live")
    page.select_option("#size", "custom")
    page.fill("#custom-w", "160")
    page.fill("#custom-h", "64")
    page.dispatch_event("#custom-h", "change")
    assert page.eval_on_selector("#canvas", "c => [c.width, c.height]") == [160, 64]
    page.check("#pen")
    page.evaluate("""() => {  // a finger: pointer events of type touch
        const c = document.getElementById("canvas"), r = c.getBoundingClientRect();
        const at = (fx, fy) => ({ pointerId: 7, pointerType: "touch", isPrimary: true, bubbles: true,
                                  clientX: r.left + fx * r.width, clientY: r.top + fy * r.height });
        c.dispatchEvent(new PointerEvent("pointerdown", { ...at(0.1, 0.5), button: 0, buttons: 1 }));
        for (let i = 1; i <= 10; i++) c.dispatchEvent(new PointerEvent("pointermove", { ...at(0.1 + 0.08 * i, 0.5), buttons: 1 }));
        c.dispatchEvent(new PointerEvent("pointerup", at(0.9, 0.5)));
    }""")
    ink = (canvas_pixels(page) < 128).all(axis=2)
    assert ink[32, 20:140].all() and not ink[5].any()  # a horizontal line across the middle
    page.click("#submit")
    wait_for_result(page, 160, 64)
    assert Image.open(io.BytesIO(shown_result(page))).size == (160, 64)
    assert page.is_hidden("#error")


def test_a_large_image_shows_its_progress_and_downloads_at_full_size(page, service, tmp_path):
    load(page, service)
    big = tmp_path / "large-aerial.png"  # over the tiling threshold: a job, tile by tile
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)).resize((2304, 2176), Image.BICUBIC).save(big)
    page.select_option("#model", "aerial")
    page.set_input_files("#file", str(big))
    assert page.is_visible("#input") and page.is_hidden("#canvas")
    page.click("#submit")
    page.wait_for_function("() => { const p = document.getElementById('progress');"
                           " return !document.getElementById('job').hidden && p.value > 0 && p.value < 1; }")
    assert "tile runs" in page.inner_text("#status")
    wait_for_result(page, 2304, 2176)
    assert page.is_hidden("#job") and page.is_hidden("#error")
    assert Image.open(io.BytesIO(shown_result(page))).size == (2304, 2176)
    assert page.get_attribute("#download", "download") == "large-aerial-translated.png"


def test_cancel_deletes_a_running_job_and_the_page_says_so(page, service, tmp_path):
    import requests

    load(page, service)
    big = tmp_path / "cancelled-aerial.png"  # 16 tile runs: cancelled while they run
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)).resize((3072, 3072), Image.BICUBIC).save(big)
    page.select_option("#model", "aerial")
    page.set_input_files("#file", str(big))
    page.click("#submit")
    page.wait_for_function("() => { const p = document.getElementById('progress');"
                           " return !document.getElementById('job').hidden && p.value > 0 && p.value < 1; }")
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        page.click("#cancel")
    assert deleted.value.status == 204
    page.wait_for_selector("#error:not([hidden])")
    assert "cancelled: the job and its result were deleted" in page.inner_text("#error")
    assert page.is_hidden("#job") and page.is_hidden("#result")
    gone = requests.get(deleted.value.url, timeout=60)  # the job, as any client sees it now
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"


def test_the_api_documentation_renders_without_a_network(page, service):
    page.goto(service.url + "/docs")  # Chromium here reaches no CDN: Swagger UI comes from the service
    page.wait_for_selector(".opblock-summary-path")
    paths = page.eval_on_selector_all(".opblock-summary-path", "ps => ps.map(p => p.textContent.trim())")
    assert "/v1/models/{name}/translate" in [p.replace("\u200b", "") for p in paths]


def shown_variants(page) -> list[tuple[int, int, bytes]]:
    """(seed, index, bytes) of every variant the page shows and offers to download."""
    found = page.eval_on_selector_all("#variants figure", "fs => fs.map(f => [Number(f.dataset.seed), "
                                      "Number(f.dataset.index), f.querySelector('a').href, "
                                      "f.querySelector('a').download])")
    out = []
    for seed, index, href, name in found:
        assert href.startswith("blob:") and name == f"sketch-{seed}-{index}.png"
        data = page.evaluate("async (u) => Array.from(new Uint8Array(await (await fetch(u)).arrayBuffer()))", href)
        out.append((seed, index, bytes(data)))
    return out


def test_a_multimodal_model_shows_its_variants_side_by_side_and_more_of_them(page, service):
    load(page, service)
    page.select_option("#model", "doodles")
    assert page.is_visible("#samples-field") and page.is_hidden("#variants-pane")
    page.fill("#samples", "3")
    page.click("#tab-draw")
    # drawn on a canvas shown large enough for a finger; sent at the model's input size
    assert page.eval_on_selector("#canvas", "c => [c.width, c.height]") == [DOODLE_SIDE, DOODLE_SIDE]
    assert page.locator("#canvas").bounding_box()["width"] >= 4 * DOODLE_SIDE
    set_width(page, 4)
    stroke(page, [(0.2, 0.2), (0.8, 0.5), (0.3, 0.8)])
    count = "() => [...document.querySelectorAll('#variants img')].filter(i => i.complete && i.naturalWidth).length"
    page.wait_for_function(f"() => ({count})() === 3 && !document.getElementById('more').disabled")
    drawn = canvas_pixels(page)
    variants = shown_variants(page)
    p = service.predictor("doodles")
    seed = variants[0][0]
    expected = p.translate_samples(drawn, p.latents(3, seed=seed))
    for i, ((s, index, data), want) in enumerate(zip(variants, expected, strict=True)):
        assert (s, index) == (seed, i)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), want)
    tops = {round(page.locator("#variants figure").nth(i).bounding_box()["y"]) for i in range(3)}
    assert len(tops) == 1  # side by side
    page.click("#more")  # three more, from another seed, beside the first
    page.wait_for_function(f"() => ({count})() === 6 && !document.getElementById('more').disabled")
    more = shown_variants(page)
    assert more[:3] == variants and more[3][0] != seed
    assert more[3][2] != variants[0][2]

