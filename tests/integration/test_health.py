"""Guest health in `verify`: a failed systemd unit is a failed check that names the unit,
shows its status lines and the likely cause (a swap file on the 9P root). On the suite's
shared guest, which gets its units back as they were."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.labs import SHARED_GUEST

pytestmark = [pytest.mark.vm, pytest.mark.network]

SG = SHARED_GUEST
SWAP_UNIT = "[Swap]\nWhat=/swapfile\n"


def _ssh(p9: Any, lab: Path, command: str) -> Any:
    return p9("-f", str(lab), "ssh", SG, "--", command)


def _unit_check(p9: Any, lab: Path) -> dict[str, Any]:
    res = p9("-f", str(lab), "verify", "--json")
    (guest,) = json.loads(res.stdout)["guests"]
    (check,) = [c for c in guest["checks"] if c["check"] == "systemd units"]
    assert check["share"] == "guest"
    return dict(check)


@pytest.fixture()
def swap_unit(shared_lab: Path, p9: Any) -> Iterator[Path]:
    res = _ssh(p9, shared_lab,
               "dd if=/dev/zero of=/swapfile bs=1M count=16 status=none && chmod 600 /swapfile"
               f" && mkswap /swapfile >/dev/null && printf '{SWAP_UNIT}' > "
               "/etc/systemd/system/swapfile.swap && systemctl daemon-reload && "
               "{ systemctl start swapfile.swap; true; }")
    assert res.returncode == 0, res.stdout + res.stderr
    yield shared_lab
    res = _ssh(p9, shared_lab, "rm -f /etc/systemd/system/swapfile.swap /swapfile && "
                               "systemctl daemon-reload && systemctl reset-failed")
    assert res.returncode == 0, res.stdout + res.stderr


def test_no_failed_units_on_a_healthy_guest(shared_lab: Path, p9: Any) -> None:
    check = _unit_check(p9, shared_lab)
    assert (check["outcome"], check["detail"]) == ("ok", "0 failed"), check


def test_a_swap_file_on_the_9p_root_fails_verify_with_its_cause(swap_unit: Path,
                                                                  p9: Any) -> None:
    check = _unit_check(p9, swap_unit)
    assert check["outcome"] == "failed" and check["detail"] == "1 failed", check
    message = check["message"]
    assert "swapfile.swap failed; likely cause: a swap file cannot live on a 9P root" \
        in message.splitlines()[0], message
    assert "zram" in message and "swapon failed: Invalid argument" in message, message
    res = p9("-f", str(swap_unit), "verify")
    assert res.returncode == 1
    assert f"{SG} guest systemd units: FAILED" in res.stdout, res.stdout
