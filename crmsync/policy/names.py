"""What a tag name may hold: the one rule for the names of ``[policy.tags]`` and of benefit tags.

Tags are written into CRM multi-select fields and joined into one CSV cell, so a tag name must not hold what
separates, quotes or ends a value there. A tag name is 1 to :data:`TAG_NAME_MAX` characters, written composed
(Unicode NFC), each of them

- a letter of any script, in any case (Unicode categories ``L*``: ``vip``, ``VIP客户``, ``生日月``, ``Müller``),
- a combining mark (``Mn``, ``Mc``: the vowel signs of Indic scripts) or a digit (``Nd``, ``Nl``: ``618大促``),
- ``_``, ``-`` or a space (U+0020), but neither ``-`` nor a space first, nor a space last.

Everything else is refused, with the character and its position: separators (``,`` ``;`` ``|`` ``、``, the
full-width comma U+FF0C), quotes, line breaks, tabs and other control characters, other punctuation and symbols
(``.`` ``/`` ``&`` ``+`` ``=`` ``@``, emoji), full-width and other spaces.
"""

from __future__ import annotations

import unicodedata

TAG_NAME_MAX = 100
_CATEGORIES = ("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Nd", "Nl")
_ALLOWED_TEXT = "letters and digits of any script, '_', '-' and inner spaces"


def tag_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a tag name, or ``None`` when it can."""
    shown = repr(name)
    if not name:
        return "'' is empty (tag names are 1 to 100 characters)"
    if len(name) > TAG_NAME_MAX:
        return f"{shown[:40]}... is {len(name)} characters long (at most {TAG_NAME_MAX})"
    if unicodedata.normalize("NFC", name) != name:
        return f"{shown} is not in composed form (Unicode NFC); write it as {unicodedata.normalize('NFC', name)!a}"
    for i, ch in enumerate(name, start=1):
        if ch in "_-" or ch == " " or unicodedata.category(ch) in _CATEGORIES:
            continue
        return f"{shown} has {ch!r} (U+{ord(ch):04X}) at position {i}: tag names are {_ALLOWED_TEXT}"
    if name[0] in "- ":
        return f"{shown} starts with {name[0]!r}: tag names are {_ALLOWED_TEXT}"
    if name[-1] == " ":
        return f"{shown} ends with ' ': tag names are {_ALLOWED_TEXT}"
    return None
