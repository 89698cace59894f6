"""The service: the on-disk model store (``store``), the Ray Serve app with its upload
page (``app``), batch conversion on Ray Data (``convert``) and retraining jobs
(``retrain``). It imports ``translate`` (and ``training`` for retraining), never the reverse.
"""
