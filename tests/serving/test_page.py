"""The upload page in a real headless Chromium: pick a file, translate, see the result; see an error."""
import io
import shutil

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def page(service):
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (make test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            pg = browser.new_page()
            pg.set_default_timeout(60_000)
            pg.goto(service.url + "/")
            pg.wait_for_selector("#model[data-loaded='1']", state="attached")
            yield pg
        finally:
            browser.close()


def test_upload_shows_the_result_at_the_input_size(page, tmp_path):
    img = tmp_path / "aerial.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 46, 3), dtype=np.uint8)).save(img)
    options = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    assert {"resnet", "unet"} <= set(options) and options == sorted(options)  # the store's names
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
