"""File modules: copy, template, file, stat."""

from __future__ import annotations

import hashlib
import json
import posixpath
import stat as stat_mod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import (
    OWNERSHIP,
    UNSUPPORTED_FILE_ATTRS,
    Module,
    ModuleContext,
    apply_attrs,
    make_dirs,
    parse_mode,
    read_db,
    resolve_owner,
    write_content,
)
from provision9p.tasks.modules.spec import P, Spec


def role_file(ctx: ModuleContext, name: str, subdir: str) -> Path:
    """A controller-side file the way Ansible finds it: absolute as given, else the
    role's `subdir`/ then the role directory itself."""
    path = Path(name)
    if path.is_absolute():
        return path
    for base in (ctx.role_path / subdir, ctx.role_path):
        if (base / name).exists() or (base / name.rstrip("/")).exists():
            return base / name
    raise TaskError(f"could not find {name!r} in {ctx.role_path / subdir} or "
                    f"{ctx.role_path}")


def _tree_local(root: Path) -> Iterator[tuple[str, bool, Path]]:
    """(relative path, is_dir, host path) under a host directory, parents first."""
    for sub in sorted(root.rglob("*")):
        yield sub.relative_to(root).as_posix(), sub.is_dir(), sub


def _tree_remote(conn: Connection, root: str, rel: str = "") -> Iterator[tuple[str, bool]]:
    for name in sorted(conn.listdir(posixpath.join(root, rel) if rel else root)):
        sub = posixpath.join(rel, name) if rel else name
        st = conn.stat(posixpath.join(root, sub))
        if st is None:
            continue
        yield sub, st.is_dir
        if st.is_dir:
            yield from _tree_remote(conn, root, sub)


def _ensure_dir(conn: Connection, path: str, args: dict[str, Any], ctx: ModuleContext,
                result: dict[str, Any]) -> None:
    st = conn.stat(path)
    dmode = parse_mode(args.get("directory_mode"), st.mode if st else None, True)
    if st is None:
        result["changed"] = True
        if not ctx.check:
            uid, gid = resolve_owner(conn, args.get("owner"), args.get("group"))
            make_dirs(conn, path, dmode or 0o755)
            if uid is not None or gid is not None:
                conn.chown(path, uid if uid is not None else 0, gid if gid is not None else 0)
    elif not st.is_dir:
        raise TaskError(f"copy: {path} exists and is not a directory")
    else:
        apply_attrs(conn, path, {"owner": args.get("owner"), "group": args.get("group"),
                                 "mode": args.get("directory_mode")}, ctx, result)


def _dest(conn: Connection, args: dict[str, Any]) -> str:
    """dest, or with follow the file a link at dest points to."""
    dest = str(args["dest"])
    return _follow(conn, dest) if args.get("follow") else dest


def _copy(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    dest = _dest(conn, args)
    if "content" in args and args["content"] is not None:
        content = args["content"]
        if isinstance(content, (dict, list)):
            content = json.dumps(content)
        if dest.endswith("/"):
            raise TaskError("copy: dest must be a file when content is given")
        return write_content(conn, dest, str(content).encode(), args, ctx)
    src = str(args["src"])
    if args.get("remote_src"):
        st = conn.stat(src.rstrip("/") or "/")
        if st is None:
            raise TaskError(f"copy: remote src {src} does not exist in the guest")
        if st.is_dir:
            return _copy_dir(conn, args, ctx, src, remote=True)
        return _copy_file(conn, args, ctx, src, conn.read_file(src))
    local = role_file(ctx, src, "files")
    if local.is_dir():
        return _copy_dir(conn, args, ctx, src, remote=False, local=local)
    return _copy_file(conn, args, ctx, src, local.read_bytes())


def _copy_file(conn: Connection, args: dict[str, Any], ctx: ModuleContext, src: str,
               data: bytes) -> dict[str, Any]:
    dest = _dest(conn, args)
    st = conn.stat(dest.rstrip("/") or "/")
    if dest.endswith("/") or (st is not None and st.is_dir):
        dest = posixpath.join(dest, posixpath.basename(src))
        if conn.stat(posixpath.dirname(dest)) is None:
            result: dict[str, Any] = {"changed": True, "dest": dest}
            if ctx.check:
                return result
            make_dirs(conn, posixpath.dirname(dest),
                      parse_mode(args.get("directory_mode"), None, True) or 0o755)
    elif conn.stat(posixpath.dirname(dest) or "/") is None:
        raise TaskError(f"copy: destination directory {posixpath.dirname(dest)} does not "
                        "exist", hint="create it first, or end dest with / to have it made")
    res = write_content(conn, dest, data, args, ctx)
    res["src"] = src
    return res


def _copy_dir(conn: Connection, args: dict[str, Any], ctx: ModuleContext, src: str, *,
              remote: bool, local: Path | None = None) -> dict[str, Any]:
    """A directory: its contents when src ends with '/', else the directory itself
    under dest (rsync's trailing-slash rule, as Ansible's copy follows it)."""
    dest = str(args["dest"]).rstrip("/") or "/"
    if not src.endswith("/"):
        dest = posixpath.join(dest, posixpath.basename(src.rstrip("/")))
    result: dict[str, Any] = {"changed": False, "dest": dest, "src": src}
    file_args = {k: args.get(k) for k in ("mode", "owner", "group", "force", "backup")}
    _ensure_dir(conn, dest, args, ctx, result)
    entries: list[tuple[str, bool, Any]]
    if remote:
        root = src.rstrip("/") or "/"
        entries = [(rel, is_dir, posixpath.join(root, rel))
                   for rel, is_dir in _tree_remote(conn, root)]
    else:
        assert local is not None
        entries = list(_tree_local(local))
    for rel, is_dir, origin in entries:
        target = posixpath.join(dest, rel)
        if ctx.check and conn.stat(posixpath.dirname(target)) is None:
            result["changed"] = True
            continue
        if is_dir:
            _ensure_dir(conn, target, args, ctx, result)
            continue
        data = conn.read_file(origin) if remote else Path(origin).read_bytes()
        res = write_content(conn, target, data, file_args, ctx)
        result["changed"] |= res["changed"]
    return result


def _template(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    src = role_file(ctx, str(args["src"]), "templates")
    if not src.is_file():
        raise TaskError(f"template: no file {src}")
    text = ctx.render(src.read_text())
    if args.get("newline_sequence", "\n") != "\n":
        text = text.replace("\n", str(args["newline_sequence"]))
    dest = _dest(conn, args)
    st = conn.stat(dest)
    if dest.endswith("/") or (st is not None and st.is_dir):
        dest = posixpath.join(dest, src.name)
    res = write_content(conn, dest, text.encode(), args, ctx)
    res["src"] = str(args["src"])
    return res


def _follow(conn: Connection, path: str) -> str:
    """The path a symlink chain ends at (as far as it exists)."""
    for _ in range(40):
        st = conn.stat(path)
        if st is None or not st.is_link:
            return path
        target = conn.readlink(path)
        path = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    raise TaskError(f"too many levels of symbolic links at {path}")


def _recurse(conn: Connection, top: str, args: dict[str, Any], ctx: ModuleContext,
             result: dict[str, Any]) -> None:
    for name in conn.listdir(top):
        sub = posixpath.join(top, name)
        st = conn.stat(sub)
        if st is None:
            continue
        if st.is_link and not args.get("follow"):
            attrs = {"owner": args.get("owner"), "group": args.get("group")}
            apply_attrs(conn, sub, attrs, ctx, result)
            continue
        apply_attrs(conn, sub, args, ctx, result)
        if st.is_dir:
            _recurse(conn, sub, args, ctx, result)


def _file(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    path = str(args["path"]).rstrip("/") or "/"
    st = conn.stat(path)
    state = args.get("state") or (
        "directory" if args.get("recurse") else
        "file" if st is None else
        "directory" if st.is_dir else "link" if st.is_link else "file")
    result: dict[str, Any] = {"changed": False, "path": path, "state": state}
    if args.get("recurse") and state != "directory":
        raise TaskError("file: recurse needs state=directory")
    if state == "absent":
        if st is not None:
            result["changed"] = True
            if not ctx.check:
                if st.is_dir and conn.listdir(path):
                    conn.run(["rm", "-rf", "--", path])
                else:
                    conn.remove(path)
        result["state"] = "absent"
        return result
    if state in ("link", "hard"):
        return _link(conn, path, st, state, args, ctx, result)
    target = _follow(conn, path) if st is not None and st.is_link and args.get(
        "follow", True) else path
    tst = conn.stat(target) if target != path else st
    if state == "directory":
        if tst is None:
            result["changed"] = True
            if ctx.check:
                return result
            uid, gid = resolve_owner(conn, args.get("owner"), args.get("group"))
            make_dirs(conn, target, parse_mode(args.get("mode"), None, True) or 0o755)
            if uid is not None or gid is not None:
                conn.chown(target, uid if uid is not None else 0,
                           gid if gid is not None else 0)
        elif not tst.is_dir:
            raise TaskError(f"{path} exists and is not a directory")
        apply_attrs(conn, target, args, ctx, result)
        if args.get("recurse") and not (ctx.check and tst is None):
            _recurse(conn, target, args, ctx, result)
        return result
    if state == "touch":
        # Ansible: touch updates the times, so it reports changed, unless both times
        # are to be preserved (the idiom for an idempotent "create if missing").
        preserve = (args.get("modification_time") == "preserve"
                    and args.get("access_time") == "preserve")
        result["changed"] = tst is None or not preserve
        if ctx.check:
            if tst is not None:
                apply_attrs(conn, target, args, ctx, result)
            return result
        if tst is None:
            uid, gid = resolve_owner(conn, args.get("owner"), args.get("group"))
            conn.write_file(target, b"", mode=parse_mode(args.get("mode")) or 0o644,
                            uid=uid or 0, gid=gid or 0)
        elif not preserve:
            _touch(conn, target, tst.is_reg)
        apply_attrs(conn, target, args, ctx, result)
        return result
    if tst is None:
        raise TaskError(f"file {path} is absent, cannot continue (state=file does not "
                        "create)", hint="use state: touch, or copy/template to create it")
    if tst.is_dir:
        raise TaskError(f"{path} is a directory, not a file (state=file)")
    apply_attrs(conn, target, args, ctx, result)
    return result


def _touch(conn: Connection, path: str, regular: bool) -> None:
    """New times on an existing object: `touch` in the guest; a tree whose commands
    cannot run gets a regular file rewritten in place instead."""
    try:
        res = conn.run(["touch", "-c", "--", path])
        if res.ok:
            return
        detail = res.stderr.strip()
    except TaskError as exc:
        detail = exc.message
    if not regular:
        raise TaskError(f"touch {path} failed: {detail}")
    st = conn.stat(path)
    assert st is not None
    conn.write_file(path, conn.read_file(path), mode=st.perm, uid=st.uid, gid=st.gid)


def _link(conn: Connection, path: str, st: Any, state: str, args: dict[str, Any],
          ctx: ModuleContext, result: dict[str, Any]) -> dict[str, Any]:
    if args.get("src") is None and state == "link" and st is not None and st.is_link:
        # Ansible: no src on an existing link means "this link", its attributes (on
        # the target, with follow) are what the task is about.
        target = _follow(conn, path) if args.get("follow", True) else path
        if target != path and conn.stat(target) is not None:
            apply_attrs(conn, target, args, ctx, result)
        else:
            apply_attrs(conn, path, {"owner": args.get("owner"), "group": args.get("group")},
                        ctx, result)
        return result
    if args.get("src") is None:
        raise TaskError(f"file: state={state} needs src")
    src = str(args["src"])
    force = bool(args.get("force"))
    resolved = src if src.startswith("/") else posixpath.join(posixpath.dirname(path), src)
    result["src"] = src
    if state == "link":
        if st is not None and st.is_link and conn.readlink(path) == src:
            apply_attrs(conn, path, {"owner": args.get("owner"), "group": args.get("group")},
                        ctx, result)
            return result
        if conn.stat(resolved) is None and not force:
            raise TaskError(f"file: src {src} does not exist",
                            hint="use force: true to make a link to a missing target")
    else:
        if conn.stat(resolved) is None:
            raise TaskError(f"file: src {src} does not exist (state=hard)")
        if st is not None and conn.run(["test", path, "-ef", resolved]).ok:
            apply_attrs(conn, path, args, ctx, result)
            return result
    if st is not None and not st.is_link and not force:
        kind = "directory" if st.is_dir else "file"
        raise TaskError(f"file: refusing to turn the {kind} {path} into a {state} link",
                        hint="use force: true to replace it")
    if st is not None and st.is_dir and conn.listdir(path):
        raise TaskError(f"file: {path} is a directory that is not empty")
    result["changed"] = True
    if ctx.check:
        return result
    if state == "link":
        if st is not None:
            conn.remove(path)
        conn.symlink(src, path)
        apply_attrs(conn, path, {"owner": args.get("owner"), "group": args.get("group")},
                    ctx, result)
    else:
        res = conn.run(["ln", "-f", "--", resolved, path])
        if not res.ok:
            raise TaskError(f"file: ln {resolved} {path} failed: {res.stderr.strip()}")
        apply_attrs(conn, path, args, ctx, result)
    return result


_ALGOS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")


def _stat(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    path = str(args["path"])
    st = conn.stat(path)
    if st is not None and st.is_link and args.get("follow"):
        path = _follow(conn, path)
        st = conn.stat(path)
    if st is None:
        return {"changed": False, "stat": {"exists": False}}
    perm = st.perm
    users = {f[2]: n for n, f in read_db(conn, "/etc/passwd").items()} if conn.stat(
        "/etc/passwd") else {}
    groups = {f[2]: n for n, f in read_db(conn, "/etc/group").items()} if conn.stat(
        "/etc/group") else {}
    info: dict[str, Any] = {
        "exists": True, "path": path, "mode": f"{perm:04o}",
        "uid": st.uid, "gid": st.gid, "size": st.size, "nlink": st.nlink,
        "mtime": st.mtime, "pw_name": users.get(str(st.uid), ""),
        "gr_name": groups.get(str(st.gid), ""),
        "isdir": st.is_dir, "isreg": st.is_reg, "islnk": st.is_link,
        "isblk": stat_mod.S_ISBLK(st.mode), "ischr": stat_mod.S_ISCHR(st.mode),
        "isfifo": stat_mod.S_ISFIFO(st.mode), "issock": stat_mod.S_ISSOCK(st.mode),
        "isuid": bool(perm & 0o4000), "isgid": bool(perm & 0o2000),
    }
    for i, who in enumerate(("usr", "grp", "oth")):
        shift = 6 - 3 * i
        info[f"r{who}"] = bool(perm >> shift & 4)
        info[f"w{who}"] = bool(perm >> shift & 2)
        info[f"x{who}"] = bool(perm >> shift & 1)
    if st.is_link:
        target = conn.readlink(path)
        info["lnk_source"] = posixpath.normpath(posixpath.join(posixpath.dirname(path),
                                                               target))
        info["lnk_target"] = target
    if st.is_reg and args.get("get_checksum", True):
        algo = str(args.get("checksum_algorithm") or "sha1")
        info["checksum"] = hashlib.new(algo, conn.read_file(path)).hexdigest()
    return {"changed": False, "stat": info}


_COPY_LIKE = {
    "dest": P("path", required=True, help="where the file goes in the guest"),
    "backup": P("bool", default=False, help="keep a timestamped copy of the file replaced"),
    "force": P("bool", default=True, aliases=("thirsty",),
               help="false: leave an existing dest alone"),
    "validate": P("str", help="command run on a temporary copy (%s) before it is put "
                              "in place"),
    **OWNERSHIP,
}

MODULES: dict[str, Module] = {
    "copy": Module(_copy, Spec(
        help="Copy a file or directory from the role's files/ (or the guest, remote_src) "
             "or write content.",
        params={
            "src": P("path", help="file or directory: relative to the role's files/; a "
                                  "trailing / copies a directory's contents"),
            "content": P("raw", help="the file's text (a mapping or list is written as "
                                     "JSON)"),
            "remote_src": P("bool", default=False, help="src is a path in the guest"),
            "directory_mode": P("raw", help="mode of directories the copy creates"),
            "follow": P("bool", default=False, help="write through a link at dest"),
            "local_follow": P("bool", default=True, help="host-side links are followed"),
            "decrypt": P("bool", default=True, choices=(True,),
                         help="no vault here: nothing to decrypt"),
            **_COPY_LIKE},
        mutually_exclusive=(("src", "content"),),
        required_one_of=(("src", "content"),),
        unsupported={"checksum": "give the content instead", **UNSUPPORTED_FILE_ATTRS},
        returns="dest, src, checksum (sha1), backup_file, diff")),
    "template": Module(_template, Spec(
        help="Render a Jinja2 template from the role's templates/ to a file.",
        params={
            "src": P("path", required=True, help="relative to the role's templates/"),
            "newline_sequence": P("str", default="\n", choices=("\n", "\r", "\r\n")),
            "trim_blocks": P("bool", default=True, choices=(True,)),
            "lstrip_blocks": P("bool", default=False, choices=(False,)),
            "follow": P("bool", default=False, help="write through a link at dest"),
            **_COPY_LIKE},
        unsupported={"block_start_string": "custom Jinja2 delimiters",
                     "block_end_string": "custom Jinja2 delimiters",
                     "variable_start_string": "custom Jinja2 delimiters",
                     "variable_end_string": "custom Jinja2 delimiters",
                     "output_encoding": "output is UTF-8", **UNSUPPORTED_FILE_ATTRS},
        returns="dest, src, checksum (sha1), backup_file, diff",
        differences="ansible_managed reads 'Managed by provision9p'.")),
    "file": Module(_file, Spec(
        help="Directories, links, touched files, and owner/mode of existing paths.",
        params={
            "path": P("path", required=True, aliases=("dest", "name")),
            "state": P("str", choices=("file", "directory", "link", "hard", "touch",
                                       "absent"),
                       help="default: the current state, else file"),
            "src": P("path", help="the target, for state=link or hard"),
            "recurse": P("bool", default=False, help="owner/mode on everything below a "
                                                     "directory"),
            "follow": P("bool", default=True, help="act on a symlink's target"),
            "force": P("bool", default=False, help="replace a file by a link; link to a "
                                                   "missing target"),
            "modification_time": P("str", choices=("preserve", "now"),
                                   help="state=touch: preserve (with access_time) makes "
                                        "touch idempotent"),
            "access_time": P("str", choices=("preserve", "now")),
            **OWNERSHIP},
        unsupported={"modification_time_format": "only preserve and now are supported",
                     "access_time_format": "only preserve and now are supported",
                     **UNSUPPORTED_FILE_ATTRS},
        returns="path, state, src (links)",
        differences="state=hard runs ln in the guest (not on a converted tree).")),
    "stat": Module(_stat, Spec(
        help="Facts about a path, in `stat`.",
        params={
            "path": P("path", required=True, aliases=("dest", "name")),
            "follow": P("bool", default=False),
            "get_checksum": P("bool", default=True),
            "checksum_algorithm": P("str", default="sha1", choices=_ALGOS,
                                    aliases=("checksum", "checksum_algo")),
            "get_mime": P("bool", default=False, choices=(False,),
                          aliases=("mime", "mime_type", "mime-type"),
                          help="mime types are not computed"),
            "get_attributes": P("bool", default=False, choices=(False,),
                                aliases=("attr", "attributes"),
                                help="chattr attributes are not read"),
        },
        returns="stat: exists, path, mode, uid, gid, pw_name, gr_name, size, mtime, "
                "isdir/isreg/islnk/..., r/w/x usr/grp/oth, lnk_target, checksum",
        differences="no mimetype, attributes, atime/ctime, inode or device.")),
}
