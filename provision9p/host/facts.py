"""What provision9p learned about this host and must not re-learn every run.

Some facts cost a real try to find out (does KVM actually run a guest? DESIGN.md: an
openable /dev/kvm proves nothing), so the stage that tried stores its finding here and
`provision9p doctor` reports it. One small JSON file in the cache, written atomically.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from provision9p import paths


def facts_path() -> Path:
    return paths.cache_home() / "host-facts.json"


def load_facts() -> dict[str, Any]:
    """Every remembered fact; an unreadable or corrupt file counts as none (they are
    only a cache of findings that can be made again)."""
    try:
        data = json.loads(facts_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(key: str, value: Any) -> None:
    """Store one fact (JSON-serialisable), keeping the others; two processes that
    remember at once do not lose each other's facts (a lock file serialises them)."""
    path = facts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(".host-facts.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        facts = load_facts()
        facts[key] = value
        _write(path, facts)


def _write(path: Path, facts: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".host-facts.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(facts, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
