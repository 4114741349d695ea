"""apt and package: Debian packages through apt-get as Ansible does; apt_repository and
debconf beside them.

In the tree phase the commands run in a chroot of the plain tree (the build starts
no services there: see TreeConnection); over SSH they run in the guest, which needs
a route to its mirror for anything not yet installed.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import secrets
import time
from typing import Any

from provision9p.connect.base import Connection, RunResult
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import (
    Module,
    ModuleContext,
    parse_mode,
    run_checked,
    write_content,
)
from provision9p.tasks.modules.spec import P, Spec, coerce

_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
_STATES = ("present", "absent", "latest", "installed", "removed", "fixed", "build-dep")


def installed(conn: Connection, names: list[str]) -> set[str]:
    """Which of these packages dpkg has fully installed."""
    return set(installed_versions(conn, names))


def installed_versions(conn: Connection, names: list[str]) -> dict[str, str]:
    res = conn.run(["dpkg-query", "-W", "-f=${Package}\\t${db:Status-Abbrev}\\t${Version}\\n",
                    *names], env=_ENV)
    have = {}
    for line in res.stdout.splitlines():
        pkg, _, rest = line.partition("\t")
        status, _, version = rest.partition("\t")
        if status.startswith("ii"):
            have[pkg.split(":")[0]] = version.strip()
    return have


def _split(spec: str) -> tuple[str, str | None]:
    """'nginx=1.22*' -> ('nginx', '1.22*'); 'nginx:amd64' keeps its architecture."""
    name, _, version = spec.partition("=")
    return name, version or None


def _apt_opts(args: dict[str, Any]) -> list[str]:
    opts = [f"-o=Dpkg::Options::=--{o.strip()}"
            for o in str(args.get("dpkg_options") or "").split(",") if o.strip()]
    if args.get("install_recommends") is True:
        opts.append("--install-recommends")
    elif args.get("install_recommends") is False:
        opts.append("--no-install-recommends")
    if args.get("default_release"):
        opts += ["-t", str(args["default_release"])]
    if args.get("allow_unauthenticated"):
        opts.append("--allow-unauthenticated")
    if args.get("only_upgrade"):
        opts.append("--only-upgrade")
    return opts


def _run_apt(conn: Connection, argv: list[str]) -> RunResult:
    res = conn.run(argv, env=_ENV)
    if not res.ok and "dpkg --configure -a" in res.stderr + res.stdout:
        # dpkg was interrupted (the guest lost power mid-install): apt refuses to go on
        # until the half-done packages are configured, and says so; do that, then retry.
        run_checked(conn, ["dpkg", "--configure", "-a"], env=_ENV)
        res = conn.run(argv, env=_ENV)
    if not res.ok:
        detail = (res.stderr.strip() or res.stdout.strip())[-1500:]
        raise TaskError(f"`{' '.join(argv)}` failed (exit {res.returncode}): {detail}")
    return res


def _apt(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    names = [str(n) for n in args.get("name") or []]
    state = {"installed": "present", "removed": "absent"}.get(args["state"], args["state"])
    result: dict[str, Any] = {"changed": False, "cache_updated": False}
    if args.get("update_cache") and not ctx.check:
        stale, stamp = _cache_stale(conn, args)
        if stale:
            run_checked(conn, ["apt-get", "update", "-q"], env=_ENV)
            result["cache_updated"] = True
            stamp = time.time()
        result["cache_update_time"] = int(stamp)
    stdout: list[str] = []
    if args.get("deb"):
        _deb(conn, str(args["deb"]), args, ctx, result, stdout)
    if names:
        _packages(conn, names, state, args, ctx, result, stdout)
    if args.get("upgrade") not in (None, "no"):
        verb = ["dist-upgrade"] if args["upgrade"] in ("dist", "full") else [
            "upgrade", "--with-new-pkgs"]
        _simulated(conn, ["apt-get", *verb, "-q", *_apt_opts(args)], "Inst ", ctx, result,
                   stdout, "upgraded")
    if args.get("autoremove"):
        _simulated(conn, ["apt-get", "autoremove", "-q",
                          *(["--purge"] if args.get("purge") else [])], "Remv ", ctx,
                   result, stdout, "autoremoved")
    if args.get("autoclean"):
        _simulated(conn, ["apt-get", "autoclean", "-q"], "Del ", ctx, result, stdout,
                   "autocleaned")
    if stdout:
        result["stdout"] = "".join(stdout)
        result["stdout_lines"] = result["stdout"].splitlines()
    return result


def _simulated(conn: Connection, argv: list[str], marker: str, ctx: ModuleContext,
               result: dict[str, Any], stdout: list[str], what: str) -> None:
    """Run argv with -s first: it changes something only if the simulation says so."""
    sim = run_checked(conn, [argv[0], "-s", *argv[1:]], env=_ENV)
    hits = [ln.split()[1] for ln in sim.stdout.splitlines()
            if ln.startswith(marker) and len(ln.split()) > 1]
    if not hits:
        return
    result["changed"] = True
    result["msg"] = (result.get("msg", "") + f"; {what}: " if result.get("msg") else
                     f"{what}: ") + ", ".join(hits)
    if not ctx.check:
        stdout.append(run_checked(conn, [argv[0], "-y", *argv[1:]], env=_ENV).stdout)


def _packages(conn: Connection, names: list[str], state: str, args: dict[str, Any],
              ctx: ModuleContext, result: dict[str, Any], stdout: list[str]) -> None:
    specs = [_split(n) for n in names]
    have = installed_versions(conn, [n for n, _ in specs])
    opts = _apt_opts(args)
    if state in ("present", "fixed"):
        todo = [spec for spec, (n, v) in zip(names, specs, strict=True)
                if n.split(":")[0] not in have
                or (v is not None and not fnmatch.fnmatch(have[n.split(":")[0]], v))]
        argv = ["apt-get", "install", "-y", "-q", *opts,
                *(["--fix-broken"] if state == "fixed" else []), *todo]
    elif state == "latest":
        sim = run_checked(conn, ["apt-get", "install", "-s", "-q", *opts, *names], env=_ENV)
        todo = [ln.split()[1] for ln in sim.stdout.splitlines() if ln.startswith("Inst ")]
        argv = ["apt-get", "install", "-y", "-q", *opts, *names]
    elif state == "build-dep":
        sim = run_checked(conn, ["apt-get", "build-dep", "-s", "-q", *names], env=_ENV)
        todo = [ln.split()[1] for ln in sim.stdout.splitlines() if ln.startswith("Inst ")]
        argv = ["apt-get", "build-dep", "-y", "-q", *opts, *names]
    else:
        todo = [n for n, _ in specs if n.split(":")[0] in have]
        argv = ["apt-get", "purge" if args.get("purge") else "remove", "-y", "-q",
                *(["--auto-remove"] if args.get("autoremove") else []), *todo]
    if not todo:
        return
    result["changed"] = True
    result["msg"] = f"{'removed' if state == 'absent' else 'installed'}: {', '.join(todo)}"
    if not ctx.check:
        stdout.append(_run_apt(conn, argv).stdout)


def _deb(conn: Connection, deb: str, args: dict[str, Any], ctx: ModuleContext,
         result: dict[str, Any], stdout: list[str]) -> None:
    if "://" in deb:
        from provision9p.tasks.modules.net import fetch

        tmp = f"/tmp/.provision9p-{secrets.token_hex(6)}.deb"
        conn.write_file(tmp, fetch(conn, deb, {}), mode=0o644)
        try:
            _deb(conn, tmp, args, ctx, result, stdout)
        finally:
            conn.remove(tmp)
        return
    if conn.stat(deb) is None:
        raise TaskError(f"apt: no file {deb} in the guest")
    info = run_checked(conn, ["dpkg-deb", "-f", deb, "Package", "Version"], env=_ENV)
    fields = dict(ln.split(": ", 1) for ln in info.stdout.splitlines() if ": " in ln)
    name, version = fields.get("Package", ""), fields.get("Version", "")
    if installed_versions(conn, [name]).get(name) == version:
        return
    result["changed"] = True
    result["msg"] = f"installed: {name} {version}"
    if not ctx.check:
        stdout.append(run_checked(conn, ["apt-get", "install", "-y", "-q",
                                         *_apt_opts(args), deb], env=_ENV).stdout)


def _cache_stale(conn: Connection, args: dict[str, Any]) -> tuple[bool, float]:
    """Ansible's rule: the update-success stamp, else the lists directory's mtime."""
    st = conn.stat("/var/lib/apt/periodic/update-success-stamp") or conn.stat(
        "/var/lib/apt/lists")
    stamp = st.mtime if st is not None else 0.0
    valid = int(args.get("cache_valid_time") or 0)
    if not valid:
        return True, stamp
    return time.time() - stamp > valid, stamp


def _package(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    if args["use"] not in ("auto", "apt") or conn.stat("/usr/bin/apt-get") is None:
        raise TaskError("package: only apt (Debian) is supported by provision9p",
                        hint="the guest has no /usr/bin/apt-get")
    # As Ansible's package action: the other parameters belong to the backend, so they
    # are checked by apt's declaration when the task runs (a yum-only `enablerepo` in a
    # RedHat branch never reached on Debian does not stop the role at load).
    extra = {k: v for k, v in args.items() if k not in ("name", "state", "use")}
    apt_args = coerce("apt", MODULES["apt"].spec,
                      {"dpkg_options": "force-confdef,force-confold", **extra,
                       "name": args["name"], "state": args["state"]})
    return _apt(conn, apt_args, ctx)


# --- apt_repository ---------------------------------------------------------------

_SOURCES_DIR = "/etc/apt/sources.list.d"


def repo_filename(repo: str, filename: str | None) -> str:
    """The file Ansible's apt_repository picks: the repository's host and path with
    every run of other characters made one '_' (deb http://a.b/c d -> a_b_c.list)."""
    if filename:
        return f"{filename}.list"
    line = re.sub(r"\[[^\]]+\]", "", repo)
    line = re.sub(r"\w+://", "", line)
    parts = [p for p in line.split() if p not in ("deb", "deb-src")]
    if not parts:
        raise TaskError(f"apt_repository: cannot read a repository from {repo!r}")
    first = parts[0].split("@", 1)[-1]
    return "_".join(re.sub("[^a-zA-Z0-9]", " ", first).split()) + ".list"


def _norm(line: str) -> str:
    return " ".join(line.split("#", 1)[0].split())


def _sources(conn: Connection) -> list[str]:
    files = ["/etc/apt/sources.list"] if conn.stat("/etc/apt/sources.list") else []
    if conn.stat(_SOURCES_DIR) is not None:
        files += [posixpath.join(_SOURCES_DIR, n) for n in sorted(conn.listdir(_SOURCES_DIR))
                  if n.endswith(".list")]
    return files


def _apt_repository(conn: Connection, args: dict[str, Any], ctx: ModuleContext
                    ) -> dict[str, Any]:
    repo = str(args["repo"]).strip()
    if repo.startswith("ppa:"):
        raise TaskError("apt_repository: PPAs are Ubuntu's; not supported by provision9p")
    want = _norm(repo)
    if not want.startswith(("deb ", "deb-src ")):
        raise TaskError(f"apt_repository: {repo!r} is not a 'deb ...' line")
    result: dict[str, Any] = {"changed": False, "repo": repo, "state": args["state"]}
    contents = {f: conn.read_file(f).decode(errors="replace") for f in _sources(conn)}
    present = [f for f, text in contents.items()
               if any(_norm(ln) == want for ln in text.splitlines())]
    mode = parse_mode(args.get("mode")) or 0o644
    diffs = []
    if args["state"] == "present" and not present:
        path = posixpath.join(_SOURCES_DIR, repo_filename(repo, args.get("filename")))
        old = contents.get(path, "")
        new = old + ("" if not old or old.endswith("\n") else "\n") + repo + "\n"
        res = write_content(conn, path, new.encode(), {"mode": f"{mode:o}"}, ctx)
        result["changed"] = True
        result["sources_added"] = [path]
        diffs.append(res.get("diff"))
    elif args["state"] == "absent" and present:
        result["changed"] = True
        result["sources_removed"] = present
        for path in present:
            kept = [ln for ln in contents[path].splitlines() if _norm(ln) != want]
            if not any(_norm(ln) for ln in kept) and path != "/etc/apt/sources.list":
                if not ctx.check:
                    conn.remove(path)
            else:
                write_content(conn, path, ("\n".join(kept) + "\n").encode(), {}, ctx)
    if diffs and diffs[0]:
        result["diff"] = diffs[0]
    if result["changed"] and args.get("update_cache") and not ctx.check:
        run_checked(conn, ["apt-get", "update", "-q"], env=_ENV)
        result["cache_updated"] = True
    return result


# --- debconf ----------------------------------------------------------------------

def _debconf_db(conn: Connection) -> dict[str, dict[str, str]]:
    """debconf's own databases, read as files (works on a tree with no commands):
    question name -> its fields (Value, Flags, ...)."""
    out: dict[str, dict[str, str]] = {}
    for path in ("/var/cache/debconf/config.dat", "/var/cache/debconf/passwords.dat"):
        if conn.stat(path) is None:
            continue
        for stanza in conn.read_file(path).decode(errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(" "):
                    key, _, value = line.partition(":")
                    fields[key] = value.strip()
            if "Name" in fields:
                out[fields["Name"]] = fields
    return out


def _debconf_value(value: Any, vtype: str) -> str:
    if vtype in ("boolean", "seen"):
        if isinstance(value, bool):
            return "true" if value else "false"
        return "true" if str(value).lower() in ("yes", "true", "on", "1") else "false"
    if vtype == "multiselect" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _debconf(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    pkg = str(args["name"])
    db = _debconf_db(conn)
    current = {q: f.get("Value", "") for q, f in db.items()
               if pkg in [o.strip() for o in f.get("Owners", "").split(",")] or q.startswith(
                   pkg + "/")}
    result: dict[str, Any] = {"changed": False, "current": current}
    if args.get("question") is None:
        return result
    question, vtype = str(args["question"]), str(args["vtype"])
    value = _debconf_value(args.get("value"), vtype)
    entry = db.get(question)
    if vtype == "seen":
        flags = [f.strip() for f in (entry or {}).get("Flags", "").split(",")]
        same = entry is not None and ("seen" in flags) == (value == "true")
    elif entry is None:
        same = False
    elif vtype == "multiselect":
        same = sorted(v.strip() for v in entry.get("Value", "").split(",")) == sorted(
            v.strip() for v in value.split(","))
    else:
        same = entry.get("Value", "") == value
    if same:
        return result
    result["changed"] = True
    before = "" if entry is None else entry.get("Value", "")
    result["diff"] = {"before": {question: before if vtype != "password" else "********"},
                      "after": {question: value if vtype != "password" else "********"}}
    result["msg"] = f"{question} set"
    if not ctx.check:
        _set_selection(conn, f"{pkg} {question} {vtype} {value}\n",
                       bool(args.get("unseen")))
    return result


def _set_selection(conn: Connection, line: str, unseen: bool) -> None:
    res = conn.run(["debconf-set-selections", *(["-u"] if unseen else [])],
                   stdin=line.encode(), env=_ENV)
    if not res.ok:
        raise TaskError(f"debconf-set-selections failed: {(res.stderr or res.stdout).strip()}")


_APT_UNSUPPORTED = {k: "not done" for k in (
    "force", "policy_rc_d", "lock_timeout", "fail_on_autoremove", "allow_downgrade",
    "allow_change_held_packages", "update_cache_retries", "update_cache_retry_max_delay",
    "clean", "auto_install_module_deps")}

MODULES: dict[str, Module] = {
    "apt": Module(_apt, Spec(
        help="Debian packages: install, remove, upgrade, through apt-get.",
        params={
            "name": P("list", elements="str", aliases=("pkg", "package"),
                      help="names, 'name=version' (glob) allowed"),
            "state": P("str", default="present", choices=_STATES),
            "update_cache": P("bool", default=False, aliases=("update-cache",)),
            "cache_valid_time": P("int", default=0,
                                  help="seconds the lists stay fresh (their mtime)"),
            "install_recommends": P("bool", aliases=("install-recommends",),
                                    help="unset: apt's own setting"),
            "purge": P("bool", default=False),
            "deb": P("path", help="a .deb file in the guest, or its URL"),
            "autoremove": P("bool", default=False),
            "autoclean": P("bool", default=False),
            "upgrade": P("str", default="no", choices=("dist", "full", "no", "safe", "yes")),
            "force_apt_get": P("bool", default=False,
                               help="accepted: apt-get is always what runs"),
            "default_release": P("str", aliases=("default-release",)),
            "allow_unauthenticated": P("bool", default=False,
                                       aliases=("allow-unauthenticated",)),
            "dpkg_options": P("str", default="force-confdef,force-confold"),
            "only_upgrade": P("bool", default=False),
        },
        unsupported={**_APT_UNSUPPORTED,
                     "install_python_apt": "accepted nowhere: python3-apt is not needed"},
        returns="cache_updated, cache_update_time, stdout, stdout_lines, msg",
        differences="no python3-apt needed; names with wildcards (apt's globs) are not "
                    "expanded for the idempotency check.")),
    "package": Module(_package, Spec(
        help="A generic package task; on Debian it is apt.",
        params={"name": P("list", elements="str", required=True, aliases=("pkg",)),
                "state": P("str", default="present", choices=_STATES),
                "use": P("str", default="auto", choices=("auto", "apt"))},
        any_names=True,
        returns="as apt",
        differences="other parameters go to apt, and are checked when the task runs")),
    "apt_repository": Module(_apt_repository, Spec(
        help="A 'deb ...' line in /etc/apt/sources.list.d/NAME.list.",
        params={"repo": P("str", required=True),
                "state": P("str", default="present", choices=("present", "absent")),
                "filename": P("str", help="NAME of NAME.list; default: derived from the "
                                          "URL as Ansible does"),
                "update_cache": P("bool", default=True, aliases=("update-cache",)),
                "mode": P("raw", default="0644"),
                "validate_certs": P("bool", default=True, choices=(True,)),
                "install_python_apt": P("bool", default=True,
                                        help="accepted: python3-apt is not needed")},
        unsupported={"codename": "PPAs are not supported", "update_cache_retries": "not done",
                     "update_cache_retry_max_delay": "not done"},
        returns="repo, state, sources_added, sources_removed, diff",
        differences="deb822 .sources files are not read when checking what is present.")),
    "debconf": Module(_debconf, Spec(
        help="Preseed a debconf answer (debconf-set-selections).",
        params={"name": P("str", required=True, aliases=("pkg",)),
                "question": P("str", aliases=("selection", "setting")),
                "vtype": P("str", choices=("boolean", "error", "multiselect", "note",
                                           "password", "seen", "select", "string", "text",
                                           "title")),
                "value": P("raw", aliases=("answer",)),
                "unseen": P("bool", default=False)},
        required_together=(("question", "vtype"),),
        returns="current (the package's questions and values), msg, diff",
        differences="reads debconf's database files directly (no debconf-show).")),
}
