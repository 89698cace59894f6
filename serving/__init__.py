"""The service: Ray Serve app, model store, batch conversion, retraining (see DESIGN.md).

Not built yet; the ONNX Runtime predictor it will serve is ``translate.predictor``.
"""
