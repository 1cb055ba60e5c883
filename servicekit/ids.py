"""The one shape of identifier a caller may hand us (request, session and user ids)."""

from __future__ import annotations

import re

# Safe to log, to echo in a header and to put in a storage key.
SAFE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
_SAFE_ID = re.compile(SAFE_ID_PATTERN)


def is_safe_id(value: str) -> bool:
    # fullmatch: `$` alone would let a trailing newline through.
    return _SAFE_ID.fullmatch(value) is not None
