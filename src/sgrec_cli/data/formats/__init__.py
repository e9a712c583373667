"""Format readers, each with ``detect(source) -> bool`` and ``read(source, cfg) -> RawDataset``."""
