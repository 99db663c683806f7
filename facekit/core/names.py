"""People's names: checked once, at every way in (forms, ``fit``, folders, files, the store).

Taught in notebook 04. A name becomes a folder (album export, ``data/people/<name>/``), a database
key and a label on screen, so it must be safe as all three. :func:`check_name` returns the name in
its one canonical spelling (Unicode NFC, surrounding whitespace removed) or raises
:class:`InvalidNameError` (a ``ValueError``) that says what is wrong and how to fix it.

Refused, and why:

- empty or whitespace-only names (nothing to show or to file under);
- ``/`` and ``\\`` (path separators), ``.`` and ``..``, a leading ``.`` (hidden folders are
  ignored when folders are read back), and ``< > : " | ? *`` (not allowed in Windows file names);
- control characters (``\\n``, ``\\x00``, ...), bidirectional overrides (text that displays
  differently from what it is), unassigned and private-use code points;
- more than :data:`MAX_NAME_LENGTH` characters (or 200 UTF-8 bytes: file-name limits);
- reserved names (compared case-insensitively, as on macOS/Windows file systems): ``unknown``
  (the rejected-face answer), ``singletons`` and ``person_01``-style names (the album's generated
  folders: an enrolled ``person_01`` would merge with an anonymous group), ``...`` (a face not yet
  named in the live view) and Windows device names (``CON``, ``NUL``, ``COM1``, ...).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["InvalidNameError", "check_name", "check_names", "is_generated_name", "MAX_NAME_LENGTH",
           "RESERVED_NAMES"]

MAX_NAME_LENGTH = 64  # characters, after NFC normalisation
MAX_NAME_BYTES = 200  # UTF-8 bytes (file systems allow 255 per path component)
RESERVED_NAMES = frozenset({"unknown", "singletons", "..."})
_GENERATED = re.compile(r"person_\d+", re.IGNORECASE)  # facekit.album.organise's anonymous groups
_WINDOWS_DEVICES = re.compile(r"(con|prn|aux|nul|com\d|lpt\d)(\..*)?", re.IGNORECASE)
_FORBIDDEN = set('/\\<>:"|?*')
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_FIX = "use the person's name as you would write it, e.g. 'Ada Lovelace' or 'ada_lovelace'"


class InvalidNameError(ValueError):
    """A person's name that facekit refuses; the message names the problem and the fix."""


def is_generated_name(name: str) -> bool:
    """True for names facekit makes up for anonymous groups (``person_01``, ``singletons``)."""
    return bool(_GENERATED.fullmatch(name)) or name.casefold() == "singletons"


def check_name(name: object) -> str:
    """``name`` in canonical form (NFC, stripped), or :class:`InvalidNameError` saying why not.

    Accepts ``str`` (and numpy string scalars); anything else is refused, so a stray number or
    ``None`` never becomes a person. See the module docstring for the rules.
    """
    if not isinstance(name, str):  # np.str_ is a str subclass
        raise InvalidNameError(f"a person's name must be text, got {type(name).__name__} {name!r}. Fix: {_FIX}")
    n = unicodedata.normalize("NFC", str(name)).strip()
    shown = repr(name)[:80]
    if not n:
        raise InvalidNameError(f"empty name {shown}. Fix: {_FIX}")
    bad = sorted({c for c in n if c in _FORBIDDEN})
    if bad:
        raise InvalidNameError(f"name {shown} contains {' '.join(bad)} (path separators and characters file "
                               f"systems refuse). Fix: {_FIX}, without {' '.join(bad)}")
    ctrl = [c for c in n if c in _BIDI or unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp")]
    if ctrl:
        raise InvalidNameError(f"name {shown} contains control or invisible characters "
                               f"({', '.join(f'U+{ord(c):04X}' for c in ctrl[:5])}). Fix: retype it, {_FIX}")
    if n in (".", "..") or n.startswith("."):
        raise InvalidNameError(f"name {shown} is or starts with '.' (a hidden or parent folder). Fix: {_FIX}")
    if len(n) > MAX_NAME_LENGTH or len(n.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidNameError(f"name {shown} is too long ({len(n)} characters; at most {MAX_NAME_LENGTH}). "
                               "Fix: shorten it")
    low = n.casefold()
    if low in RESERVED_NAMES or _GENERATED.fullmatch(n) or _WINDOWS_DEVICES.fullmatch(n):
        raise InvalidNameError(f"name {shown} is reserved by facekit ('unknown' for strangers, 'singletons' "
                               "and 'person_01'-style names for the album's anonymous groups, device names). "
                               f"Fix: choose another name, e.g. {n + ' (me)'!r}")
    return n


def check_names(names) -> list[str]:
    """:func:`check_name` on each of ``names``; the error names the first bad one's position."""
    out = []
    for i, v in enumerate(names):
        try:
            out.append(check_name(v))
        except InvalidNameError as exc:
            raise InvalidNameError(f"name #{i}: {exc}") from None
    return out
