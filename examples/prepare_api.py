"""The Python API behind `sgrec prepare`: the same config dataclass the CLI builds."""

from pathlib import Path

from sgrec_cli.config import PrepareConfig
from sgrec_cli.data.prepare import prepare
from sgrec_cli.data.store import load_data

here = Path(__file__).parent
res = prepare(PrepareConfig(source=str(here / "my_shop"), max_history=10), Path("runs/my_shop"))
print(res.stats["users"], "users,", res.stats["items"], "items")
data = load_data(Path("runs/my_shop"))
for ex in data.split("test"):
    print("user", ex.user, "history", ex.history, "-> target", ex.target)
