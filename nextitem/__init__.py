"""nextitem: next-item recommendation (GRU4Rec done right, sequential models, two-stage pipelines)."""
__version__ = "0.1.0"
