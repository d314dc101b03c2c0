"""Where things are: the checkout, its virtual environment's commands, the results folder."""

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENV_BIN = ROOT / ".venv" / "bin"
CDRECON = str(VENV_BIN / "cdrecon")
PY_SPY = str(VENV_BIN / "py-spy")
OUT_DIR = BENCH_DIR / "out"
