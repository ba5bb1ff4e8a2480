"""``.env`` at the project root: read before the steps are imported, as Motia's CLI did.

Variables already set in the environment win (a ``.env`` never overrides what the shell or
systemd set). The format is the common one: ``KEY=value``, optional ``export``, ``#`` comments,
single quotes (literal) or double quotes (``\\n``, ``\\t``, ``\\"`` and ``\\\\`` escapes).
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["load_dotenv", "parse_dotenv"]

_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)\Z")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), raw[1:-1])
    # Unquoted: a " #" starts a comment.
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def parse_dotenv(text: str) -> dict[str, str]:
    """The ``KEY -> value`` pairs of a ``.env`` file's text (later lines win)."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue  # not an assignment: ignored, as python-dotenv does
        key, value = match.group(1), match.group(2)
        quote = value.strip()[:1]
        if quote in ("'", '"') and not (len(value.strip()) >= 2 and value.strip().endswith(quote)):
            # a quoted value spanning lines
            parts = [value]
            while i < len(lines):
                parts.append(lines[i])
                i += 1
                if lines[i - 1].rstrip().endswith(quote):
                    break
            value = "\n".join(parts)
        out[key] = _unquote(value)
    return out


def load_dotenv(project_dir: Path, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Set the variables of ``project_dir/.env`` that are not set yet; return their names."""
    environ = os.environ if environ is None else environ
    path = Path(project_dir) / ".env"
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return []
    added = []
    for key, value in parse_dotenv(text).items():
        if key not in environ:
            environ[key] = value
            added.append(key)
    return added
