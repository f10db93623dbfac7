"""SWE-agent's `str_replace_editor` tool (its edit_anthropic bundle), re-enacted in Python.

Why: models trained on SWE-agent / SWE-smith trajectories call this editor, and what they were
trained on is its output format (`cat -n` views, edit snippets, the "No replacement was
performed" refusals). The evaluation agent (`srft evaluate --profile swe-agent`, `srft
check-scaffold`) must give the same observations, and the bundled examples
(`examples/build_examples.py`) were built with it. Paths are the agent's (`/testbed/...`,
SWE-bench's working directory) and map onto a real directory `repo`.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

SNIPPET_LINES = 4


def _numbered(text: str, start: int = 1) -> str:
    return "\n".join(f"{i:6}\t{line}" for i, line in enumerate(text.split("\n"), start=start))


def editor_action(args: dict) -> str:
    """The `action` string SWE-agent records for an editor call."""
    parts = ["str_replace_editor", args["command"], args["path"]]
    if "view_range" in args:
        parts.append("--view_range " + " ".join(str(v) for v in args["view_range"]))
    for key in ("file_text", "old_str", "new_str", "insert_line"):
        if key in args:
            parts.append(f"--{key} {shlex.quote(str(args[key]))}")
    return " ".join(parts)


class Editor:
    """View, create, str_replace, insert and undo_edit on files under `repo` (seen as `workdir`)."""

    def __init__(self, repo: Path, workdir: str):
        self.repo, self.workdir = repo, workdir
        self.history: dict[str, list[str]] = {}

    def _real(self, path: str) -> Path:
        if not path.startswith("/"):
            raise ValueError(path)
        return Path(path.replace(self.workdir, str(self.repo), 1))

    def run(self, command: str, path: str, **kw) -> str:
        if not path.startswith("/"):
            return (f"The path {path} is not an absolute path, it should start with `/`. "
                    f"Maybe you meant {self.workdir}/{path}?")
        real = self._real(path)
        if command == "view":
            return self.view(path, real, kw.get("view_range"))
        if command == "create":
            if real.exists():
                return f"File already exists at: {path}. Cannot overwrite files using command `create`."
            real.parent.mkdir(parents=True, exist_ok=True)
            real.write_text(kw["file_text"])
            return f"File created successfully at: {path}"
        if not real.is_file():
            return f"The path {path} does not exist. Please provide a valid path."
        if command == "str_replace":
            return self.str_replace(path, real, kw["old_str"], kw.get("new_str", ""))
        if command == "insert":
            return self.insert(path, real, int(kw["insert_line"]), kw["new_str"])
        if command == "undo_edit":
            if not self.history.get(path):
                return f"No edit history found for {path}."
            real.write_text(self.history[path].pop())
            return (f"Last edit to {path} undone successfully. Here's the result of running `cat -n` on {path}:\n"
                    + _numbered(real.read_text()) + "\n")
        raise ValueError(f"unknown editor command {command}")

    def view(self, path: str, real: Path, view_range=None) -> str:
        if real.is_dir():
            out = subprocess.run(["find", str(real), "-maxdepth", "2", "-not", "-path", "*/.*",
                                  "-not", "-path", "*__pycache__*"], capture_output=True, text=True).stdout
            listing = "\n".join(sorted(out.replace(str(self.repo), self.workdir).split()))
            return (f"Here's the files and directories up to 2 levels deep in {path}, excluding hidden items:\n"
                    f"{listing}\n\n")
        if not real.is_file():
            return f"The path {path} does not exist. Please provide a valid path."
        text = real.read_text().expandtabs()
        if view_range:
            lines = text.split("\n")
            start, end = view_range
            end = len(lines) if end == -1 else end
            text, first = "\n".join(lines[start - 1:end]), start
        else:
            first = 1
        return f"Here's the result of running `cat -n` on {path}:\n" + _numbered(text, first) + "\n"

    def str_replace(self, path: str, real: Path, old: str, new: str) -> str:
        text = real.read_text().expandtabs()
        count = text.count(old)
        if count == 0:
            return f"No replacement was performed, old_str `{old}` did not appear verbatim in {path}."
        if count > 1:
            lines = [i + 1 for i, line in enumerate(text.split("\n")) if old in line]
            return (f"No replacement was performed. Multiple occurrences of old_str `{old}` in lines {lines}. "
                    "Please ensure it is unique")
        self.history.setdefault(path, []).append(text)
        new_text = text.replace(old, new)
        real.write_text(new_text)
        line = text.split(old)[0].count("\n")
        start = max(0, line - SNIPPET_LINES)
        end = line + SNIPPET_LINES + new.count("\n")
        snippet = "\n".join(new_text.split("\n")[start:end + 1])
        return (f"The file {path} has been edited. Here's the result of running `cat -n` on a snippet of {path}:\n"
                + _numbered(snippet, start + 1)
                + "\nReview the changes and make sure they are as expected. Edit the file again if necessary.")

    def insert(self, path: str, real: Path, after: int, new: str) -> str:
        text = real.read_text().expandtabs()
        lines = text.split("\n")
        self.history.setdefault(path, []).append(text)
        new_lines = new.split("\n")
        updated = lines[:after] + new_lines + lines[after:]
        real.write_text("\n".join(updated))
        start = max(0, after - SNIPPET_LINES)
        snippet = "\n".join(updated[start:after + len(new_lines) + SNIPPET_LINES])
        return ("The file {path} has been edited. Here's the result of running `cat -n` on a snippet of the edited file:\n"
                .format(path=path) + _numbered(snippet, start + 1)
                + "\nReview the changes and make sure they are as expected (correct indentation, no duplicate lines, etc). "
                  "Edit the file again if necessary.")


def main(argv: list[str]) -> int:
    """Run one editor call inside an agent's environment (a container has no srft_megatron):
    `python3 -c "$(cat editor.py)" ARGS_JSON HISTORY_FILE`. The undo history, kept in memory by a
    local `Editor`, lives in HISTORY_FILE between calls; paths are the environment's own."""
    import json
    import os

    args, history_file = json.loads(argv[0]), argv[1]
    editor = Editor(Path("/"), "/")
    if os.path.exists(history_file):
        with open(history_file) as handle:
            editor.history = json.load(handle)
    print(editor.run(**args), end="")
    with open(history_file, "w") as handle:
        json.dump(editor.history, handle)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
