"""LAB.lock: what each guest's tree really holds, so a build can be checked against it.

Per guest: the packages dpkg lists as installed in the built tree (debootstrap's and the
tree-phase roles' alike) with name, version, architecture and the .deb's sha256 from the
verified Packages index; the kernel package; and the date of the mirror's signed Release,
which is the images' SOURCE_DATE_EPOCH. What the lab asked for (suite, packages, kernel)
is kept too, so a lock that no longer fits the lab says what changed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import yaml
from debian import deb822

from provision9p import paths, ui
from provision9p.host.mirror import (
    Package,
    fetch_entry,
    package_index,
    signed_release,
)
from provision9p.host.release import file_sha256
from provision9p.image import debstore
from provision9p.image.errors import LockError
from provision9p.lab.model import ARCHES, GuestSpec, LabSpec
from provision9p.rootfs.debootstrap import BASE_PACKAGES
from provision9p.rootfs.metadata.base import MetadataStore
from provision9p.target import Target

LOCK_FORMAT = 1
HEADER = ("# provision9p lock: the exact packages of each guest's tree. Keep it in the\n"
          "# repository; `provision9p lock --update` rewrites it after a rebuild.\n")
UPDATE_HINT = ("rebuild and refresh it: `provision9p rootfs build --force` then "
               "`provision9p lock --update`")


def lock_path(lab: LabSpec) -> Path:
    """LAB.lock beside the lab file (web.yml -> web.lock); the built-in lab's in its state."""
    source = Path(lab.source)
    if source.is_file():
        return source.with_suffix(".lock")
    return lab.state_dir / f"{lab.name}.lock"


def wanted(guest: GuestSpec) -> dict[str, Any]:
    """What the lab asks of a guest's tree: a lock made for other wishes is stale."""
    rootfs = guest.rootfs
    kernel = (str(guest.kernel.image) if guest.kernel.image else
              guest.kernel.package or ARCHES[guest.arch][2])
    if guest.kernel.suite:  # only then: the locks of guests without one stay current
        kernel += f" from {guest.kernel.suite}"
    return {
        "suite": rootfs.suite, "arch": guest.debian_arch, "variant": rootfs.variant,
        "components": sorted(rootfs.components),
        "packages": sorted({*BASE_PACKAGES, *rootfs.packages}),
        "kernel": kernel,
    }


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    architecture: str


def installed(store: MetadataStore) -> list[Installed]:
    """The packages dpkg has installed in the tree, read from its status file."""
    text = store.read_bytes("var/lib/dpkg/status").decode("utf-8", "replace")
    out = []
    for para in deb822.Packages.iter_paragraphs(text.splitlines(), use_apt_pkg=False):
        if para.get("Status", "").split()[-1:] == ["installed"]:
            out.append(Installed(para["Package"], para.get("Version", ""),
                                 para.get("Architecture", "")))
    return sorted(out, key=lambda p: (p.name, p.architecture))


def epoch_of(date: str) -> int:
    """A Release's Date field as seconds since the epoch."""
    return int(parsedate_to_datetime(date).timestamp())


def guest_entry(target: Target, store: MetadataStore) -> dict[str, Any]:
    """The lock's entry for one built guest."""
    guest, mirror = target.guest, target.mirror
    rootfs = guest.rootfs
    release = signed_release(suite=rootfs.suite, mirror=mirror)
    indexes = [package_index(arch=guest.debian_arch, suite=rootfs.suite, mirror=mirror,
                             component=c) for c in rootfs.components]
    packages, fetch = [], []
    for p in installed(store):
        stanza = next((s for index in indexes for s in index.get(p.name, [])
                       if s.version == p.version), None)
        sha = stanza.sha256 if stanza is not None else _cached_deb_sha256(p)
        _keep_in_store(p, sha)
        if stanza is not None and debstore.fetch(sha) is None:
            fetch.append(stanza)
        packages.append({"name": p.name, "version": p.version, "architecture": p.architecture,
                         "sha256": sha})
    _fetch_into_store(fetch, suite=rootfs.suite, mirror=mirror)
    return {"wants": wanted(guest), "release": {"date": release.date,
                                                  "epoch": epoch_of(release.date)},
            "kernel": _kernel_entry(target), "packages": packages}


def _cached_deb_sha256(p: Installed) -> str:
    """A .deb the mirror no longer lists may still be in a builder's download cache."""
    name = debstore.cached_name(p.name, p.version, p.architecture)  # apt's quoting: %3a
    for cache in ("mmdebstrap-debs", "debootstrap-debs"):
        deb = paths.cache_home() / cache / name
        if deb.is_file():
            return file_sha256(deb)
    return ""


def _keep_in_store(p: Installed, sha256: str) -> None:
    """The locked .deb into the store, so a build can install it after the mirror moved on;
    found in the builders' download caches, taken only when its hash is the locked one."""
    if not sha256 or debstore.fetch(sha256) is not None:
        return
    name = debstore.cached_name(p.name, p.version, p.architecture)
    for cache in ("mmdebstrap-debs", "debootstrap-debs"):
        deb = paths.cache_home() / cache / name
        if deb.is_file() and file_sha256(deb) == sha256:
            debstore.add(deb)
            return


def _quiet(what: str, total: int) -> contextlib.AbstractContextManager[Callable[[int], None]]:
    """No bar per .deb: one step line says what the batch is."""
    return contextlib.nullcontext(lambda n: None)


def _fetch_into_store(stanzas: list[Package], *, suite: str, mirror: str) -> None:
    """The locked .debs that no download cache holds (a base built before the essential
    set's .debs were kept, or cleaned since), fetched now while the mirror still has them:
    a lock promises its versions after the mirror moves on."""
    if not stanzas:
        return
    with ui.step(f"keeping {len(stanzas)} locked .debs in the .deb store"), \
            concurrent.futures.ThreadPoolExecutor(4) as pool:
        for deb in pool.map(lambda s: fetch_entry(s, suite=suite, mirror=mirror,
                                                  progress=_quiet), stanzas):
            debstore.add(deb)


def _kernel_entry(target: Target) -> dict[str, str]:
    record = target.build_record()
    source = record.kernel if record else ""
    entry = {"release": record.release if record else "", "source": os.path.basename(source)}
    m = re.fullmatch(r"([^_]+)_([^_]+)_([^_]+)\.deb", entry["source"])
    if m:
        entry.update(package=m.group(1), version=urllib.parse.unquote(m.group(2)),
                     architecture=m.group(3))
        deb = paths.cache_home() / "debs" / entry["source"]
        # kept in the store too, so a build can still boot it when the mirror moved on
        entry["sha256"] = debstore.add(deb) if deb.is_file() else ""
    return entry


def write(path: Path, lab: LabSpec, guests: dict[str, dict[str, Any]]) -> None:
    data = {"format": LOCK_FORMAT, "lab": lab.name, "guests": guests}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(HEADER + yaml.safe_dump(data, sort_keys=False, width=100))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LockError(f"cannot read {path}: {exc}", hint="remove it and run "
                        "`provision9p lock` to write it again") from exc
    if not isinstance(data, dict) or data.get("format") != LOCK_FORMAT or not isinstance(
            data.get("guests"), dict):
        raise LockError(f"{path} is not a provision9p lock (format {LOCK_FORMAT})",
                        hint="remove it and run `provision9p lock` to write it again")
    return data


def mismatches(lab: LabSpec, lock: dict[str, Any]) -> list[str]:
    """How the lab differs from what the lock was made for; empty when it fits."""
    problems = []
    locked: dict[str, Any] = lock["guests"]
    for guest in lab.guests:
        entry = locked.get(guest.name)
        if not isinstance(entry, dict):
            problems.append(f"guest {guest.name} is in the lab but not in the lock")
            continue
        now, then = wanted(guest), entry.get("wants", {})
        for key, value in now.items():
            old = then.get(key)
            if key == "packages" and isinstance(old, list):
                added, gone = sorted(set(value) - set(old)), sorted(set(old) - set(value))
                if added:
                    problems.append(f"guest {guest.name}: packages added since the lock: "
                                    f"{', '.join(added)}")
                if gone:
                    problems.append(f"guest {guest.name}: packages removed since the lock: "
                                    f"{', '.join(gone)}")
            elif old != value:
                problems.append(f"guest {guest.name}: {key} is {value!r} in the lab, "
                                f"{old!r} in the lock")
    names = {g.name for g in lab.guests}
    problems += [f"guest {n} is in the lock but no longer in the lab"
                 for n in locked if n not in names]
    return problems


def check(lab: LabSpec, path: Path) -> dict[str, Any]:
    """The lock at `path`, refused (exit 2) when it does not fit the lab."""
    lock = read(path)
    problems = mismatches(lab, lock)
    if problems:
        raise LockError(f"{path} does not match the lab:\n" +
                        "\n".join(f"  {p}" for p in problems), hint=UPDATE_HINT)
    return lock


def tree_drift(entry: dict[str, Any], store: MetadataStore) -> list[str]:
    """Where a built tree's packages differ from its lock entry (version, added, gone)."""
    have = {(p.name, p.architecture): p.version for p in installed(store)}
    want = {(p["name"], p["architecture"]): p["version"] for p in entry.get("packages", [])}
    out = [f"{n}:{a} {have[(n, a)]} (locked {v})" for (n, a), v in sorted(want.items())
           if (n, a) in have and have[(n, a)] != v]
    out += [f"{n}:{a} not installed (locked {v})" for (n, a), v in sorted(want.items())
            if (n, a) not in have]
    out += [f"{n}:{a} {v} not in the lock" for (n, a), v in sorted(have.items())
            if (n, a) not in want]
    return out
