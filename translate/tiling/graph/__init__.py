"""The ONNX graph rewriting behind tiling: normalisation layers that take and report statistics
(:mod:`.norms`), and where a graph is cut to run its deep part once on the whole image (:mod:`.cut`)."""
