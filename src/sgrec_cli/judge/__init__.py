"""The Personalized Semantic Judge (docs/design.md §6): Stage A aspect evidence from a backend
(embedding formulas, a local causal LM, or an OpenAI-compatible server), Stage B a
user-conditional aggregator fit from pairwise feedback, and the `sgrec judge` step."""

ASPECTS = ("profile", "future", "novelty")
OBJECTIVES = ("bt", "group-rl")  # Stage B aggregator objectives (judge/aggregator.py)
