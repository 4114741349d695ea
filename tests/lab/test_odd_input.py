"""Odd lab files: each one is a lab error (or a valid lab), never a traceback, and fast.

Table-driven rather than hypothesis (not installed here): each row is an input a user or
a broken editor can produce, named after what is odd about it.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provision9p.errors import LabError
from provision9p.lab import load_lab, validate_text

GUEST = "guests:\n  web: {}\n"


def _laughs(levels: int, width: int = 9) -> str:
    lines = ['l0: &l0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * width) + "]")
    return "x-" + "\nx-".join(lines) + "\n" + GUEST


ODD: dict[str, str] = {
    "empty": "",
    "only-comment": "# nothing\n",
    "null-document": "~\n",
    "top-level-list": "- web\n- db\n",
    "top-level-scalar": "42\n",
    "top-level-string": "guests\n",
    "two-documents": GUEST + "---\n" + GUEST,
    "number-keys": "guests:\n  1: {}\n  2.5: {cpus: 1}\n",
    "bool-key": "guests:\n  true: {}\n",
    "null-key": "guests:\n  ~: {}\n",
    "mapping-key": "guests:\n  ? {a: 1}\n  : {}\n",
    "list-key": "guests:\n  ? [a, b]\n  : {}\n",
    "tab-indent": "guests:\n\tweb: {}\n",
    "tab-in-value": "guests:\n  web:\n    cpus:\t2\n",
    "duplicate-guest": "guests:\n  web: {}\n  web: {cpus: 1}\n",
    "duplicate-top": GUEST + GUEST,
    "huge-integer": "guests:\n  web:\n    cpus: " + "9" * 5000 + "\n",
    "huge-memory": "guests:\n  web:\n    memory: " + "9" * 400 + "\n",
    "huge-octal": "guests:\n  web:\n    shares:\n      - {path: d, mount_tag: d, "
                  "mount: /d, fmode: 0" + "7" * 5000 + "}\n",
    "huge-hex": "guests:\n  web:\n    cpus: 0x" + "f" * 5000 + "\n",
    "huge-float": "guests:\n  web:\n    cpus: 1e999\n",
    "nan": "guests:\n  web:\n    memory: .nan\n",
    "negative": "guests:\n  web:\n    cpus: -1\n",
    "deep-lists": "guests:\n  web:\n    vars:\n      x: " + "[" * 3000 + "]" * 3000 + "\n",
    "deep-maps": "guests:\n  web:\n    vars:\n      x: " + "{a: " * 3000 + "1" + "}" * 3000
                 + "\n",
    "binary-tag": "guests:\n  web:\n    cpus: !!binary aGVsbG8=\n",
    "python-tag": "guests:\n  web:\n    cpus: !!python/object:os.system [ls]\n",
    "unknown-tag": "guests:\n  web:\n    cpus: !vault 1\n",
    "bad-float-tag": "guests:\n  web:\n    cpus: !!float abc\n",
    "bad-int-tag": "guests:\n  web:\n    cpus: !!int abc\n",
    "timestamp": "name: 2001-12-14\n" + GUEST,
    "set": "guests:\n  web:\n    roles: !!set {a, b}\n",
    "omap": "guests: !!omap\n  - web: {}\n",
    "control-char": "guests:\n  web:\n    cpus: \x07\n",
    "nul-byte": "guests:\n  web:\n    cpus: 1\x00\n",
    "lone-surrogate-escape": 'name: "\\ud800"\n' + GUEST,
    "recursive-alias": "x-a: &a [*a]\n" + GUEST,
    "recursive-map-alias": "x-a: &a {b: *a}\n" + GUEST,
    "undefined-alias": "guests:\n  web: *nothing\n",
    "merge-non-mapping": "guests:\n  web:\n    <<: [1, 2]\n",
    "merge-scalar": "guests:\n  web:\n    <<: 5\n",
    "alias-as-key": "x-k: &k cpus\nguests:\n  web:\n    *k : 2\n",
    "billion-laughs": _laughs(9),
    "wide-laughs": _laughs(4, 200),
    "guest-list-of-lists": "guests:\n  web:\n    shares: [[1]]\n",
    "share-scalar": "guests:\n  web:\n    shares: [5]\n",
    "roles-mapping": "guests:\n  web:\n    roles: {a: 1}\n",
    "role-number": "guests:\n  web:\n    roles: [{role: 5}]\n",
    "vars-list": "guests:\n  web:\n    vars: [1]\n",
    "defaults-list-rootfs": "defaults:\n  rootfs: [1]\n" + GUEST,
    "defaults-scalar-guest": "defaults:\n  cpus: 1\nguests:\n  web: 5\n",
    "kernel-scalar": "guests:\n  web:\n    kernel: 5\n",
    "network-list": "guests:\n  web:\n    network: [1]\n",
    "ssh-port-string": "guests:\n  web:\n    network: {ssh_port: abc}\n",
    "msize-list": "guests:\n  web:\n    shares: [{path: d, mount_tag: d, mount: /d, "
                  "msize: [1]}]\n",
    "access-float": "guests:\n  web:\n    shares: [{path: d, mount_tag: d, mount: /d, "
                    "access: 1.5}]\n",
    "path-number": "guests:\n  web:\n    shares: [{path: 5, mount_tag: d, mount: /d}]\n",
    "path-nul": 'guests:\n  web:\n    shares: [{path: "a\\0b", mount_tag: d, mount: /d}]\n',
    "tag-number": "guests:\n  web:\n    shares: [{path: d, mount_tag: 5, mount: /d}]\n",
    "verify-nul": 'guests:\n  web:\n    verify: ["a\\0b"]\n',
    "roles-path-nul": 'roles_path: ["a\\0b"]\n' + GUEST,
    "state-dir-list": "state_dir: [1]\n" + GUEST,
    "image-path-long": "guests:\n  web:\n    kernel: {image: " + "a/" * 5000 + "k}\n",
    "long-name": "name: " + "n" * 100000 + "\n" + GUEST,
    "bom": "\ufeff" + GUEST,
    "crlf": GUEST.replace("\n", "\r\n"),
    "unicode-guest": "guests:\n  wéb: {}\n",
    "emoji-key": "guests:\n  web:\n    😀: 1\n",
}


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_lab_is_a_lab_error_or_valid(name: str, tmp_path: Path) -> None:
    # This thread's CPU time, not wall time (the host is shared) nor the process's (other
    # tests' threads count there). And the test session's heap frozen out of the garbage
    # collector: its passes over it cost deep-lists 1.0-1.2 s in the full ring against
    # well under 0.1 s in a fresh process, as a CLI run is.
    gc.collect()
    gc.freeze()
    try:
        started = time.thread_time()
        try:
            validate_text(ODD[name], "lab.yml", tmp_path)
        except LabError as exc:
            assert exc.problems, "a LabError must name at least one problem"
            for problem in exc.problems:
                assert problem.startswith("lab.yml"), problem
        spent = time.thread_time() - started
    finally:
        gc.unfreeze()
    assert spent < 1.0, spent


def test_billion_laughs_refused_fast_and_small(tmp_path: Path) -> None:
    """Run in a child so its peak memory is its own; the limit is what the issue asks."""
    lab = tmp_path / "lab.yml"
    lab.write_text(_laughs(9))
    code = (
        "import resource, sys, time\n"
        "from pathlib import Path\n"
        "from provision9p.errors import LabError\n"
        "from provision9p.lab import load_lab\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = time.process_time()\n"
        "try:\n"
        f"    load_lab(Path({str(lab)!r}))\n"
        "except LabError as exc:\n"
        "    print(exc.problems[0])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(round(time.process_time() - t, 3), after - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout.splitlines()
    assert "aliases expand to more than" in out[0], out
    seconds, grown_kib = out[1].split()
    assert float(seconds) < 1.0
    assert int(grown_kib) < 8 * 1024  # KiB: a few MB at most


def test_invalid_utf8_names_the_byte_offset(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yml"
    lab.write_bytes(b"guests:\n  web:\n    cpus: \xff\xfe\n")
    with pytest.raises(LabError) as info:
        load_lab(lab)
    (problem,) = info.value.problems
    assert problem == (f"{lab}:3:11 not UTF-8: byte 0xff at offset 25 cannot be decoded; "
                       "save the lab file as UTF-8")


def test_utf16_file_with_bom_is_refused_clearly(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yml"
    lab.write_bytes("guests:\n  web: {}\n".encode("utf-16"))
    with pytest.raises(LabError) as info:
        load_lab(lab)
    assert "not UTF-8" in info.value.problems[0]


def test_lab_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LabError) as info:
        load_lab(tmp_path)
    assert "cannot read the lab file" in info.value.problems[0]



@pytest.mark.parametrize("name", ["deep-lists", "deep-maps"])
def test_deep_nesting_is_refused_where_it_starts(name: str, tmp_path: Path) -> None:
    with pytest.raises(LabError) as err:
        validate_text(ODD[name], "lab.yml", tmp_path)
    (problem,) = err.value.problems
    assert problem.startswith("lab.yml:4:") and "nested more than 100 levels deep" in problem
