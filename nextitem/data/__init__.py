"""Data layer: reading and validating event files, item vocabularies, session arrays."""
from .io import Columns, DataError, read_events, validate_events
from .sessions import ItemVocab, SessionData

__all__ = ["Columns", "DataError", "ItemVocab", "SessionData", "read_events", "validate_events"]
from .session_parallel import Round, session_parallel_rounds  # noqa: E402

__all__ += ["Round", "session_parallel_rounds"]
