"""Old import path of the GGUF writer: the code is minillm/export/gguf.py; this re-exports it."""

from minillm.export.gguf import *  # noqa: F403
from minillm.export.gguf import export_gguf, permute_qk, unpermute_qk, write_gguf  # noqa: F401
