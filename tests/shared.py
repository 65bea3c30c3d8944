"""Where the tests find the read-only shared material: `$FEWJAX_SHARED`, else `../shared` beside the repository."""
import os
from pathlib import Path

SHARED = Path(os.environ.get("FEWJAX_SHARED") or Path(__file__).resolve().parents[1] / ".." / "shared")
