"""Clear doors (issue 16): `srft` (srft_megatron/commands/) is the one CLI; `launch/` holds only
data (the shipped pipeline specs, a link into the package, and nemo-run's lock); `tools/` holds
thin, documented script entry points, each the same as one `srft` stage."""

from __future__ import annotations

import ast

from srft_megatron.cli import COMMANDS
from tests.launch.conftest import ROOT


def test_launch_holds_only_data():
    held = sorted(p.name for p in (ROOT / "launch").iterdir() if p.name != "__pycache__")  # old scripts' bytecode
    assert held == ["pipelines", "requirements-nemorun.lock"]
    assert (ROOT / "launch" / "pipelines").resolve() == ROOT / "srft_megatron" / "pipelines"


def test_tools_are_thin_documented_entry_points_of_srft_stages():
    tools = sorted((ROOT / "tools").glob("*.py"))
    assert tools
    for path in tools:
        text = path.read_text()
        tree = ast.parse(text)
        doc = ast.get_docstring(tree)
        assert doc and "srft " in doc, f"{path}: no docstring naming its srft stage"
        assert len(text.splitlines()) <= 15, f"{path}: an entry point, not code"
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "main"]
        assert len(calls) == 1, f"{path}: should call srft_megatron.cli.main once"
        stage = calls[0].args[0].elts[0].value
        assert stage in COMMANDS and f"`srft {stage}`" in doc, (path, stage)
