"""sgrec: semantic-ID generative recommendation with S-GRec (arXiv 2602.10606)."""

__version__ = "0.1.0"
