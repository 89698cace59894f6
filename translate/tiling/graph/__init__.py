"""The ONNX graph rewriting behind tiling: normalisation layers that take and report statistics
(:mod:`.norms`), where a graph is cut to run its deep part once on the whole image (:mod:`.cut`), and an
input fixed to a constant (:mod:`.bind`: a multimodal model's code, the same for every tile)."""
