"""Constants shared by every layer.

:data:`UNKNOWN` is the name given to a face that matches nobody enrolled (notebook 04): the
identifier, the store, the album, the live loop and the command line all use this one string.
"""

from __future__ import annotations

__all__ = ["UNKNOWN"]

#: the label of a face that is nobody you know (notebook 04)
UNKNOWN = "unknown"
