"""A local environment for SWE-agent tool calls: bash, `str_replace_editor` and `submit` on a
git checkout, with the agent's working directory (`/testbed`, as in SWE-bench images) mapped
onto a real directory. No Docker.

Why: the bundled examples were built by running every recorded tool call (examples/
build_examples.py), and `srft check-scaffold` replays them the same way; both must produce the
same observations, so the execution rules live here once. The rules are SWE-agent's as far as
they show in an observation: interactive programs are refused with its blocklist message, the
editor is `srft_megatron.evaluate.editor`, and `submit` returns the diff of everything changed
(SWE-agent's review_on_submit bundle stages all changes and prints `git diff --cached`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from srft_megatron.evaluate.editor import Editor, editor_action

WORKDIR = "/testbed"
# SWE-agent refuses interactive programs; the message is its blocklist_error_template.
BLOCKED_PROGRAMS = ("vim", "vi", "nano", "emacs", "less")
BLOCKED_STANDALONE = ("python", "python3", "ipython", "bash", "sh")
BASH_TIMEOUT_S = 60


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def init_repo(source: Path, dest: Path) -> Path:
    """A git repository at `dest/testbed` holding `source` as its one commit (the base commit)."""
    repo = dest / "testbed"
    shutil.copytree(source, repo, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".git"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=srft", "-c", "user.email=srft@example.com", "commit", "-qm", "base")
    return repo


def shell_env(repo: Path) -> dict:
    """A small fixed environment, so outputs do not depend on who runs the command."""
    return {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(repo.parent),
            "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "TERM": "dumb", "COLUMNS": "100"}


def refused(command: str) -> str | None:
    """SWE-agent's answer to an interactive program (its blocklist), or None when the command may run."""
    first = command.strip().split()[0] if command.strip() else ""
    if first in BLOCKED_PROGRAMS or command.strip() in BLOCKED_STANDALONE:
        return f"Operation '{command.strip()}' is not supported by this environment."
    return None


def action_text(name: str, arguments: dict) -> str:
    """The `action` string SWE-agent records for a tool call."""
    if name == "bash":
        return arguments.get("command", "")
    if name == "str_replace_editor":
        return editor_action(arguments)
    return name


class LocalEnvironment:
    """Runs SWE-agent tool calls on `repo` (a git checkout), seen by the agent as `workdir`."""

    def __init__(self, repo: Path, workdir: str = WORKDIR):
        self.repo, self.workdir = Path(repo), workdir
        self.editor = Editor(self.repo, workdir)
        self.submission: str | None = None

    def bash(self, command: str) -> str:
        if (message := refused(command)) is not None:
            return message
        real = command.replace(self.workdir, str(self.repo))
        proc = subprocess.run(["bash", "-c", real], cwd=self.repo, env=shell_env(self.repo), capture_output=True,
                              text=True, timeout=BASH_TIMEOUT_S, stdin=subprocess.DEVNULL)
        return (proc.stdout + proc.stderr).replace(str(self.repo), self.workdir).rstrip("\n")

    def diff(self) -> str:
        """What SWE-agent's submit returns: the diff of everything the agent changed."""
        git(self.repo, "add", "-A")
        return git(self.repo, "diff", "--cached")

    def execute(self, name: str, arguments: dict | str) -> str:
        """The raw output of one tool call (the profile's templates turn it into the observation)."""
        if isinstance(arguments, str):
            arguments = json.loads(arguments) if arguments.strip() else {}
        if name == "bash":
            return self.bash(arguments["command"])
        if name == "str_replace_editor":
            return self.editor.run(**arguments)
        if name == "submit":
            self.submission = self.diff()
            return self.submission.rstrip("\n")
        return f"Unknown tool {name!r}"
