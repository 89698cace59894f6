"""What runs the models: ``ModelServer``, the Serve replicas that hold them, and ``LocalModels``, the same work in
an ingress replica that runs its models itself (``colocate``: one deployment).

Both are a :class:`ModelRunner`: up to MAX_MODELS_PER_REPLICA models (each a translate.predictor.Predictor,
loaded from the model store; in ``ModelServer`` by ``@serve.multiplexed``, so Serve routes a model's requests
to the replicas that hold it), requests grouped into batches (``@serve.batch``, run model by model). In the
batch's worker thread the uploads are decoded (:func:`translate.uploads.decode_upload`: compressed bytes, not
arrays, travel from the ingress), the batch runs (grouped by size inside) and the answers are encoded
(:func:`translate_items`). Large images run one at a time (:meth:`ModelRunner.stream_large`), tile by tile
above ``tile_threshold`` (translate.tiling), streaming their progress.
"""
import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
from ray import serve

from serving.config import ServiceConfig
from serving.http_layer import RETRY_AFTER_S, encode_result, error_result, grid_image
from serving.store import ModelStore, parse_model_id
from translate import uploads
from translate.cuda_options import CudaOptions, replica_gpu_mem_limit
from translate.errors import TranslateError
from translate.predictor import Predictor, RuntimeOptions, gpu_memory_bytes
from translate.tiling import TileConfig

log = logging.getLogger(__name__)

MAX_MODELS_PER_REPLICA = 4


def translate_items(model, items: list, max_pixels: int, gpu_decode: bool = False) -> list[dict]:
    """One batch, on the model replica's worker thread: uploads (``{'upload': bytes, 'format': 'PNG'}``,
    checked by their header on the ingress) are decoded, every image runs through ``model`` in one call
    (grouped by size inside), uploads come back encoded (``{'content': bytes}``), arrays as arrays
    (``{'image': array}``). An upload that does not decode gets its error dict; the rest still run.

    An upload with ``'samples': K, 'seed': S`` runs once per latent code the model draws from S (a multimodal
    model's several answers, in the same call) and comes back as ``{'contents': [bytes, ...]}``, or with
    ``'grid': True`` as one image of them side by side (``{'content': bytes}``); a one-answer model asked
    for several gets the error of ``Predictor.latents``. ``gpu_decode``: JPEG uploads are decoded on the GPU where
    one is (see :func:`translate.uploads.decode_upload`)."""
    results: list[dict | None] = [None] * len(items)
    arrays, index, codes, alphas = [], [], [], {}
    for i, item in enumerate(items):
        latents: list | np.ndarray = [None]  # one translation with the model's default code
        if isinstance(item, np.ndarray):
            a = item
        else:
            try:
                a, alphas[i] = uploads.decode_upload(item["upload"], max_pixels, gpu=gpu_decode)
                if "samples" in item:
                    latents = model.latents(item["samples"], item["seed"])
            except TranslateError as e:
                results[i] = error_result(e)
                continue
            except Exception as e:  # whatever a hostile file makes Pillow raise: its request alone fails
                log.exception("decoding an upload")
                results[i] = {"status": 400, "error": "bad_image", "detail": f"the image cannot be decoded "
                                                                            f"({e.__class__.__name__}: {e})"}
                continue
        for z in latents:
            arrays.append(a)
            index.append(i)
            codes.append(z)
    outputs: dict[int, list[np.ndarray]] = {}
    if any(z is not None for z in codes):  # a batch with samples: every image its code (the default one is 0)
        latents = np.stack([np.zeros(model.latent_size, np.float32) if z is None else z for z in codes])
        translated = model.translate_arrays(arrays, latents=latents)
    else:
        translated = model.translate_arrays(arrays) if arrays else []
    for i, y in zip(index, translated, strict=True):
        outputs.setdefault(i, []).append(y)
    for i, ys in outputs.items():
        item = items[i]
        if isinstance(item, np.ndarray):
            results[i] = {"image": ys[0]}
            continue
        try:
            if item.get("grid"):
                results[i] = {"content": encode_result(grid_image(ys), None, item["format"])}
            elif "samples" in item:
                results[i] = {"contents": [encode_result(y, alphas[i], item["format"]) for y in ys]}
            else:
                results[i] = {"content": encode_result(ys[0], alphas[i], item["format"])}
        except Exception as e:  # a bug: this request's 500, not its batch's
            log.exception("encoding a result")
            results[i] = {"status": 500, "error": "internal_error", "detail": f"{e.__class__.__name__}: {e}"}
    return results  # type: ignore[return-value]


def replica_device(cfg: ServiceConfig) -> str:
    """Where a model replica runs its models: a replica given a GPU must run on it ("cuda": a model whose ONNX Runtime
    cannot use CUDA fails to load, naming why, rather than run on the CPU with a warning); one without, wherever
    ONNX Runtime finds best ("auto")."""
    return "cuda" if cfg.num_gpus else "auto"


def replica_cuda_options(cfg: ServiceConfig) -> CudaOptions:
    """A model replica's CUDA provider settings: its share of the GPU's memory (Ray schedules fractions of a GPU but
    does not divide its memory; :func:`translate.cuda_options.replica_gpu_mem_limit`), NHWC kernels if asked, the
    heuristic convolution search (uploads come in every size)."""
    # asking the GPU's size starts a CUDA context: only where the answer is used
    total = gpu_memory_bytes() if 0 < cfg.num_gpus < 1 and cfg.gpu_mem_limit is None else None
    return CudaOptions(gpu_mem_limit=replica_gpu_mem_limit(cfg.num_gpus, cfg.gpu_mem_limit, total),
                       prefer_nhwc=cfg.prefer_nhwc)


def load_predictor(path, config: ServiceConfig) -> Predictor:
    """A model replica's predictor of the model file at ``path``, run as ``config`` says (device, threads, tiling, engine, CUDA options).
    spinning=False: ONNX Runtime's threads sleep between runs instead of spinning on cores the HTTP side needs
    (less CPU per request and more requests per second on a small machine; BENCHMARKS.md)."""
    return Predictor(path, device=replica_device(config), threads=config.threads or 0,
                     tiling=TileConfig(threshold=config.tile_threshold),
                     runtime=RuntimeOptions(spinning=False, engine=config.engine), cuda=replica_cuda_options(config))


class JobCancelled(Exception):
    """Raised inside a tiled translation whose caller has gone, to stop it at the next tile."""


# Serve pickles a deployment class when it is decorated: everything it uses is defined above it.
class ModelRunner:
    """What runs the models, wherever they are held: in a model replica (:class:`ModelServer`) or in an ingress
    replica that runs them itself (:class:`LocalModels`, ``colocate``). Groups requests into batches
    (``@serve.batch``; one batch's requests for several models run model by model, so an answer never comes from
    another model) and runs large images one at a time (:meth:`stream_large`). A subclass says where a model comes
    from (:meth:`model`)."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.store = ModelStore(config.store)
        batch: Any = self.translate_batch  # Serve's batching wrapper: its setters are not in its declared type
        batch.set_max_batch_size(config.max_batch_size)
        batch.set_batch_wait_timeout_s(config.batch_wait_timeout_s)

    async def model(self, model_id: str) -> Predictor:
        raise NotImplementedError

    def load(self, model_id: str) -> Predictor:
        """The predictor of ``model_id`` (``name@version``, allow-listed: it may come from a client), from the store
        (an object store's file is downloaded once into this node's cache, checksum-verified); blocking."""
        name, version = parse_model_id(model_id)
        return load_predictor(self.store.model_path(name, version), self.config)

    @serve.batch  # sizes set from the config in __init__
    async def translate_batch(self, requests: list[tuple[str, Any]]) -> list[dict]:
        by_model: dict[str, list[int]] = {}
        for i, (model_id, _) in enumerate(requests):
            by_model.setdefault(model_id, []).append(i)
        results: list[dict] = [{}] * len(requests)
        for model_id, index in by_model.items():
            try:
                model = await self.model(model_id)
            except TranslateError as e:
                for i in index:
                    results[i] = error_result(e)
                continue
            # decoding and encoding ride along in the batch's one trip to a worker thread
            answers = await asyncio.to_thread(translate_items, model, [requests[i][1] for i in index],
                                              self.config.max_pixels, self.config.gpu_decode)
            for i, r in zip(index, answers, strict=True):
                results[i] = {**r, "batch_size": len(index)}
        return results

    async def translate(self, model_id: str, item) -> dict:
        """An upload ``{'upload': bytes, 'format': 'PNG' or 'JPEG'}`` -> ``{'content': bytes, 'batch_size': n}``
        (decoded and encoded here: compressed bytes travel between the replicas, not arrays), or a uint8
        HxWx3 array -> ``{'image': uint8 HxWxC, 'batch_size': n}``; an error is ``{'status', 'error',
        'detail'}``."""
        try:
            return await self.translate_batch((model_id, item))
        except TranslateError as e:
            return error_result(e)

    async def stream_large(self, model_id: str, image: np.ndarray) -> AsyncGenerator[dict, None]:
        """A stream: ``{'done': i, 'total': n}`` after tile runs (coalesced), then ``{'image': ...,
        'batch_size': 1}`` or an error dict. Tiled above tile_threshold (translate.tiling: bounded memory);
        a cancelled stream stops the work at the next tile."""
        cancelled = threading.Event()
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue = asyncio.Queue()

        def progress(done: int, total: int) -> None:  # on the worker thread
            if cancelled.is_set():
                raise JobCancelled
            loop.call_soon_threadsafe(updates.put_nowait, (done, total))

        work = None
        try:
            model = await self.model(model_id)
            work = asyncio.ensure_future(asyncio.to_thread(model.translate_array, image, progress))
            while not work.done():
                getter = asyncio.ensure_future(updates.get())
                await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                done, total = getter.result()
                while not updates.empty():
                    done, total = updates.get_nowait()
                yield {"done": done, "total": total}
            y = work.result()
            if not model.tiling.wants(*y.shape[:2]):  # one run, no tiles: done in one step
                yield {"done": 1, "total": 1}
            yield {"image": y, "batch_size": 1}
        except TranslateError as e:
            yield error_result(e)
        finally:
            cancelled.set()  # the caller went away (or the work ended): a tile run still going stops after it
            if work is not None and not work.done():  # it ends with JobCancelled, which nobody needs to hear
                work.add_done_callback(lambda f: f.cancelled() or f.exception())


class LocalModels(ModelRunner):
    """The models of an ingress replica that runs them itself (``colocate``: one deployment, no model replicas, no
    call between replicas): up to MAX_MODELS_PER_REPLICA predictors, the least recently used dropped first, each
    loaded once however many requests ask for it at the same time."""

    def __init__(self, config: ServiceConfig):
        super().__init__(config)
        self.models: dict[str, Predictor] = {}  # by model id, the least recently used first
        self.loading: dict[str, asyncio.Future] = {}

    async def model(self, model_id: str) -> Predictor:
        if model_id in self.models:
            self.models[model_id] = self.models.pop(model_id)
            return self.models[model_id]
        if model_id not in self.loading:
            self.loading[model_id] = asyncio.ensure_future(asyncio.to_thread(self.load, model_id))
        loading = self.loading[model_id]
        try:
            predictor = await asyncio.shield(loading)  # a caller that goes away does not cancel the others' load
        finally:
            if loading.done() and self.loading.get(model_id) is loading:
                del self.loading[model_id]  # loaded, or failed: the next request tries again
        self.models[model_id] = predictor
        while len(self.models) > MAX_MODELS_PER_REPLICA:
            del self.models[next(iter(self.models))]
        return predictor


# settings that come from ServiceConfig are applied in build_app (deployment_options), not here
@serve.deployment(name="ModelServer", backpressure_config={"retry_after_s": RETRY_AFTER_S})
class ModelServer(ModelRunner):
    """The model replicas: each holds up to MAX_MODELS_PER_REPLICA models (``@serve.multiplexed``: Serve routes a
    model's requests to the replicas that hold it) and runs batches of same-model requests, and large images one
    at a time, tile by tile, reporting progress (``translate_large``)."""

    def __init__(self, config: dict):
        super().__init__(ServiceConfig(**config))

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def load_model(self, model_id: str):
        return await asyncio.to_thread(self.load, model_id)

    async def model(self, model_id: str) -> Predictor:
        return await self.load_model(model_id)

    async def __call__(self, item) -> dict:
        """One request of the multiplexed model the handle names (see :meth:`ModelRunner.translate`)."""
        return await self.translate(serve.get_multiplexed_model_id(), item)

    async def translate_large(self, image: np.ndarray):
        """:meth:`ModelRunner.stream_large` for the multiplexed model the handle names."""
        async with contextlib.aclosing(self.stream_large(serve.get_multiplexed_model_id(), image)) as stream:
            async for message in stream:
                yield message
