"""Asking a trained model: `sgrec recommend` (recommend.py) and `sgrec serve`, one model of a
run behind an HTTP JSON API (server.py, app.py), with concurrent requests batched into one
search (batcher.py). The model is loaded and its artifacts checked before the port is opened,
so a run without the model never starts a server."""
