"""Models, one file each."""
from .gru4rec import GRU4Rec, GRU4RecConfig, GRU4RecNet

__all__ = ["GRU4Rec", "GRU4RecConfig", "GRU4RecNet"]
