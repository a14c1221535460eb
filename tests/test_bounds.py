"""Every wait in the tests and benchmarks is bounded: a hang fails with a name, in minutes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Calls that wait for another process, and so need ``timeout=``.
WAITING_CALLS = {"run", "check_output", "check_call", "call", "communicate", "wait"}
PROCESS_MODULES = {"subprocess"}


def _unbounded_waits(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line call`` for each subprocess call or process wait without ``timeout=``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name, receiver = node.func.attr, node.func.value
        module_call = isinstance(receiver, ast.Name) and receiver.id in PROCESS_MODULES
        process_wait = name in {"communicate", "wait"}
        if name not in WAITING_CALLS or not (module_call or process_wait):
            continue
        if not any(keyword.arg == "timeout" for keyword in node.keywords):
            found.append(f"{path.relative_to(root)}:{node.lineno} {name}()")
    return found


def test_every_subprocess_call_and_process_wait_has_a_timeout() -> None:
    sources = sorted([*ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/**/*.py")])
    assert len(sources) > 20
    unbounded = [where for path in sources for where in _unbounded_waits(path)]
    assert unbounded == []


def test_the_checker_finds_an_unbounded_wait(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import subprocess\n"
        "subprocess.run(['true'])\n"
        "subprocess.run(['true'], timeout=5)\n"
        "p = subprocess.Popen(['true'])\n"
        "p.wait()\n"
        "p.communicate(timeout=5)\n"
    )
    assert _unbounded_waits(sample, tmp_path) == ["sample.py:2 run()", "sample.py:5 wait()"]


def test_every_test_has_a_time_limit(pytestconfig: pytest.Config) -> None:
    """pytest-timeout fails a hung test by name long before CI's own limit."""
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert 0 < float(pytestconfig.getini("timeout")) <= 600
