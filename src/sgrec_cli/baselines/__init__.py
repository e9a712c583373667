"""Non-generative reference recommenders (most-popular) to compare the generator against."""
