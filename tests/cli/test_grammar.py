"""One grammar: `-f LAB`, else lab.yml in the working directory, else the built-in lab;
guests as positional names, in the order given."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision9p.cli import main

LAB = "name: {name}\nguests:\n  a:\n    memory: 512\n  b:\n    memory: 512\n"


@pytest.fixture()
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("PROVISION9P_HOME", str(tmp_path / "home"))
    return work


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_lab_file_of_the_working_directory(cwd: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "validate")[1].endswith("<built-in default lab>: valid, 1 guest(s)\n")
    (cwd / "lab.yml").write_text(LAB.format(name="here"))
    assert run(capsys, "validate")[1].endswith("lab.yml: valid, 2 guest(s)\n")
    other = cwd / "other.yml"
    other.write_text(LAB.format(name="other").replace("  b:\n    memory: 512\n", ""))
    for args in (["-f", str(other), "validate"], ["--lab", str(other), "validate"],
                 ["validate", "--lab", str(other)]):
        assert run(capsys, *args)[1].endswith(f"{other}: valid, 1 guest(s)\n"), args


def test_lab_yaml_is_found_too(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "lab.yaml").write_text(LAB.format(name="y"))
    assert run(capsys, "validate")[1].endswith("lab.yaml: valid, 2 guest(s)\n")


def test_guests_are_positional_names_in_the_order_given(
        cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "lab.yml").write_text(LAB.format(name="here"))
    assert run(capsys, "status") == (0, "a: stopped, not built\nb: stopped, not built\n", "")
    assert run(capsys, "status", "b", "a", "b")[1] == \
        "b: stopped, not built\na: stopped, not built\n"
    assert run(capsys, "status", "b")[1] == "b: stopped, not built\n"
    code, _, err = run(capsys, "down", "a", "c")
    assert code == 2 and "no guest named 'c'" in err
