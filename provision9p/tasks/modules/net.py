"""get_url and wait_for: the guest's network, seen from the guest.

A booted guest downloads with its own tools (curl, wget or python3, whichever it has),
through its own network, as Ansible's module would run there. The tree has no network
of its own yet, so there the host downloads and writes the file into the tree.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import (
    OWNERSHIP,
    UNSUPPORTED_FILE_ATTRS,
    Module,
    ModuleContext,
    apply_attrs,
    write_content,
)
from provision9p.tasks.modules.spec import P, Spec

_ALGOS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")

# One guest-side downloader: the first of curl, wget, python3 that exists.
_FETCH = r"""
url=$1; out=$2; timeout=$3; insecure=$4; shift 4
n=$#
if command -v curl >/dev/null 2>&1; then
  while [ "$n" -gt 0 ]; do set -- "$@" -H "$1"; shift; n=$((n - 1)); done
  exec curl -fsSL --max-time "$timeout" ${insecure:+-k} "$@" -o "$out" "$url"
elif command -v wget >/dev/null 2>&1; then
  while [ "$n" -gt 0 ]; do set -- "$@" "--header=$1"; shift; n=$((n - 1)); done
  exec wget -q -T "$timeout" ${insecure:+--no-check-certificate} "$@" -O "$out" "$url"
elif command -v python3 >/dev/null 2>&1; then
  exec python3 -c '
import ssl, sys, urllib.request
url, out, timeout, insecure, *headers = sys.argv[1:]
req = urllib.request.Request(url, headers=dict(h.split(": ", 1) for h in headers))
ctx = ssl._create_unverified_context() if insecure else None
with urllib.request.urlopen(req, timeout=float(timeout), context=ctx) as r:
    data = r.read()
open(out, "wb").write(data)
' "$url" "$out" "$timeout" "$insecure" "$@"
else
  echo "no curl, wget or python3 in the guest" >&2; exit 127
fi
"""


def _host_fetch(url: str, args: dict[str, Any]) -> bytes:
    req = urllib.request.Request(url, headers={str(k): str(v) for k, v in
                                               (args.get("headers") or {}).items()})
    try:
        with urllib.request.urlopen(req, timeout=float(args.get("timeout") or 10)) as resp:
            data: bytes = resp.read()
            return data
    except (urllib.error.URLError, OSError) as exc:
        raise TaskError(f"fetching {url} failed: {exc}") from None


def fetch(conn: Connection, url: str, args: dict[str, Any]) -> bytes:
    """The bytes at url, fetched where Ansible would: in the guest once booted (args:
    timeout, headers, validate_certs)."""
    args = {"timeout": 10, "validate_certs": True, **args}
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file" and conn.phase != "ssh":
        # A file:// URL names a file of the machine that downloads, which is the guest:
        # in the tree phase that is the tree, not the host running provision9p.
        path = urllib.parse.unquote(parts.path)
        if conn.stat(path) is None:
            raise TaskError(f"fetching {url} failed: no file {path} in the guest")
        return conn.read_file(path)
    if conn.phase != "ssh":
        return _host_fetch(url, args)
    tmp = f"/tmp/.provision9p-get-{secrets.token_hex(6)}"
    headers = [f"{k}: {v}" for k, v in (args.get("headers") or {}).items()]
    res = conn.run(["sh", "-c", _FETCH, "fetch", url, tmp, str(args["timeout"]),
                    "" if args.get("validate_certs", True) else "1", *headers])
    try:
        if res.returncode == 127 and "no curl, wget or python3" in res.stderr:
            raise TaskError("the guest has no curl, wget or python3 to download "
                            "with", hint="install curl first (apt: name=curl)")
        if not res.ok:
            raise TaskError(f"fetching {url} in the guest failed (exit "
                            f"{res.returncode}): {res.stderr.strip()[-800:]}")
        return conn.read_file(tmp)
    finally:
        if conn.stat(tmp) is not None:
            conn.remove(tmp)


def _expected(conn: Connection, url: str, checksum: str, args: dict[str, Any]
              ) -> tuple[str, str] | None:
    """('sha256', hex) from 'sha256:hex' or 'sha256:URL-of-a-checksum-file'."""
    if not checksum:
        return None
    algo, _, value = checksum.partition(":")
    algo = algo.lower()
    if algo not in _ALGOS or not value:
        raise TaskError(f"get_url: checksum must be 'ALGORITHM:HEX' or 'ALGORITHM:URL' "
                        f"with one of {', '.join(_ALGOS)}, not {checksum!r}")
    if "://" in value:
        text = fetch(conn, value, args).decode(errors="replace")
        name = posixpath.basename(urllib.parse.urlsplit(url).path)
        lines = [ln.split() for ln in text.splitlines() if ln.strip()]
        found = [p[0] for p in lines if len(p) > 1 and p[1].lstrip("*").removeprefix(
            "./") == name]
        if not found and len(lines) == 1:
            found = [lines[0][0]]
        if not found:
            raise TaskError(f"get_url: no checksum for {name} in {value}")
        value = found[0]
    return algo, value.strip().lower()


def _get_url(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    url = str(args["url"])
    dest = str(args["dest"])
    st = conn.stat(dest.rstrip("/") or "/")
    if dest.endswith("/") or (st is not None and st.is_dir):
        name = posixpath.basename(urllib.parse.urlsplit(url).path) or "index.html"
        dest = posixpath.join(dest, name)
        st = conn.stat(dest)
    result: dict[str, Any] = {"changed": False, "dest": dest, "url": url}
    want = _expected(conn, url, str(args.get("checksum") or ""), args)
    if st is not None and not args.get("force"):
        current = conn.read_file(dest)
        if want is None or hashlib.new(want[0], current).hexdigest() == want[1]:
            result["msg"] = "file already exists"
            result["checksum_dest"] = hashlib.sha1(current).hexdigest()
            apply_attrs(conn, dest, args, ctx, result)
            return result
    if ctx.check:
        result["changed"] = True
        result["msg"] = "would download"
        return result
    start = time.monotonic()
    data = fetch(conn, url, args)
    if want is not None and hashlib.new(want[0], data).hexdigest() != want[1]:
        raise TaskError(f"get_url: the {want[0]} checksum of {url} is "
                        f"{hashlib.new(want[0], data).hexdigest()}, expected {want[1]}",
                        hint="the file was not put in place")
    res = write_content(conn, dest, data, {k: args.get(k) for k in
                                           ("mode", "owner", "group", "backup")}, ctx)
    res.pop("diff", None)  # binary content: no text diff
    result.update(res, checksum_src=hashlib.sha1(data).hexdigest(),
                  checksum_dest=hashlib.sha1(data).hexdigest(), size=len(data),
                  elapsed=int(time.monotonic() - start), status_code=200,
                  msg="OK" if res["changed"] else "file already up to date")
    return result


# --- wait_for ---------------------------------------------------------------------

_PROBE = r"""
host=$1; port=$2
if command -v bash >/dev/null 2>&1; then
  exec timeout "$3" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
elif command -v python3 >/dev/null 2>&1; then
  exec python3 -c 'import socket, sys
a = sys.argv
socket.create_connection((a[1], int(a[2])), float(a[3]))' "$host" "$port" "$3" 2>/dev/null
elif command -v nc >/dev/null 2>&1; then
  exec nc -z -w "$3" "$host" "$port"
fi
exit 127
"""


def _port_open(conn: Connection, host: str, port: int, timeout: int) -> bool:
    res = conn.run(["sh", "-c", _PROBE, "probe", host, str(port), str(timeout)])
    if res.returncode == 127:
        raise TaskError("wait_for: the guest has no bash, python3 or nc to test a port with")
    return res.ok


def _wait_for(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    state, port, path = args["state"], args.get("port"), args.get("path")
    host = str(args["host"])
    regex = re.compile(str(args["search_regex"]), re.MULTILINE) if args.get(
        "search_regex") else None
    if port is not None and conn.phase != "ssh":
        raise TaskError("wait_for: a port can only be waited for in a booted guest",
                        hint="mark the task `phase: ssh`")
    start = time.monotonic()
    time.sleep(float(args["delay"]))
    result: dict[str, Any] = {"changed": False, "state": state, "port": port, "path": path,
                              "search_regex": args.get("search_regex")}
    if port is None and path is None:
        time.sleep(float(args["timeout"]))
        result["elapsed"] = int(time.monotonic() - start)
        return result
    deadline = start + float(args["timeout"])
    while True:
        done, match = _probe(conn, state, host, port, path, regex, int(args["connect_timeout"]))
        if done:
            if match is not None:
                result["match_groups"] = list(match.groups())
                result["match_groupdict"] = match.groupdict()
            result["elapsed"] = int(time.monotonic() - start)
            return result
        if time.monotonic() >= deadline:
            # Ansible's own wording, per case
            if state in ("stopped", "absent"):
                text = (f"Timeout when waiting for {path} to be absent." if path is not None
                        else f"Timeout when waiting for {host}:{port} to stop.")
            elif regex is not None:
                text = (f"Timeout when waiting for search string {args['search_regex']} in "
                        f"{path if path is not None else f'{host}:{port}'}")
            else:
                text = (f"Timeout when waiting for file {path}" if path is not None
                        else f"Timeout when waiting for {host}:{port}")
            return {**result, "failed": True, "elapsed": int(time.monotonic() - start),
                    "msg": args.get("msg") or text}
        time.sleep(float(args["sleep"]))


def _probe(conn: Connection, state: str, host: str, port: int | None, path: str | None,
           regex: re.Pattern[str] | None, connect_timeout: int
           ) -> tuple[bool, re.Match[str] | None]:
    want = state in ("started", "present")
    if path is not None:
        st = conn.stat(str(path))
        if st is None:
            return not want, None
        if not want:
            return False, None
        if regex is None:
            return True, None
        m = regex.search(conn.read_file(str(path)).decode(errors="replace"))
        return m is not None, m
    assert port is not None
    if regex is not None:
        script = ('exec 3<>"/dev/tcp/$0/$1" && timeout "$2" cat <&3')
        res = conn.run(["timeout", str(connect_timeout + 1), "bash", "-c", script, host,
                        str(port), str(connect_timeout)])
        m = regex.search(res.stdout)
        return (m is not None) == want, m
    return _port_open(conn, host, port, connect_timeout) == want, None


MODULES: dict[str, Module] = {
    "get_url": Module(_get_url, Spec(
        help="Download a file (in the guest once booted; from the host on the tree).",
        params={
            "url": P("str", required=True),
            "dest": P("path", required=True, help="a file, or a directory (the URL's "
                                                  "base name)"),
            "checksum": P("str", default="", help="'sha256:HEX' or 'sha256:URL' of a "
                                                  "checksum file"),
            "force": P("bool", default=False, aliases=("thirsty",),
                       help="download even when dest exists"),
            "timeout": P("int", default=10),
            "headers": P("dict"),
            "validate_certs": P("bool", default=True),
            "backup": P("bool", default=False),
            **OWNERSHIP,
        },
        unsupported={**{k: "not done" for k in (
            "url_username", "url_password", "username", "password", "force_basic_auth",
            "client_cert", "client_key", "use_proxy", "http_agent", "tmp_dest", "sha256sum",
            "use_gssapi", "use_netrc", "unredirected_headers", "decompress", "ciphers")},
            **UNSUPPORTED_FILE_ATTRS},
        returns="dest, url, checksum_src, checksum_dest, size, status_code, elapsed, msg",
        differences="a directory dest takes the URL's base name (no Content-Disposition); "
                    "in the tree phase the host downloads.")),
    "wait_for": Module(_wait_for, Spec(
        help="Wait for a port or a file in the guest (or just wait).",
        params={
            "host": P("str", default="127.0.0.1"),
            "port": P("int"),
            "path": P("path"),
            "search_regex": P("str"),
            "state": P("str", default="started",
                       choices=("started", "stopped", "present", "absent")),
            "timeout": P("int", default=300),
            "delay": P("int", default=0),
            "sleep": P("int", default=1),
            "connect_timeout": P("int", default=5),
            "msg": P("str"),
        },
        mutually_exclusive=(("port", "path"),),
        unsupported={"exclude_hosts": "drained is not done",
                     "active_connection_states": "drained is not done"},
        returns="elapsed, state, port, path, match_groups, match_groupdict",
        differences="state=drained is not supported; ports are probed from inside the "
                    "guest with bash, python3 or nc.")),
}
