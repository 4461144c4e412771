"""The torchrun entry point of ``test_distributed``: the tiny search, data-parallel.

``python -m torch.distributed.run --standalone --nproc_per_node=2 -m tests.ddp_search_worker
OUT`` runs it; rank 0 writes the run directory OUT.
"""

import sys
from pathlib import Path

from nas import search
from tests.test_search_engine import tiny_config, tiny_constraint

if __name__ == "__main__":
    search(tiny_config(Path(sys.argv[1])), [tiny_constraint(4.0)])
