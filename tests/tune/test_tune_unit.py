"""tune msize without a guest: the recommendation rule, the lab edit, the guest script's
output, the command's refusals."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from provision9p.errors import TaskError, UsageError
from provision9p.lab import validate_text
from provision9p.tune.chart import bar, charts, table
from provision9p.tune.labedit import set_scalar, share_index
from provision9p.tune.msize import (
    kernel_default_msize,
    mount_options,
    parse_output,
    parse_sizes,
    pick_share,
)
from provision9p.tune.recommend import Row, Sample, recommend, rows_of, scores


def rows(*values: tuple[int, float, float, float]) -> list[Row]:
    return rows_of([Sample(m, w, r, o) for m, w, r, o in values])


# --- the recommendation rule ----------------------------------------------------------

def test_smallest_size_within_five_percent_of_the_best() -> None:
    r = rows((8192, 10, 10, 100), (65536, 96, 97, 100), (131072, 99, 100, 100),
             (512000, 100, 99, 100))
    assert recommend(r) == 65536


def test_a_size_just_outside_the_tolerance_is_not_chosen() -> None:
    # 65536 is 10% slower at both sequential workloads: score 0.81^(1/3) = 0.932
    r = rows((65536, 90, 90, 100), (512000, 100, 100, 100))
    assert scores(r)[65536] == pytest.approx(0.81 ** (1 / 3))
    assert recommend(r) == 512000


def test_all_workloads_count_not_just_one() -> None:
    # equal at reading and writing, far worse at metadata: not within 5% overall
    r = rows((16384, 100, 100, 50), (512000, 100, 100, 100))
    assert recommend(r) == 512000


def test_the_best_is_chosen_when_nothing_smaller_is_close() -> None:
    r = rows((8192, 5, 3, 30), (65536, 95, 56, 66), (512000, 44, 29, 27))
    assert recommend(r) == 65536


def test_runs_of_one_size_are_combined_by_median() -> None:
    samples = [Sample(65536, w, 10, 10) for w in (10, 100, 12)] + \
              [Sample(512000, 11, 10, 10)] * 3
    r = rows_of(samples)
    assert [x.msize for x in r] == [65536, 512000]
    assert r[0].value("write_mbs") == 12
    assert r[0].spread("write_mbs") == pytest.approx(90 / 12)
    assert recommend(r) == 65536  # 12 is within 5%... of 11: it is the best


def test_asked_sizes_that_clamp_to_one_are_one_row() -> None:
    r = rows_of([Sample(512000, 1, 1, 1), Sample(512000, 3, 3, 3)])
    assert len(r) == 1 and r[0].value("read_mbs") == 2


def test_table_and_charts_show_the_effective_sizes() -> None:
    r = rows((8192, 5, 3, 30), (512000, 44, 29, 27))
    text = table(r, 512000)
    assert "512000" in text and "<- recommended" in text.splitlines()[-1]
    assert charts(r).count("512000") == 3
    assert bar(1, 1, 10) == "█" * 10 and bar(0, 1, 10) == "" and bar(1, 2, 4) == "██"
    assert bar(1, 16, 4) == "▎"  # a quarter cell in eighths


# --- the guest script's output --------------------------------------------------------

OUTPUT = """options=rw,sync,dirsync,relatime,access=client,msize=65536,trans=virtio
kernel=6.1.0-50-amd64
t0=100.0
t1=102.0
t2=102.5
t3=103.5
t4=104.0
t5=110.0
"""


def test_parse_output_reads_the_effective_msize_and_rates() -> None:
    s = parse_output(OUTPUT, file_mib=16, files=100)
    assert s.msize == 65536
    assert s.write_mbs == pytest.approx(16 * 1.048576 / 2)
    assert s.read_mbs == pytest.approx(16 * 1.048576)
    assert s.meta_ops == pytest.approx(300 / 6)


def test_an_msize_the_kernel_does_not_print_is_its_default() -> None:
    # Linux prints msize only when it differs from its default (seen: 131072 on 6.1)
    text = OUTPUT.replace("msize=65536,", "")
    assert parse_output(text, 16, 100).msize == 131072
    assert kernel_default_msize("5.10.0-28-amd64") == 8192
    assert kernel_default_msize("6.1.0-50-amd64") == 131072


def test_garbled_output_is_a_task_error() -> None:
    with pytest.raises(TaskError, match="unexpected"):
        parse_output("mount: permission denied\n", 16, 100)


def test_sizes_parse_with_units_and_refuse_too_small() -> None:
    assert parse_sizes("65536,512K, 8k,65536") == (65536, 524288, 8192)
    with pytest.raises(UsageError, match="below 4096"):
        parse_sizes("1024")
    with pytest.raises(UsageError, match="not a size"):
        parse_sizes("big")


LAB = """\
# the lab's own header comment
name: t   # trailing comment
guests:
  web:
    rootfs: {suite: bookworm}
    shares:
      - path: data          # where the data lives
        mount_tag: data
        mount: /mnt/data
        cache: none

      # a comment between the shares
      - {path: ro, mount_tag: ro, mount: /mnt/ro, readonly: true}
      - path: fast
        mount_tag: fast
        mount: /mnt/fast
        msize: 512K   # asked for, clamped to 512000 by the guest
  other:
    memory: 512
"""


def test_share_choice_and_mount_options() -> None:
    g = validate_text(LAB, "lab.yml", Path("/srv")).guest("web")
    assert pick_share(g, None).mount_tag == "data"
    assert mount_options(pick_share(g, "data"), 8192) == \
        "trans=virtio,version=9p2000.L,msize=8192,cache=none,access=client,posixacl"
    with pytest.raises(UsageError, match="root share"):
        pick_share(g, "rootfs")
    with pytest.raises(UsageError, match="read-only"):
        pick_share(g, "ro")
    with pytest.raises(UsageError, match="no share tagged 'nope'"):
        pick_share(g, "nope")
    with pytest.raises(UsageError, match="no extra share"):
        pick_share(validate_text(LAB, "lab.yml", Path("/srv")).guest("other"), None)


# --- the lab edit ---------------------------------------------------------------------

def _changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    import difflib

    return [(tag, line) for line in difflib.ndiff(old.splitlines(), new.splitlines())
            for tag in [line[:1]] if tag in "+-"]


def test_an_existing_msize_is_replaced_in_place() -> None:
    i = share_index(LAB, "web", "fast")
    assert i == 2
    new = set_scalar(LAB, ("guests", "web", "shares", i, "msize"), 65536)
    assert _changed_lines(LAB, new) == [
        ("-", "-         msize: 512K   # asked for, clamped to 512000 by the guest"),
        ("+", "+         msize: 65536   # asked for, clamped to 512000 by the guest")]


def test_a_missing_msize_is_added_after_the_shares_last_line() -> None:
    new = set_scalar(LAB, ("guests", "web", "shares", 0, "msize"), 65536)
    assert _changed_lines(LAB, new) == [("+", "+         msize: 65536")]
    assert new.splitlines()[9:11] == ["        cache: none", "        msize: 65536"]
    assert validate_text(new, "lab.yml", Path("/srv")).guest("web").shares[0] \
        .options.msize == 65536


def test_a_flow_mapping_gets_the_key_inside_its_braces() -> None:
    new = set_scalar(LAB, ("guests", "web", "shares", 1, "msize"), 16384)
    assert "      - {path: ro, mount_tag: ro, mount: /mnt/ro, readonly: true, msize: 16384}" \
        in new.splitlines()
    new = set_scalar(LAB, ("guests", "web", "rootfs", "msize"), 16384)
    assert "    rootfs: {suite: bookworm, msize: 16384}" in new.splitlines()


def test_missing_parents_are_added_as_a_block() -> None:
    new = set_scalar(LAB, ("guests", "other", "rootfs", "msize"), 32768)
    assert new.endswith("    memory: 512\n    rootfs:\n      msize: 32768\n")


def test_a_nested_last_value_puts_the_key_first() -> None:
    text = "guests:\n  a:\n    vars:\n      x: 1\n"
    new = set_scalar(text, ("guests", "a", "msize"), 1)
    assert new == "guests:\n  a:\n    msize: 1\n    vars:\n      x: 1\n"


def test_every_comment_survives_and_only_the_value_changes() -> None:
    new = LAB
    for i in (0, 1, 2):
        new = set_scalar(new, ("guests", "web", "shares", i, "msize"), 8192 * (i + 1))
    comments = [line.split("#", 1)[1] for line in LAB.splitlines() if "#" in line]
    assert all(c in new for c in comments)
    data = yaml.safe_load(new)
    assert [s["msize"] for s in data["guests"]["web"]["shares"]] == [8192, 16384, 24576]


def test_a_share_from_elsewhere_has_no_index() -> None:
    assert share_index(LAB, "web", "nope") is None
    assert share_index(LAB, "other", "data") is None


# --- the command ----------------------------------------------------------------------

def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provision9p", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60)


def test_command_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "lab.yml").write_text(LAB)
    res = run("tune", "msize", cwd=tmp_path)
    assert res.returncode == 2 and "name the guest" in res.stderr
    res = run("tune", "msize", "web", "--share", "rootfs", cwd=tmp_path)
    assert res.returncode == 2 and "cannot be swept" in res.stderr
    res = run("tune", "msize", "web", "--sizes", "100", cwd=tmp_path)
    assert res.returncode == 2 and "below 4096" in res.stderr
    res = run("tune", "msize", "web", "--file-size", "100K", cwd=tmp_path)
    assert res.returncode == 2 and "--file-size at least 1M" in res.stderr
    res = run("tune", "msize", "web", cwd=tmp_path)  # never started
    assert res.returncode == 2 and "web is not running" in res.stderr
    assert "Traceback" not in res.stderr


def test_apply_needs_a_lab_file(tmp_path: Path) -> None:
    res = run("tune", "msize", "demo", "--apply", cwd=tmp_path)
    assert res.returncode == 2 and "--apply needs a lab file" in res.stderr


def test_help_names_the_options(tmp_path: Path) -> None:
    res = run("tune", "msize", "--help", cwd=tmp_path)
    assert res.returncode == 0
    for opt in ("--share", "--apply", "--sizes", "--file-size", "--files", "--runs"):
        assert opt in res.stdout
    assert textwrap.dedent(res.stdout)


def test_restore_options_leave_msize_to_what_the_guest_had() -> None:
    g = validate_text(LAB, "lab.yml", Path("/srv")).guest("web")
    assert mount_options(pick_share(g, "fast"), None) == \
        "trans=virtio,version=9p2000.L,cache=none,access=client,posixacl"
    assert mount_options(pick_share(g, "fast"), 4096).split(",")[2] == "msize=4096"
