"""Parameter spaces shipped with nextitem, for ``nextitem tune -opf NAME`` (JSON lines, the official paropt form)."""
