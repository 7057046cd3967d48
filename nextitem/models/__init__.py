"""Models, one file each, and the registry the command line and the pipeline look names up in."""
from .bert4rec import BERT4Rec, BERT4RecConfig
from .gru4rec import GRU4Rec, GRU4RecConfig, GRU4RecNet
from .lrurec import LRURec, LRURecConfig
from .sasrec import SASRec, SASRecConfig
from .sequential import SequentialRecommender

# User-history models sharing the sequential contract (GRU4Rec has its own training loop).
SEQUENTIAL_MODELS: dict[str, type[SequentialRecommender]] = {m.name: m for m in (SASRec, BERT4Rec, LRURec)}

__all__ = ["BERT4Rec", "BERT4RecConfig", "GRU4Rec", "GRU4RecConfig", "GRU4RecNet", "LRURec", "LRURecConfig",
           "SASRec", "SASRecConfig", "SEQUENTIAL_MODELS", "SequentialRecommender"]
