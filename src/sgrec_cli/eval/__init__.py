"""Offline evaluation: ranking metrics over top-k lists and paired bootstrap comparisons."""
