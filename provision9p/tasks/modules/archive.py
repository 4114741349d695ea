"""unarchive: a tar (gz, xz, bz2) or zip archive unpacked in the guest.

The archive is read in Python (from the role's files/, or from the guest with
remote_src) to list it and compare every member with what dest holds; only when
something differs is it unpacked, by the guest's own tar or unzip (so extra_opts mean
what they mean to Ansible).
"""

from __future__ import annotations

import io
import posixpath
import re
import secrets
import tarfile
import zipfile
from dataclasses import dataclass
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import (
    OWNERSHIP,
    UNSUPPORTED_FILE_ATTRS,
    Module,
    ModuleContext,
    apply_attrs,
)
from provision9p.tasks.modules.files import role_file
from provision9p.tasks.modules.net import fetch
from provision9p.tasks.modules.spec import P, Spec


@dataclass(frozen=True)
class Member:
    name: str
    kind: str  # file, dir, link
    size: int
    mtime: int | None  # None: not compared (zip's local times)


def _members(data: bytes) -> tuple[str, list[Member]]:
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return "ZipArchive", [
                Member(i.filename.rstrip("/"), "dir" if i.is_dir() else "file", i.file_size,
                       None) for i in zf.infolist()]
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            return "TarArchive", [
                Member(m.name.removeprefix("./").rstrip("/"),
                       "dir" if m.isdir() else "link" if m.issym() else "file", m.size,
                       int(m.mtime)) for m in tf.getmembers() if m.name not in (".", "./")]
    except tarfile.TarError:
        raise TaskError("unarchive: the file is neither a tar archive (gz, xz, bz2) nor a "
                        "zip archive") from None


def _strip(name: str, opts: list[str]) -> str | None:
    """A member's path after tar's --strip-components, as extra_opts may ask."""
    for opt in opts:
        m = re.fullmatch(r"--strip-components=(\d+)", opt)
        if m:
            parts = name.split("/")[int(m[1]):]
            return "/".join(parts) if parts and parts != [""] else None
    return name


def _differs(conn: Connection, dest: str, members: list[Member], opts: list[str]
             ) -> list[str]:
    out = []
    for m in members:
        rel = _strip(m.name, opts)
        if rel is None:
            continue
        st = conn.stat(posixpath.join(dest, rel))
        if st is None:
            out.append(rel)
        elif m.kind == "dir":
            if not st.is_dir:
                out.append(rel)
        elif m.kind == "link":
            if not st.is_link:
                out.append(rel)
        elif not st.is_reg or st.size != m.size or (
                m.mtime is not None and int(st.mtime) != m.mtime):
            out.append(rel)
    return out


def _unarchive(conn: Connection, args: dict[str, Any], ctx: ModuleContext
               ) -> dict[str, Any]:
    src, dest = str(args["src"]), str(args["dest"])
    result: dict[str, Any] = {"changed": False, "src": src, "dest": dest}
    if args.get("creates") and conn.stat(str(args["creates"])) is not None:
        result["msg"] = f"skipped, since {args['creates']} exists"
        return result
    dst = conn.stat(dest)
    if dst is None or not dst.is_dir:
        raise TaskError(f"unarchive: dest {dest} must be an existing directory")
    if "://" in src:
        # As Ansible: a URL is downloaded where the archive is used (in the guest once
        # booted), whatever remote_src says.
        data = fetch(conn, src, {"validate_certs": args.get("validate_certs", True)})
    elif args.get("remote_src") or args.get("copy") is False:
        if conn.stat(src) is None:
            raise TaskError(f"unarchive: no file {src} in the guest")
        data = conn.read_file(src)
    else:
        data = role_file(ctx, src, "files").read_bytes()
    handler, members = _members(data)
    opts = [str(o) for o in args.get("extra_opts") or []]
    result["handler"] = handler
    if args.get("list_files"):
        result["files"] = [m.name + ("/" if m.kind == "dir" else "") for m in members]
    todo = _differs(conn, dest, members, opts)
    if todo:
        result["changed"] = True
        if ctx.check:
            return result
        result["extract_results"] = _extract(conn, data, handler, dest, args, opts)
    attrs = {k: args.get(k) for k in ("mode", "owner", "group")}
    if any(v is not None for v in attrs.values()):
        for m in members:
            rel = _strip(m.name, opts)
            if rel is not None and not (ctx.check and rel in todo):
                path = posixpath.join(dest, rel)
                if m.kind == "link":
                    continue
                apply_attrs(conn, path, attrs, ctx, result)
    return result


def _extract(conn: Connection, data: bytes, handler: str, dest: str, args: dict[str, Any],
             opts: list[str]) -> dict[str, Any]:
    tmp = f"/tmp/.provision9p-archive-{secrets.token_hex(6)}"
    if conn.stat("/tmp") is None:
        raise TaskError("unarchive: the guest has no /tmp to put the archive in")
    conn.write_file(tmp, data, mode=0o600)
    excludes = [str(x) for x in args.get("exclude") or []]
    try:
        if handler == "ZipArchive":
            argv = ["unzip", "-o", *opts, tmp, *(["-x", *excludes] if excludes else []),
                    "-d", dest]
        else:
            argv = ["tar", "--extract", "-C", dest, *opts,
                    *[f"--exclude={x}" for x in excludes], "-f", tmp]
        res = conn.run(argv)
    finally:
        conn.remove(tmp)
    if res.returncode == 127 or ("not found" in res.stderr and res.returncode != 0 and (
            argv[0] in res.stderr)):
        raise TaskError(f"unarchive: {argv[0]} is not installed in the guest",
                        hint=f"install it first (apt: name={argv[0]})")
    if not res.ok:
        raise TaskError(f"unarchive: {argv[0]} failed (exit {res.returncode}): "
                        f"{(res.stderr or res.stdout).strip()[-1200:]}")
    return {"cmd": argv, "rc": res.returncode, "out": res.stdout, "err": res.stderr}


MODULES: dict[str, Module] = {
    "unarchive": Module(_unarchive, Spec(
        help="Unpack a tar or zip archive into an existing directory of the guest.",
        params={
            "src": P("path", required=True, help="relative to the role's files/, a "
                                                 "guest path with remote_src, or a URL"),
            "dest": P("path", required=True),
            "remote_src": P("bool", default=False),
            "copy": P("bool", default=True,
                      help="Ansible's older spelling: `copy: false` is remote_src: true"),
            "creates": P("path", help="skip when this path exists"),
            "extra_opts": P("list", elements="str", default=[],
                            help="options for tar/unzip (--strip-components=N is "
                                 "understood when comparing)"),
            "list_files": P("bool", default=False),
            "exclude": P("list", elements="str", default=[]),
            "keep_newer": P("bool", default=False, choices=(False,)),
            "decrypt": P("bool", default=True, choices=(True,)),
            "validate_certs": P("bool", default=True),
            **OWNERSHIP,
        },
        mutually_exclusive=(("copy", "remote_src"),),
        unsupported={"include": "not done",
                     "io_buffer_size": "not done", **UNSUPPORTED_FILE_ATTRS},
        returns="src, dest, handler, files (list_files), extract_results",
        differences="members compare by type, size and (tar) mtime, not content; a URL "
                    "src is downloaded on every run to be compared (use creates).")),
}
