"""The HTTP service on a real local Ray: same pixels as the predictor, batching, refusals, overload, large
images as jobs with progress, retraining over HTTP, the API's own description; and every status the API
documents, answered to a request of this module (the last test checks)."""
import asyncio
import base64
import io
import json
import re
import struct
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from PIL import Image

from translate import imageio

from .conftest import RETRAIN_TOKEN, SERVICE_OPTIONS, aerial_photo, tiny_onnx

TIMEOUT = 60  # every client call is bounded: a hang fails the test instead of the session
CURL_FORM = "application/x-www-form-urlencoded"  # what curl declares for --data-binary unless told otherwise
ANSWERED: set[tuple[str, str, int]] = set()  # (method, path, status) of every answer a test of this module got


@pytest.fixture(scope="module", autouse=True)
def record_answers():
    """Every HTTP answer this module's tests get, for the last test (every documented status is answered)."""
    send = requests.Session.send

    def recording(self, request, **kw):
        r = send(self, request, **kw)
        ANSWERED.add((request.method, urlsplit(request.url).path, r.status_code))
        return r

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(requests.Session, "send", recording)
        yield


def encode(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(w, h, mode="RGB", seed=0) -> Image.Image:
    c = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return Image.fromarray(a[:, :, 0] if c == 1 else a, mode)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return encode(noise(40, 24, seed=3), "JPEG", quality=90, exif=exif)


def png_header_only(w, h) -> bytes:
    """A tiny PNG that claims w x h pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def post(service, name="unet", data=None, files=None, **kw):
    url = f"{service.url}/v1/models/{name}/translate"
    return requests.post(url, data=data, files=files, timeout=TIMEOUT, **kw)


def reference(service, data: bytes, name="unet", version=None) -> np.ndarray:
    """What translate.predictor gives for the same upload (decoded by the same translate.imageio)."""
    return np.asarray(service.predictor(name, version)(imageio.decode(data)))


def absolute(service, path: str) -> str:
    """The URL of a path the service answered (a job's, which starts with the app's route prefix)."""
    parts = urlsplit(service.url)
    return f"{parts.scheme}://{parts.netloc}{path}"


COLOCATED = "/colocated"  # the colocated app's route prefix
# the colocated app: the ingress runs the models itself (one deployment); the service's limits, its share of the
# 2 CPUs that the service (1.25) and the strict app (0.5) leave, and a low tiling threshold so a 1024 px image tiles
COLOCATED_OPTIONS = {**SERVICE_OPTIONS, "num_cpus": 0.2, "ingress_num_cpus": 0.05, "tile_threshold": 512 * 512,
                     "colocate": True}


@pytest.fixture(scope="module")
def colocated(service, tmp_path_factory):
    """A second app on the same Ray and HTTP proxy over the same store, with ``colocate``: the ingress replica runs
    the models itself, no ModelServer deployment."""
    from ray import serve

    from serving.app import build_app

    from .conftest import Service

    jobs_dir = tmp_path_factory.mktemp("colocated-jobs")
    serve.run(build_app(service.store.root, shutdown_wait_s=0.2, jobs_dir=str(jobs_dir), **COLOCATED_OPTIONS),
              name="colocated", route_prefix=COLOCATED)
    try:
        yield Service(service.url + COLOCATED, service.store, jobs_dir)
    finally:
        serve.delete("colocated")


@pytest.fixture(params=["split", "colocated"])
def either(request):
    """The service as deployed by default (ingress and model replicas) and colocated (the ingress runs the models)."""
    return request.getfixturevalue("service" if request.param == "split" else "colocated")


UPLOADS = {
    "png": (lambda: encode(noise(45, 31)), (45, 31)),
    "jpeg": (lambda: encode(noise(33, 50, seed=1), "JPEG", quality=85), (33, 50)),
    "grayscale": (lambda: encode(noise(29, 37, "L", seed=2)), (29, 37)),
    "rgba": (lambda: encode(noise(40, 30, "RGBA", seed=4)), (40, 30)),
    "exif-rotated": (exif_rotated_jpeg, (24, 40)),
}


@pytest.mark.parametrize("kind", list(UPLOADS))
def test_upload_comes_back_equal_to_the_predictor(either, kind):
    service = either
    make, size = UPLOADS[kind]
    data = make()
    r = post(service, files={"image": (f"x.{kind}", data)})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-model-version"] == "v0001"
    out = Image.open(io.BytesIO(r.content))
    assert out.size == size
    assert out.mode == ("RGBA" if kind == "rgba" else "RGB")
    np.testing.assert_array_equal(np.asarray(out), reference(service, data))
    if kind == "rgba":  # alpha set aside and restored exactly
        np.testing.assert_array_equal(np.asarray(out)[:, :, 3], np.asarray(Image.open(io.BytesIO(data)))[:, :, 3])


def odd_images():
    rgba = noise(9, 5, "RGBA", seed=8)
    palette = noise(12, 10, seed=9).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    gray16 = Image.fromarray(np.arange(70, dtype=np.uint16).reshape(7, 10) * 900)  # mode I;16
    return {
        "1x1 PNG": encode(noise(1, 1)), "1x7 PNG": encode(noise(1, 7)), "LA PNG": encode(rgba.convert("LA")),
        "palette PNG with transparency": encode(palette), "16-bit grayscale PNG": encode(gray16),
        "CMYK JPEG": encode(noise(11, 6).convert("CMYK"), "JPEG"), "WEBP": encode(noise(13, 9), "WEBP"),
        "BMP": encode(noise(13, 9), "BMP"), "TIFF": encode(rgba, "TIFF"),
    }


@pytest.mark.parametrize("kind", list(odd_images()))
def test_every_allowed_format_and_odd_mode_is_translated(service, kind):
    data = odd_images()[kind]
    r = post(service, "resnet", data=data)
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(r.content))
    assert out.size == imageio.decode(data).size
    np.testing.assert_array_equal(np.asarray(out), reference(service, data, "resnet"))


def test_the_second_model_raw_body_and_the_cli_give_the_same_pixels(service, tmp_path, capsys):
    from translate_cli.main import main

    data = encode(noise(50, 21, seed=5))
    r = post(service, "resnet", data=data, headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.headers["x-model"] == "resnet"
    (tmp_path / "in.png").write_bytes(data)
    main(["predict", str(service.store.model_path("resnet")), str(tmp_path / "in.png"), "--out", str(tmp_path)])
    capsys.readouterr()
    cli = np.asarray(Image.open(tmp_path / "in.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.content))), cli)
    assert not np.array_equal(cli, reference(service, data, "unet"))  # two models, two results


def test_jpeg_when_the_client_asks_for_it(service):
    r = post(service, data=encode(noise(40, 30, "RGBA")), headers={"Accept": "image/jpeg"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    out = Image.open(io.BytesIO(r.content))
    assert out.format == "JPEG" and out.size == (40, 30) and out.mode == "RGB"


def aerial_256() -> bytes:
    """A real-sized upload: a 256 x 256 aerial photo of the built-in maps set, as PNG (about 190 KB: parsed as a
    urlencoded form it has hundreds of '&'-separated "fields")."""
    from translate.datasets import make_pair

    return encode(Image.fromarray(make_pair("maps", 0, size=256, seed=4)[0]))


@pytest.mark.parametrize("ctype", [None, CURL_FORM, "application/octet-stream", "image/png", "text/plain",
                                   "multipart/form-data; boundary=xyz"])
def test_a_body_that_is_an_image_is_the_image_whatever_type_it_declares(service, ctype):
    """curl's --data-binary declares a urlencoded form; clients mislabel bodies: the bytes decide."""
    data = aerial_256()
    r = post(service, data=data, headers={"Content-Type": ctype} if ctype else {})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.content))), reference(service, data))


def test_a_urlencoded_body_is_a_form_only_when_it_is_one(service):
    """A real urlencoded form still reads as a form (its fields are named); other bytes declared as one are the
    body, answered by what they are."""
    form = post(service, data={"version": "v0001"})  # a form, but no image in it
    assert form.status_code == 400 and form.json()["error"] == "missing_field", form.text
    for body, status, error in ((b"hello, world", 415, "unsupported_format"),
                                (encode(noise(8, 8), "GIF"), 415, "unsupported_format"),
                                (b"\x89PNG\r\n\x1a\n" + bytes(100), 400, "bad_image")):
        r = post(service, data=body, headers={"Content-Type": CURL_FORM})
        assert (r.status_code, r.json()["error"]) == (status, error), r.text


def test_concurrent_requests_are_batched(service):
    # a burst the deployment takes without refusals: 2 x max_batch_size running, as many waiting
    # at the router (Serve counts a request as queued until a replica accepts it)
    uploads = [encode(noise(32, 32, seed=i)) for i in range(2 * SERVICE_OPTIONS["max_batch_size"])]
    sizes = []
    for _ in range(3):  # a loaded machine may spread one burst thin; a working batcher fills within three
        with ThreadPoolExecutor(len(uploads)) as pool:
            responses = list(pool.map(lambda d: post(service, data=d), uploads))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
        sizes += [int(r.headers["x-batch-size"]) for r in responses]
        if max(sizes) > 1:
            break
    assert 1 < max(sizes) <= SERVICE_OPTIONS["max_batch_size"]
    for d, r in zip(uploads, responses, strict=True):  # per-image normalisation: the batch does not change the pixels
        got = np.asarray(Image.open(io.BytesIO(r.content))).astype(int)
        assert np.abs(got - reference(service, d).astype(int)).max() <= 1


def test_interleaved_requests_for_two_models_never_get_each_others_answer(either):
    """Batches never mix models (Ray before 2.54 could put requests for two multiplexed models in one
    batch, ray-project/ray#56633; a colocated ingress batches every model's requests together and runs them model
    by model): requests alternating between two models, sent at once, each come back as their own model's
    translation, told apart by pixels the two models never share."""
    service = either
    # as many as the deployment takes without refusals (see test_concurrent_requests_are_batched)
    uploads = [encode(noise(32, 32, seed=100 + i)) for i in range(2 * SERVICE_OPTIONS["max_batch_size"])]
    names = ["unet" if i % 2 == 0 else "resnet" for i in range(len(uploads))]
    expected = [reference(service, d, name).astype(int) for d, name in zip(uploads, names, strict=True)]
    for d, name, want in zip(uploads, names, expected, strict=True):  # a crossed answer would be seen
        other = reference(service, d, "resnet" if name == "unet" else "unet").astype(int)
        assert np.abs(want - other).mean() > 10
    sizes = []
    for _ in range(3):  # a loaded machine may spread one burst thin; a working batcher fills within three
        with ThreadPoolExecutor(len(uploads)) as pool:
            responses = list(pool.map(lambda a: post(service, a[1], data=a[0]), zip(uploads, names, strict=True)))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
        for name, want, r in zip(names, expected, responses, strict=True):
            got = np.asarray(Image.open(io.BytesIO(r.content))).astype(int)
            assert np.abs(got - want).max() <= 1, f"a request for {name} was answered by another model"
        sizes += [int(r.headers["x-batch-size"]) for r in responses]
        if max(sizes) > 1:
            break
    assert max(sizes) > 1  # the requests did share batches with others


def test_one_undecodable_upload_fails_alone_in_its_batch():
    """The model replica decodes and encodes a batch's uploads (serving.model_server.translate_items): a bad one gets
    its own 400, the others their images; arrays (jobs, the health probe) come back as arrays."""
    from serving.model_server import translate_items

    class Inverter:  # stands in for the predictor
        def translate_arrays(self, arrays):
            return [255 - a for a in arrays]

    good, rgba = encode(noise(8, 6)), encode(noise(5, 4, "RGBA", seed=1))
    items = [{"upload": good, "format": "PNG"}, {"upload": good[:60], "format": "PNG"},
             np.zeros((4, 4, 3), np.uint8), {"upload": rgba, "format": "JPEG"}]
    out = translate_items(Inverter(), items, 10**6)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(out[0]["content"]))),
                                  255 - np.asarray(Image.open(io.BytesIO(good))))
    assert out[1]["status"] == 400 and out[1]["error"] == "bad_image" and out[1]["detail"]
    np.testing.assert_array_equal(out[2]["image"], np.full((4, 4, 3), 255, np.uint8))
    jpeg = Image.open(io.BytesIO(out[3]["content"]))
    assert jpeg.format == "JPEG" and jpeg.size == (5, 4)


UPLOAD_REFUSALS = [  # (what, bytes, status, error code, detail: the service's answers, unchanged)
    ("text", b"hello, world", 415, "unsupported_format",
     "not a PNG, JPEG, WEBP, BMP, TIFF image (first bytes b'hello, w')"),
    ("a bomb's header", png_header_only(20000, 20000), 413, "too_many_pixels",
     "upload: the image header claims 400,000,000 pixels, over the limit of 1,000,000"),
    ("a truncated PNG", encode(noise(64, 64))[:300], 400, "bad_image", None),
]


@pytest.mark.parametrize("what,data,status,error,detail", UPLOAD_REFUSALS, ids=[u[0] for u in UPLOAD_REFUSALS])
def test_an_upload_is_one_library_call_whose_typed_errors_keep_their_answers(what, data, status, error, detail):
    """translate.uploads decodes an upload, limits included; the HTTP layer maps its typed errors."""
    from serving.http_layer import error_result
    from translate import uploads
    from translate.errors import TranslateError

    with pytest.raises(TranslateError) as e:
        uploads.decode_upload(data, 10**6)
    answer = error_result(e.value)
    assert (answer["status"], answer["error"]) == (status, error), answer
    assert answer["detail"] == detail if detail else answer["detail"]


def test_the_header_check_decodes_nothing_and_alpha_comes_back_as_an_array():
    from translate import uploads

    assert uploads.upload_pixels(png_header_only(2000, 1000), 10**7) == 2_000_000  # its pixel data is garbage
    assert uploads.upload_pixels(encode(noise(64, 64))[:300], 10**6) == 64 * 64  # the header is whole
    image, alpha = uploads.decode_upload(encode(noise(5, 4, "RGBA", seed=1)), 10**6)
    assert image.shape == (4, 5, 3) and alpha.shape == (4, 5) and alpha.dtype == np.uint8
    assert uploads.decode_upload(encode(noise(5, 4, "RGBA").convert("RGB").convert("RGBA")), 10**6)[1] is None


HANDLE_LOOP = asyncio.new_event_loop()  # for every deployment handle call of this module (see call_model_server)


def call_model_server(*calls: tuple[str, object]) -> list[dict]:
    """ModelServer's answers to (model id, item) calls through a deployment handle, awaited in this module's one
    event loop: in Serve's throughput-optimized mode a handle's router runs in the loop of its first caller (and
    this process keeps one router per deployment), so a blocking call or a second loop would find none."""
    from ray import serve

    async def call_all():
        handle = serve.get_deployment_handle("ModelServer", app_name="translate")
        return [await asyncio.wait_for(handle.options(multiplexed_model_id=model_id).remote(item), TIMEOUT)
                for model_id, item in calls]

    return HANDLE_LOOP.run_until_complete(call_all())


def test_the_model_deployment_takes_compressed_uploads(service):
    data = encode(noise(20, 12, seed=6))
    result, bad = call_model_server(("unet@v0001", {"upload": data, "format": "PNG"}),
                                    ("unet@v0001", {"upload": data[:50], "format": "PNG"}))
    assert result["batch_size"] >= 1
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(result["content"]))), reference(service, data))
    assert bad["status"] == 400 and bad["error"] == "bad_image"


BAD = [  # (what, request arguments, status, error code)
    ("text instead of an image", dict(data=b"hello, world"), 415, "unsupported_format"),
    ("a GIF (not on the allow-list)", dict(data=encode(noise(8, 8), "GIF")), 415, "unsupported_format"),
    ("a truncated PNG", dict(data=encode(noise(64, 64))[:300]), 400, "bad_image"),
    ("an empty body", dict(data=b""), 400, "missing_image"),
    ("a decompression bomb header", dict(data=png_header_only(20000, 20000)), 413, "too_many_pixels"),
    ("over the pixel limit", dict(data=encode(Image.new("L", (4097, 4096)))), 413, "too_many_pixels"),
    ("over the byte limit", dict(data=b"\x89PNG\r\n\x1a\n" + bytes(9 * 2**20)), 413, "too_large"),
    ("a form without the image field", dict(files={"picture": ("x.png", b"\x89PNG")}), 400, "missing_field"),
    ("the image field as text", dict(data={"image": "not a file"}), 400, "missing_field"),
    ("a broken multipart body", dict(data=b"--xyz\r\nContent-Disposition: form-data; name=\"image\"\r\n",
                                     headers={"Content-Type": "multipart/form-data; boundary=xyz"}), 400,
     "missing_field"),  # cut before its content: a form without the image
    ("a multipart body without a boundary", dict(data=b"--xyz\r\n", headers={"Content-Type": "multipart/form-data"}),
     400, "bad_form"),
    ("over the byte limit, chunked", dict(data=(b"\x89PNG\r\n\x1a\n" + bytes(2**20) for _ in range(9))), 413,
     "too_large"),
    ("a bad version string", dict(data=b"x", params={"version": "../v0001"}), 400, "bad_version"),
    ("a bad version in the form", dict(files={"image": ("x.png", b"x")}, data={"version": "1"}), 400, "bad_version"),
    ("an unknown version", dict(data=b"x", params={"version": "v0099"}), 404, "not_found"),
    ("an unknown model", dict(name="nope", data=b"x"), 404, "not_found"),
    ("a bad model name", dict(name="Bad.Name", data=b"x"), 400, "bad_name"),
]


@pytest.mark.parametrize("what,kw,status,error", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_its_4xx_with_a_json_error(service, what, kw, status, error):
    kw = dict(kw)
    r = post(service, kw.pop("name", "unet"), **kw)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["detail"] and body["error"] == error


def test_corrupted_files_never_get_a_5xx(service):
    rng = np.random.default_rng(0)
    sources = [encode(noise(24, 16, seed=i), fmt) for i, fmt in enumerate(("PNG", "JPEG", "WEBP", "TIFF", "BMP"))]
    for i in range(30):
        data = bytearray(sources[i % len(sources)])
        if i % 2:
            del data[int(rng.integers(8, len(data))):]  # truncated after the magic bytes
        else:
            for j in rng.integers(8, len(data), 6):  # a few flipped bytes
                data[j] ^= 0xFF
        r = post(service, "resnet", data=bytes(data))
        assert r.status_code == 200 or (400 <= r.status_code < 500 and r.json()["error"]), (i, r.status_code, r.text)


@pytest.mark.parametrize("method,path,status", [("GET", "/v1/models/unet/translate", 405),
                                                ("GET", "/nowhere", 404), ("POST", "/v1/models/a/b/translate", 404)])
def test_unknown_routes_answer_json(service, method, path, status):
    r = requests.request(method, service.url + path, timeout=TIMEOUT)
    assert r.status_code == status and "error" in r.json()


def test_overload_answers_503_with_retry_after_and_never_hangs(service):
    # 1024 x 1024 keeps a small model busy; the queue holds max_queued_requests, the rest are refused
    data = encode(Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (1024, 4))).convert("RGB"))
    statuses, refused = [], None
    with ThreadPoolExecutor(24) as pool:
        for _ in range(3):
            responses = list(pool.map(lambda _: post(service, data=data), range(24)))
            statuses += [r.status_code for r in responses]
            refused = next((r for r in responses if r.status_code == 503), None)
            if refused is not None:
                break
    assert set(statuses) <= {200, 503}, statuses
    assert refused is not None and 200 in statuses
    assert int(refused.headers["Retry-After"]) >= 1 and refused.json()["error"] == "overloaded"


def test_models_health_and_promotion_without_restart(service):
    listing = requests.get(service.url + "/v1/models", timeout=TIMEOUT).json()["models"]
    assert {m["name"]: m["current"] for m in listing} == {"bicycle": "v0001", "resnet": "v0001", "unet": "v0001"}
    assert {m["name"]: m["versions"][0]["latent_size"] for m in listing} == {"bicycle": 4, "resnet": 0, "unet": 0}
    assert next(m for m in listing if m["name"] == "unet")["versions"][0]["metrics"] == {"l1": 0.5}
    health = requests.get(service.url + "/healthz", timeout=TIMEOUT)
    assert health.status_code == 200 and health.json()["status"] == "ok"

    store, data = service.store, encode(noise(36, 20, seed=7))
    store.register("promo", tiny_onnx("unet_32", seed=10))
    store.register("promo", tiny_onnx("unet_32", seed=11))
    first = post(service, "promo", data=data)
    assert first.headers["x-model-version"] == "v0001"
    store.promote("promo", "v0002")
    second = post(service, "promo", data=data)
    assert second.headers["x-model-version"] == "v0002"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(second.content))),
                                  reference(service, data, "promo", "v0002"))
    pinned = post(service, "promo", data=data, params={"version": "v0001"})
    assert pinned.content == first.content


def test_a_multimodal_model_answers_several_samples_as_json_or_a_grid(service):
    """samples and seed: several images as a JSON body of base64 PNGs, each what the predictor gives for the codes
    it draws from the seed (the same seed, the same images); one sample, or grid=true, as one image."""
    data = encode(noise(40, 24, seed=8))
    p, image = service.predictor("bicycle"), imageio.decode(data)
    expected = p.translate_samples(np.asarray(image), p.latents(3, seed=7))
    r = post(service, "bicycle", data=data, params={"samples": 3, "seed": 7})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    body = r.json()
    assert (body["model"], body["version"], body["seed"], body["samples"], body["media_type"]) == (
        "bicycle", "v0001", 7, 3, "image/png")
    assert r.headers["x-seed"] == "7" and r.headers["x-samples"] == "3"
    images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))) for b in body["images"]]
    for got, want in zip(images, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert np.abs(images[0].astype(int) - images[1].astype(int)).mean() > 2  # different codes, different images
    assert post(service, "bicycle", data=data, params={"samples": 3, "seed": 7}).json()["images"] == body["images"]
    other = post(service, "bicycle", data=data, params={"samples": 3, "seed": 8}).json()
    assert other["images"] != body["images"]
    one = post(service, "bicycle", data=data, params={"seed": 7})  # one sample: one PNG, as today
    assert one.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(one.content))), images[0])
    fresh = post(service, "bicycle", data=data, params={"samples": 2})  # no seed: a fresh one, said in X-Seed
    assert fresh.json()["seed"] == int(fresh.headers["x-seed"])
    grid = post(service, "bicycle", data=data, params={"samples": 4, "seed": 7, "grid": "true"})
    assert grid.headers["content-type"] == "image/png"
    g = np.asarray(Image.open(io.BytesIO(grid.content)))
    assert g.shape == (2 * 24 + 4, 2 * 40 + 4, 3)  # 2 x 2 with a 4 px gap
    four = p.translate_samples(np.asarray(image), p.latents(4, seed=7))
    np.testing.assert_array_equal(g[:24, :40], four[0])
    np.testing.assert_array_equal(g[28:, 44:], four[3])
    assert (g[24:28] == 255).all() and (g[:, 40:44] == 255).all()
    plain = post(service, "bicycle", data=data)  # no samples: the one answer of code 0
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(plain.content))), np.asarray(p(image)))
    jpeg = post(service, "bicycle", data=data, params={"samples": 2, "seed": 1}, headers={"Accept": "image/jpeg"})
    assert jpeg.json()["media_type"] == "image/jpeg"


@pytest.mark.parametrize("name,params,needle", [
    ("bicycle", {"samples": 17}, "samples: must be from 1 to 16, got 17"),
    ("bicycle", {"samples": 0}, "samples: must be from 1 to 16, got 0"),
    ("bicycle", {"seed": -1}, "seed: must be >= 0"),
    ("unet", {"samples": 2}, "samples: unet@v0001 gives one answer"),
    ("bicycle", {"samples": 2, "async": "true"}, "answered in the request"),
])
def test_bad_samples_get_a_400_naming_what_to_change(service, name, params, needle):
    r = post(service, name, data=encode(noise(20, 20)), params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("bad_samples", "bad_seed") and needle in r.json()["detail"]


def test_the_model_deployment_allow_lists_model_ids(service):
    image = np.zeros((8, 8, 3), np.uint8)
    bad, missing = call_model_server(("../../etc@v0001", image), ("unet@v0042", image))
    assert bad["status"] == 400 and "name" in bad["error"]
    assert missing["status"] == 404


TOKEN = {"Authorization": f"Bearer {RETRAIN_TOKEN}"}


def retrain(service, headers, data, name, **kw):
    return requests.post(f"{service.url}/v1/models/{name}/retrain", data=data, headers=headers or {},
                         timeout=TIMEOUT, **kw)


def zip_folder(folder) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*.png")):
            zf.writestr(p.relative_to(folder).as_posix(), p.read_bytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def retrainable(service, tmp_path_factory):
    """`maps` and `roads`: one tiny Pix2Pix trained 4 steps (under-trained: fine-tuning beats it), registered with
    its checkpoint, which retraining starts from; and a zip of 16 + 4 + 4 new pairs."""
    from tests.conftest import make_pairs, tiny_pix2pix_config
    from training.loop import Trainer
    from training.pix2pix import Pix2Pix

    root = tmp_path_factory.mktemp("retrain")
    pairs = make_pairs(root / "pairs", n_train=16, n_val=4)
    run = Trainer(Pix2Pix, tiny_pix2pix_config(pairs, root / "run", steps=4, lr=1e-3, batch_size=1,
                                               export=True)).fit()
    for name in ("maps", "roads"):
        service.store.register(name, run / "model.onnx", checkpoint=run / "checkpoints" / "latest.pt")
    return zip_folder(pairs)


RETRAIN_STATES = ("queued", "running", "succeeded")


def follow_retraining(service, job_id: str, limit_s: float = 900) -> list[dict]:
    """GET /v1/jobs/ID until the job has ended (a hang bound, not a speed check): every answer."""
    seen, deadline = [], time.monotonic() + limit_s
    while not seen or seen[-1]["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, seen[-1]
        r = requests.get(f"{service.url}/v1/jobs/{job_id}", timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        seen.append(r.json())
        time.sleep(0.2)
    return seen


def test_retraining_over_http_as_a_form_and_as_curls_raw_zip_serves_the_new_version(service, retrainable):
    """POST .../retrain (the zip as the multipart field `data`, or as the body as curl --data-binary sends it) -> 202
    and a job; GET /v1/jobs/ID follows it through its states to the outcome; the new version is what is served."""
    data = encode(noise(40, 32, seed=21))
    assert post(service, "roads", data=data).headers["x-model-version"] == "v0001"
    jobs = {}
    for name, kw in (("maps", dict(headers=TOKEN, data=None, files={"data": ("pairs.zip", retrainable)})),
                     ("roads", dict(headers={**TOKEN, "Content-Type": CURL_FORM}, data=retrainable))):
        r = retrain(service, name=name, **kw)
        assert r.status_code == 202, r.text
        jobs[name] = r.json()
        assert jobs[name]["state"] == "queued" and jobs[name]["base_version"] == "v0001"
        assert jobs[name]["data"] == {"train": 16, "val": 4, "test": 4, "eval_split": "test", "held_out": "uploaded"}
    for name, job in jobs.items():
        seen = follow_retraining(service, job["job_id"])
        assert seen[-1]["state"] == "succeeded", seen[-1]["error"]
        states = [job["state"]] + [s["state"] for s in seen]
        indices = [RETRAIN_STATES.index(s) for s in states]
        assert indices == sorted(indices), states  # queued -> running -> succeeded, never back
        steps = [s["progress"]["step"] for s in seen]
        assert steps == sorted(steps) and seen[-1]["progress"] == {"step": 200, "total": 200}
        outcome = seen[-1]["outcome"]
        assert outcome["promoted"] and outcome["new_version"] == "v0002" and outcome["compared_with"] == "v0001"
        assert outcome["new_metric"] < outcome["current_metric"], outcome
        served = post(service, name, data=data)
        assert served.status_code == 200 and served.headers["x-model-version"] == "v0002"
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(served.content))),
                                      reference(service, data, name, "v0002"))


def test_retraining_refusals_over_http(service, retrainable):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + RETRAIN_TOKEN}):
        r = retrain(service, headers, data=retrainable, name="maps")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    for data, ctype, error, detail in (
            (b"PK\x05\x06" + bytes(18), None, "bad_data", "no images"),  # an empty zip
            (b"pairs, not zipped", CURL_FORM, "bad_data", "not a readable zip"),
            ({"data": "text, not a file"}, None, "missing_field", "must be a file")):  # a urlencoded form
        r = retrain(service, {**TOKEN, **({"Content-Type": ctype} if ctype else {})}, data=data, name="maps")
        assert r.status_code == 400 and r.json()["error"] == error and detail in r.json()["detail"], r.text
    for name, detail in (("nope", "no model named 'nope'"), ("unet", "unet v0001 has no training checkpoint")):
        r = retrain(service, TOKEN, data=retrainable, name=name)
        assert r.status_code == 400 and r.json()["error"] == "bad_name" and detail in r.json()["detail"], r.text
    over = b"PK\x03\x04" + bytes(SERVICE_OPTIONS["max_zip_bytes"])
    for body in (over, (over[i:i + 2**20] for i in range(0, len(over), 2**20))):  # Content-Length, then chunked
        r = retrain(service, TOKEN, data=body, name="maps")
        assert r.status_code == 413 and r.json()["error"] == "too_large", r.text
    for job_id, status, error in (("0123456789ab", 404, "not_found"), ("_not-an-id", 400, "bad_job_id")):
        r = requests.get(f"{service.url}/v1/jobs/{job_id}", timeout=TIMEOUT)
        assert (r.status_code, r.json()["error"]) == (status, error), r.text


def test_retraining_is_disabled_without_a_configured_token():
    from serving.http_layer import ServiceError, check_retrain_auth

    with pytest.raises(ServiceError) as e:
        check_retrain_auth(f"Bearer {RETRAIN_TOKEN}", None)
    assert e.value.status == 403
    check_retrain_auth(f"Bearer {RETRAIN_TOKEN}", RETRAIN_TOKEN)  # accepted


STRICT = "/strict"  # the second app's route prefix


@pytest.fixture(scope="module")
def strict(service, tmp_path_factory):
    """A second app on the same Ray and HTTP proxy, as an operator could configure it: a model timeout no model
    call meets (every translation answers 504, /healthz 503) and no retraining token in its environment (the
    retrain route answers 403). Its store starts empty."""
    from ray import serve

    from serving.app import deployment_options
    from serving.config import ServiceConfig
    from serving.http_layer import TOKEN_ENV
    from serving.ingress import Ingress
    from serving.model_server import ModelServer
    from serving.store import ModelStore

    root = tmp_path_factory.mktemp("strict")
    cfg = ServiceConfig.from_args({}, store=str(root / "store"), request_timeout_s=1e-6, jobs_dir=str(root / "jobs"),
                                  num_cpus=0.25, ingress_num_cpus=0.25, max_replicas=1)
    options = deployment_options(cfg, shutdown_wait_s=0.2)
    options["Ingress"]["ray_actor_options"]["runtime_env"] = {"env_vars": {TOKEN_ENV: ""}}
    model = ModelServer.options(**options["ModelServer"]).bind(asdict(cfg))
    serve.run(Ingress.options(**options["Ingress"]).bind(model, asdict(cfg)), name="strict", route_prefix=STRICT)
    try:
        yield ModelStore(cfg.store)
    finally:
        serve.delete("strict")


def test_a_model_timeout_is_504_and_an_unhealthy_service_503(service, strict):
    url = service.url + STRICT
    health = requests.get(url + "/healthz", timeout=TIMEOUT)
    assert health.status_code == 503 and health.json()["error"] == "no_model" and health.headers["Retry-After"]
    strict.register("unet", tiny_onnx("unet_32", seed=0))
    r = requests.post(url + "/v1/models/unet/translate", data=encode(noise(20, 20)), timeout=TIMEOUT)
    assert r.status_code == 504 and r.json()["error"] == "timeout" and int(r.headers["Retry-After"]) >= 1, r.text
    assert "did not answer within 1e-06 s" in r.json()["detail"]
    health = requests.get(url + "/healthz", timeout=TIMEOUT)
    assert health.status_code == 503 and health.json()["error"] == "unhealthy", health.text
    assert health.json()["detail"].startswith("unet@v0001: the model did not answer")


def test_retraining_is_403_where_the_service_has_no_token(service, strict):
    r = requests.post(service.url + STRICT + "/v1/models/unet/retrain", data=b"PK\x05\x06" + bytes(18),
                      headers=TOKEN, timeout=TIMEOUT)
    assert r.status_code == 403 and r.json()["error"] == "retraining_disabled", r.text


@pytest.mark.parametrize("accept,fmt", [(None, "PNG"), ("*/*", "PNG"), ("image/jpeg", "JPEG"),
                                        ("image/png, image/jpeg;q=0.8", "PNG"), ("image/webp,image/jpeg", "JPEG")])
def test_output_format_follows_accept(accept, fmt):
    from serving.http_layer import output_format

    assert output_format(accept) == fmt


def test_serve_config_names_the_builder():
    import yaml

    from serving import app

    cfg = yaml.safe_load(open(app.__file__.replace("app.py", "serve_config.yaml")))
    application = cfg["applications"][0]
    module, fn = application["import_path"].split(":")
    assert module == "serving.app" and callable(getattr(app, fn))
    assert app.ServiceConfig.from_args(application["args"]).store  # every arg is a known option
    assert json.loads(json.dumps(cfg["http_options"]))["request_timeout_s"] > 0


def test_replicas_are_capped_to_what_the_cpus_hold(capsys):
    from serving.config import ServiceConfig
    from serving.local_service import fit_replicas

    cfg = ServiceConfig.from_args({}, max_replicas=4, num_cpus=1.0, ingress_num_cpus=0.25)
    fitted = fit_replicas(cfg, 2.0)
    assert fitted.max_replicas == 1  # 1 + 0.25 fits in 2 CPUs, 2 + 0.25 does not
    assert (cfg.max_jobs, fitted.max_jobs) == (4 * 16, 16)  # max_jobs auto: what the replicas hold, fitted too
    given = ServiceConfig.from_args({}, max_replicas=4, num_cpus=1.0, ingress_num_cpus=0.25, max_jobs=5)
    assert fit_replicas(given, 2.0).max_jobs == 5  # as the operator set it
    assert "max_replicas 4 -> 1" in capsys.readouterr().out
    assert fit_replicas(cfg, 16.0) is cfg and not capsys.readouterr().out  # room for all: unchanged
    half = ServiceConfig.from_args({}, max_replicas=4, num_cpus=0.5, ingress_num_cpus=0.25)
    assert fit_replicas(half, 2.0).max_replicas == 3
    gpu_only = ServiceConfig.from_args({}, max_replicas=4, num_cpus=0.0)
    assert fit_replicas(gpu_only, 2.0).max_replicas == 4


# --------------------------------------------------------------------------- large images and jobs
def follow(service, job: dict, limit_s: float = 900, until=("done", "failed")) -> tuple[dict, list[float]]:
    """Poll a job until its status is one of ``until`` (a hang bound, not a speed check); the progress values seen."""
    seen, deadline = [], time.monotonic() + limit_s
    while True:
        state = requests.get(absolute(service, job["url"]), timeout=TIMEOUT).json()
        seen.append(state["progress"])
        if state["status"] in until:
            return state, seen
        assert time.monotonic() < deadline, state
        time.sleep(0.3)


def replica_memory() -> dict[str, tuple[int, int]]:
    """(resident, peak resident) bytes of this module's Serve replicas, by deployment (from /proc)."""
    from training.local_ray import serve_replicas

    out = {}
    for name, (p, *_) in serve_replicas("translate").items():
        status = dict(line.split(":", 1) for line in open(f"/proc/{p.pid}/status").read().splitlines())
        out[name] = tuple(int(status[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM"))
    return out


def test_a_4096_aerial_photo_over_http_is_the_same_size_and_equal_to_translate_predict(service, tmp_path, capsys):
    from translate_cli.main import main

    # running statistics: one tiled pass (whole-image statistics over several passes are tested in tests/translate)
    service.store.register("aerial", tiny_onnx("unet_32", seed=3, batch_stats=False))
    photo = tmp_path / "aerial.jpg"
    aerial_photo(4096).save(photo, "JPEG", quality=92)
    data = photo.read_bytes()
    assert len(data) < SERVICE_OPTIONS["max_upload_bytes"]
    before = replica_memory()

    r = post(service, "aerial", data=data)  # over async_pixels (the tiling threshold): a job
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == job["url"] and job["status"] in ("queued", "running")
    assert (job["width"], job["height"], job["model"]) == (4096, 4096, "aerial")
    cancelled = post(service, "aerial", data=data)  # behind it (one job at a time): deleted once it runs
    queued = post(service, data=encode(noise(40, 30)), params={"async": "true"})  # and behind that
    assert cancelled.status_code == queued.status_code == 202
    early = requests.get(service.url + queued.json()["url"] + "/result", timeout=TIMEOUT)
    assert early.status_code == 409 and early.json()["error"] == "not_ready" and early.headers["Retry-After"]

    state, seen = follow(service, job)
    assert state["status"] == "done", state
    assert state["tiles_total"] == 49 and state["tiles_done"] == 49  # 7 x 7 tiles of 768 px, one pass
    assert seen == sorted(seen) and any(0 < p < 1 for p in seen), seen  # progress, not just the end
    after = replica_memory()
    result = requests.get(service.url + state["result"], timeout=TIMEOUT)
    assert result.status_code == 200 and result.headers["content-type"] == "image/png"
    assert result.headers["content-disposition"] == 'attachment; filename="aerial-v0001.png"'
    out = np.asarray(Image.open(io.BytesIO(result.content)))
    assert out.shape == (4096, 4096, 3)

    # a running job deleted: gone at once, and its run never brings it (or a result) back
    follow(service, cancelled.json(), until=("running",))
    assert requests.delete(service.url + cancelled.json()["url"], timeout=TIMEOUT).status_code == 204

    main(["predict", str(service.store.model_path("aerial")), str(photo), "--out", str(tmp_path / "cli")])
    capsys.readouterr()
    cli = np.asarray(Image.open(tmp_path / "cli" / "aerial.png"))
    # the same tiled path as translate predict: equal up to rounding
    assert np.abs(out.astype(int) - cli.astype(int)).max() <= 1

    # bounded memory: neither replica grew by what running the image whole would hold at least, its input and
    # the network's first layer (8 channels) in float32 (704 MiB; more than 14 times the image as uint8)
    whole = 4096 * 4096 * (3 + 8) * 4
    for name in ("ModelServer", "Ingress"):
        grew = after[name][1] - before[name][0]
        assert grew < whole, f"the {name} replica grew by {grew / 2**20:.0f} MiB"

    second, _ = follow(service, queued.json())  # the slot the deleted job held is free again
    assert second["status"] == "done"
    for url in (cancelled.json()["url"], cancelled.json()["url"] + "/result"):
        gone = requests.get(service.url + url, timeout=TIMEOUT)
        assert gone.status_code == 404 and gone.json()["error"] == "not_found", gone.text
    for url in (job["url"], queued.json()["url"]):
        assert requests.delete(service.url + url, timeout=TIMEOUT).status_code == 204


def test_a_large_image_with_async_false_is_answered_in_the_request_tiled(service, tmp_path, capsys):
    """Over async_pixels (and the tiling threshold) an upload becomes a job unless the request says async=false:
    then the answer is the image itself, translated tile by tile as `translate predict` does."""
    from translate_cli.main import main

    name = "aerial-sync"
    service.store.register(name, tiny_onnx("unet_32", seed=3, batch_stats=False))
    photo = tmp_path / "aerial.png"
    aerial_photo(2112).save(photo)
    r = post(service, name, data=photo.read_bytes(), params={"async": "false"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (2112, 2112) and r.headers["x-model-version"] == "v0001"
    main(["predict", str(service.store.model_path(name)), str(photo), "--out", str(tmp_path / "cli")])
    capsys.readouterr()
    cli = np.asarray(Image.open(tmp_path / "cli" / "aerial.png"))
    assert np.abs(np.asarray(out).astype(int) - cli.astype(int)).max() <= 1


def test_a_small_image_as_a_job_gives_the_same_pixels_and_can_be_deleted(either):
    service = either
    data = encode(noise(45, 31, "RGBA", seed=12))
    r = post(service, data=data, params={"async": "true"}, headers={"Accept": "image/jpeg"})
    assert r.status_code == 202
    state, _ = follow(service, r.json())
    assert state["status"] == "done" and state["progress"] == 1 and state["media_type"] == "image/jpeg", (state["error"], state["detail"])
    assert state["expires"] - state["finished"] == pytest.approx(900)
    result = requests.get(absolute(service, state["result"]), timeout=TIMEOUT)
    assert result.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(result.content)).size == (45, 31)
    png = post(service, data=data, params={"async": "true"})
    png_state, _ = follow(service, png.json())
    got = Image.open(io.BytesIO(requests.get(absolute(service, png_state["result"]), timeout=TIMEOUT).content))
    np.testing.assert_array_equal(np.asarray(got), reference(service, data))  # alpha restored, as in a 200
    for url in (state["url"], png_state["url"]):
        assert requests.delete(absolute(service, url), timeout=TIMEOUT).status_code == 204
        gone = requests.get(absolute(service, url), timeout=TIMEOUT)
        assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    for method, suffix in (("GET", ""), ("GET", "/result"), ("DELETE", "")):
        for job_id, status, error in (("nothex", 400, "bad_job_id"), ("0" * 32, 404, "not_found")):
            r = requests.request(method, f"{service.url}/v1/translations/{job_id}{suffix}", timeout=TIMEOUT)
            assert (r.status_code, r.json()["error"]) == (status, error), (method, suffix, r.text)
    failed = post(service, "nope", data=data, params={"async": "true"})
    assert failed.status_code == 404  # refusals come at once, not as failed jobs


def test_a_colocated_app_is_one_deployment_that_tiles_reports_progress_and_refuses_alike(colocated, tmp_path):
    """With ``colocate`` the ingress runs the models: no ModelServer deployment, a job over the tiling threshold runs
    tile by tile (the stream of progress is ModelServer's, tested with the 4096 px photo) and answers the tiled
    predictor's pixels; health and refusals as the split app's."""
    from ray import serve

    from translate.predictor import Predictor
    from translate.tiling import TileConfig

    assert set(serve.status().applications["colocated"].deployments) == {"Ingress"}
    name = "aerial-colocated"
    colocated.store.register(name, tiny_onnx("unet_32", seed=3, batch_stats=False))
    photo = tmp_path / "aerial.png"
    aerial_photo(1024).save(photo)
    r = post(colocated, name, data=photo.read_bytes())  # over async_pixels (the tiling threshold): a job
    assert r.status_code == 202, r.text
    state, seen = follow(colocated, r.json())
    assert state["status"] == "done" and state["tiles_total"] == 4 == state["tiles_done"], state  # 2 x 2 of 768 px
    assert seen == sorted(seen) and seen[-1] == 1, seen  # (too quick for a report between tiles)
    out = np.asarray(Image.open(io.BytesIO(requests.get(absolute(colocated, state["result"]), timeout=TIMEOUT).content)))
    tiled = Predictor(colocated.store.model_path(name), device="cpu", tiling=TileConfig(threshold=512 * 512))
    assert np.abs(out.astype(int) - np.asarray(tiled(Image.open(photo))).astype(int)).max() <= 1
    health = requests.get(colocated.url + "/healthz", timeout=TIMEOUT)
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    for model, data, status, error in (("nope", encode(noise(8, 8)), 404, "not_found"),
                                       ("unet", encode(noise(64, 64))[:300], 400, "bad_image"),  # in the batch
                                       ("Bad.Name", encode(noise(8, 8)), 400, "bad_name")):
        r = post(colocated, model, data=data)
        assert (r.status_code, r.json()["error"]) == (status, error), r.text


def test_jobs_queued_or_running_are_bounded_finished_ones_are_not(service):
    """max_jobs counts the jobs queued or running on every ingress replica over the same jobs_dir (here held by
    another replica's store), not finished ones; a result fetched with ?delete=true is gone at once."""
    from serving.translation_jobs import RETRY_WHEN_BUSY_S, JobStore

    data = encode(noise(20, 20, seed=5))
    finished, _ = follow(service, post(service, data=data, params={"async": "true"}).json())
    other = JobStore(service.jobs_dir, max_jobs=SERVICE_OPTIONS["max_jobs"])  # another ingress replica
    held = [other.create({"model": "unet", "version": "v0001", "width": 2, "height": 2, "format": "PNG"},
                         np.zeros((2, 2, 3), np.uint8)) for _ in range(SERVICE_OPTIONS["max_jobs"])]
    try:
        refused = post(service, data=data, params={"async": "true"})
        assert refused.status_code == 503 and refused.json()["error"] == "too_many_jobs", refused.text
        assert refused.headers["Retry-After"] == str(RETRY_WHEN_BUSY_S)  # nothing running says how far it is
        assert requests.delete(service.url + f"/v1/translations/{held.pop()['id']}", timeout=TIMEOUT).status_code == 204
        r = post(service, data=data, params={"async": "true"})  # the freed slot
        assert r.status_code == 202, r.text
        state, _ = follow(service, r.json())
        once = requests.get(service.url + state["result"], params={"delete": "true"}, timeout=TIMEOUT)
        assert once.status_code == 200 and once.headers["content-length"] == str(len(once.content))
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(once.content))), reference(service, data))
        gone = requests.get(service.url + state["url"], timeout=TIMEOUT)  # deleted before its last bytes were sent
        assert gone.status_code == 404 and gone.json()["error"] == "not_found"
        kept = requests.get(service.url + finished["result"], timeout=TIMEOUT)  # finished before: still there
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(kept.content))), reference(service, data))
    finally:
        for job in held:
            other.delete(job["id"])
    assert requests.delete(service.url + finished["url"], timeout=TIMEOUT).status_code == 204


def test_openapi_describes_the_requests_errors_and_this_services_limits(service):
    spec = requests.get(service.url + "/openapi.json", timeout=TIMEOUT).json()
    op = spec["paths"]["/v1/models/{name}/translate"]["post"]
    body = op["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert {"image/png", "image/jpeg", "image/tiff"} <= set(body)
    assert {p["name"] for p in op["parameters"]} == {"name", "version", "async", "samples", "seed", "grid"}
    assert set(op["responses"]["200"]["content"]) == {"image/png", "image/jpeg", "application/json"}
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SamplesBody")
    assert {"seed", "samples", "images", "media_type"} <= set(spec["components"]["schemas"]["SamplesBody"]["required"])
    assert op["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobBody")
    for code in ("400", "404", "413", "415", "503", "504"):
        assert op["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert set(spec["components"]["schemas"]["ErrorBody"]["required"]) == {"error", "detail"}
    assert op["x-limits"]["max_pixels"] == SERVICE_OPTIONS["max_pixels"] == 4096 * 4096
    assert op["x-limits"]["max_upload_bytes"] == SERVICE_OPTIONS["max_upload_bytes"]
    assert f"{SERVICE_OPTIONS['max_pixels']:,} pixels" in op["requestBody"]["description"]
    assert spec["info"]["x-limits"]["max_jobs"] == SERVICE_OPTIONS["max_jobs"]
    assert spec["info"]["x-limits"]["jobs_disk_budget_mb"] == 2048
    result = spec["paths"]["/v1/translations/{job_id}/result"]["get"]
    assert {p["name"] for p in result["parameters"]} == {"job_id", "delete"}
    assert {"/v1/translations/{job_id}", "/v1/translations/{job_id}/result", "/v1/models", "/healthz"} <= set(
        spec["paths"])
    docs = requests.get(service.url + "/docs", timeout=TIMEOUT)
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    # Swagger UI comes from the service itself: /docs works where no CDN can be reached
    script = docs.text.split('<script src="')[1].split('"')[0]
    assert script.startswith("/") and requests.get(service.url + script, timeout=TIMEOUT).status_code == 200


def test_a_multiband_16bit_geotiff_upload_is_read_as_translate_predict_reads_it(service, tmp_path, capsys):
    """Bands, 16-bit stretch and the nodata mask by translate.raster's rules: the same pixels as
    ``translate predict`` on the file (which writes a georeferenced GeoTIFF), the mask as alpha."""
    import rasterio
    from rasterio.transform import from_origin

    from translate_cli.main import main

    rng = np.random.default_rng(3)
    bands = rng.integers(200, 4000, (4, 40, 56), dtype=np.uint16)  # 4 bands of 12-bit values in 16 bits
    bands[:, :, :6] = 0  # a nodata collar
    src = tmp_path / "aerial.tif"
    with rasterio.open(src, "w", driver="GTiff", width=56, height=40, count=4, dtype="uint16", nodata=0,
                       crs="EPSG:32633", transform=from_origin(500000, 4100000, 0.5, 0.5)) as ds:
        ds.write(bands)
    r = post(service, "resnet", data=src.read_bytes())
    assert r.status_code == 200, r.text
    out = np.asarray(Image.open(io.BytesIO(r.content)))
    assert out.shape == (40, 56, 4)
    main(["predict", str(service.store.model_path("resnet")), str(src), "--out", str(tmp_path / "out")])
    capsys.readouterr()
    with rasterio.open(tmp_path / "out" / "aerial.tif") as ds:
        cli = np.transpose(ds.read(), (1, 2, 0))
    np.testing.assert_array_equal(out[:, :, 3], cli[:, :, 3])
    assert (out[:, :6, 3] == 0).all() and (out[:, 6:, 3] == 255).all()
    np.testing.assert_array_equal(out[:, 6:, :3], cli[:, 6:, :3])


def test_a_raster_over_the_pixel_limit_is_refused_from_its_header(service):
    import rasterio

    with rasterio.MemoryFile() as f:
        with f.open(driver="GTiff", width=5000, height=4000, count=1, dtype="uint8", sparse_ok=True, tiled=True):
            pass  # no block written: a few hundred bytes that claim 20 million pixels
        data = f.read()
    r = post(service, "resnet", data=data)
    assert r.status_code == 413 and r.json()["error"] == "too_many_pixels", r.text


def test_every_status_the_api_documents_was_answered_to_a_test_here(service, request):
    """Each (method, route, status) in /openapi.json came back to some request of this module's tests (recorded
    as they ran): a documented answer nothing provokes fails here. Runs last, and only with the whole module."""
    module_tests = {n for n in vars(request.module) if n.startswith("test_")}
    selected = {i.originalname for i in request.session.items if i.module is request.module}
    if module_tests - selected:
        pytest.skip("checks the answers of the whole module's tests; run the module")
    spec = requests.get(service.url + "/openapi.json", timeout=TIMEOUT).json()
    documented = {(method.upper(), path, int(code)) for path, ops in spec["paths"].items()
                  for method, op in ops.items() for code in op["responses"]}
    routes = {path: re.compile(re.sub(r"\{[^/]+\}", "[^/]+", path)) for path in spec["paths"]}

    def route(path: str) -> str | None:
        path = path.removeprefix(STRICT).removeprefix(COLOCATED)
        return next((r for r, pattern in routes.items() if pattern.fullmatch(path)), None)

    answered = {(method, route(path), status) for method, path, status in ANSWERED}
    assert not documented - answered, f"documented but never answered: {sorted(documented - answered)}"
