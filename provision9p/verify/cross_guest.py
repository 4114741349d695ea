"""Prove that a directory several guests share is one directory: a file one guest
writes is read by every other (the promise a cache=loose mount would break)."""

from __future__ import annotations

import secrets
from pathlib import Path

from provision9p.connect.ssh import connect
from provision9p.lab.model import Share
from provision9p.target import Target
from provision9p.verify.report import CheckResult


def shared_pairs(targets: list[Target]) -> list[tuple[Target, Share, Target, Share]]:
    """(writer, its share, reader, its share) for every writable share whose host
    directory another guest also has (the same one, or one inside the other)."""
    pairs = []
    for w in targets:
        for ws in w.guest.shares:
            if ws.readonly:
                continue
            for r in targets:
                if r is w:
                    continue
                for rs in r.guest.shares:
                    if _inside(ws.path, rs.path):
                        pairs.append((w, ws, r, rs))
    return pairs


def _inside(written: Path, read: Path) -> bool:
    """Whether a file at the top of `written` is visible through `read`."""
    return written == read or read in written.parents


def results(targets: list[Target]) -> list[CheckResult]:
    """One verify line per pair: the writer's share, `read by READER`."""
    out = []
    for w, ws, r, rs in shared_pairs(targets):
        error = _write_then_read(w, ws, r, rs)
        out.append(CheckResult(w.name, ws.mount_tag, f"read by {r.name}",
                               outcome="failed" if error else "ok", message=error or ""))
    return out


def check(targets: list[Target]) -> tuple[int, list[str]]:
    """(checks passed, failures); each pair writes a fresh file and reads it back."""
    found = results(targets)
    return (sum(r.outcome == "ok" for r in found),
            [r.message for r in found if r.outcome != "ok"])


def _write_then_read(w: Target, ws: Share, r: Target, rs: Share) -> str | None:
    """None when the reader sees what the writer wrote, else what went wrong."""
    name = f".provision9p-cross-{secrets.token_hex(6)}"
    token = secrets.token_hex(16)
    wpath = f"{ws.mount.rstrip('/')}/{name}"
    rel = (ws.path / name).relative_to(rs.path)
    rpath = f"{rs.mount.rstrip('/')}/{rel}"
    what = f"{w.name} writes {wpath}, {r.name} reads {rpath}"
    wconn = connect(w)
    try:
        res = wconn.run(["sh", "-c", 'printf %s "$1" > "$2"', "sh", token, wpath])
        if not res.ok:
            return f"{what}: the write failed: {res.stderr.strip()}"
        rconn = connect(r)
        try:
            seen = rconn.run(["cat", rpath])
        finally:
            rconn.close()
        if seen.ok and seen.stdout == token:
            return None
        return (f"{what}: read {seen.stdout[:40]!r} "
                f"({seen.stderr.strip() or 'no error'}), wrote {token!r}")
    finally:
        wconn.run(["rm", "-f", wpath])
        wconn.close()
