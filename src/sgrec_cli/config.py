"""Every step's config class in one place, for the Python API (``from sgrec_cli.config import
SFTConfig``). Each lives beside its package (e.g. ``generator/config.py``); this module only
gathers them, and nothing inside the package imports it."""

from .baselines.config import SASRecConfig
from .data.config import PrepareConfig
from .eval.config import EvalConfig
from .generator.config import GeneratorConfig, SFTConfig
from .judge.config import JudgeConfig
from .report import ReportConfig
from .rl.config import A2POConfig
from .serve.config import RecommendConfig, ServeConfig
from .sids.config import BuildSidsConfig

__all__ = ["A2POConfig", "BuildSidsConfig", "EvalConfig", "GeneratorConfig", "JudgeConfig",
           "PrepareConfig", "RecommendConfig", "ReportConfig", "SASRecConfig", "SFTConfig",
           "ServeConfig"]
