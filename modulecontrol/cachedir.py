"""The per-user cache directories (``~/.cache/modulecontrol/<kind>``), used only when safe.

Why one helper: the unit registry's definitions (:mod:`modulecontrol.units`) and parsed YAML
documents (:mod:`modulecontrol.yamlio`) are cached to keep short commands short, and both
caches are read back as trusted data (pint's is a pickle, which runs code when loaded). A
directory is therefore used only if it is the user's own and no one else may write to it;
anything else means "do not cache", never an error: a cache costs at most its time.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["user_cache_folder"]


def user_cache_folder(kind: str, env: str) -> Path | None:
    """The cache directory for ``kind``, or None not to cache.

    ``env`` names an environment variable that may give another directory, or ``off``
    (also ``0``, ``no``, ``false``). The default is ``$XDG_CACHE_HOME/modulecontrol/<kind>``
    (``~/.cache/...``), created with mode 0700.
    """
    setting = os.environ.get(env, "").strip()
    if setting.lower() in ("off", "0", "no", "false"):
        return None
    if setting:
        folder = Path(setting)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = Path(base) / "modulecontrol" / kind
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = folder.stat()
    except (OSError, RuntimeError):  # RuntimeError: Path.home() without a home
        return None
    getuid = getattr(os, "getuid", None)
    if getuid is not None and (st.st_uid != getuid() or st.st_mode & 0o022):
        return None
    return folder
