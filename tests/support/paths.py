"""Where the project and the shared data live, for every test module."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]   # the project checkout
SHARED = ROOT.parent / "shared"              # real small models and photos, beside the checkout
