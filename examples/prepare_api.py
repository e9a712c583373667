"""The Python API behind `sgrec prepare`: the same config dataclass the CLI builds, and the
same entry point (`run_step`, named alike in every step's package)."""

from pathlib import Path

from sgrec_cli.config import PrepareConfig
from sgrec_cli.data.step import run_step as prepare
from sgrec_cli.rundir import Run

here = Path(__file__).parent
res = prepare(Path("runs/my_shop"), PrepareConfig(source=str(here / "my_shop"), max_history=10))
print(res.stats["users"], "users,", res.stats["items"], "items")
data = Run("runs/my_shop").data  # verifies the manifest and file hashes, once per Run
for ex in data.split("test"):
    print("user", ex.user, "history", ex.history, "-> target", ex.target)
