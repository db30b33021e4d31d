"""Text from outside (hospitals' file and entry names, values, arguments) made safe to show.

One helper for every place that echoes such text — report printers (``hqms errors``,
``uploads``, ``submit``), usage errors, the front-end machine's run log, zip refusals — so a
name cannot act on a terminal or forge a log line anywhere.
"""
from __future__ import annotations

import re

#: Characters never written raw for people to read: C0 controls and DEL, C1 controls (an ESC
#: or CSI sequence in a failing value would clear the screen, recolour it or forge report
#: lines), and the invisible format characters that hide or reorder text (soft hyphen, bidi
#: marks, embeddings, overrides and isolates, zero-width spaces and joiners, line and paragraph
#: separators, BOM) — shown, they also tell a data manager why a value that looks right fails.
UNSEEN = re.compile(r"[\x00-\x1f\x7f-\x9f\xad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: every :data:`UNSEEN` character written as its
    Python escape (``\\t``, ``\\n``, ``\\x1b``, ``\\u202e``), so a hospital's value cannot act
    on the screen and hidden characters become visible. A backslash stays as it is: a literal
    ``\\x1b`` in a value does nothing, and Windows folder names (``数据\\flu_1.csv``) stay
    readable."""
    return UNSEEN.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
