"""Hard-negative mining: embed, search with FAISS, filter false negatives, write a sidecar.

miner (the streaming pipeline and its config), policies (same_category / knn / session and
their round-robin merge), index (exact or IVF FAISS), fallback (a training-free embedder),
sidecar (the parquet table `moon train` reads).
"""

from moon.negatives.fallback import FallbackEmbedder
from moon.negatives.miner import MinerConfig, MiningReport, mine_negatives
from moon.negatives.sidecar import negatives_by_pair, read_negatives, write_negatives

__all__ = ["FallbackEmbedder", "MinerConfig", "MiningReport", "mine_negatives", "negatives_by_pair",
           "read_negatives", "write_negatives"]
