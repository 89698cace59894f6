"""The model store: named models, numbered versions, one promoted version per name.

One interface (:class:`ModelStore`) over two backends, chosen by the location given
(``--store`` / ``$TRANSLATE_STORE``, default ``./models``):

- a folder (:mod:`serving.store.local`): ``ROOT/NAME/CURRENT`` holds the promoted version,
  ``ROOT/NAME/v0001/{model.onnx,meta.json,checkpoint.pt}`` a version, written under a hidden
  temporary name and renamed into place;
- an object-storage URL (:mod:`serving.store.object_storage`): ``s3://bucket/prefix`` (or ``gs://``,
  ``az://``/``abfs://`` through fsspec): files uploaded first under a fresh id, then a version
  manifest written last with a create-only (If-None-Match) write; promotion is one more
  create-only write of a numbered promotion record. Replicas, convert actors and retraining
  jobs on any node read it through a local, checksum-verified cache (:mod:`serving.store.cache`).

Both give the same guarantees: a version is complete before it is visible; promotion is a
compare-and-swap of the pointer, so two concurrent promotions cannot both win (the loser gets
:class:`PromotionConflict`) and a crash never leaves half a pointer; names and versions come
from HTTP clients and are checked against strict patterns before any path or key is built.

Every version records (``meta``): method, direction, size_multiple, channels, config, metrics,
created, the sha256 of its model, and ``has_checkpoint`` (a slim training checkpoint kept for
fine-tuning).

The package, from the bottom up: :mod:`~serving.store.vocabulary` (names, versions, :class:`Pointer`,
the :class:`StoreBackend` interface, the errors: what backends and facade share), the verified cache
(:mod:`~serving.store.cache`), the two backends, and :mod:`~serving.store.model_store`
(:class:`ModelStore`, the facade). This module exports what the rest of the code uses.
"""
from .model_store import ModelStore
from .vocabulary import NotFoundError, PromotionConflict, StoreError, check_name, parse_model_id

__all__ = ["ModelStore", "NotFoundError", "PromotionConflict", "StoreError", "check_name", "parse_model_id"]
