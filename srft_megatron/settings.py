"""Where srft finds what the package does not hold: the helper venvs and the source checkout.

Why one module: vLLM (its own Python 3.11 venv), the agent scaffold and the SWE-bench harness
(`.venv-agent`) and nemo-run (`.venv-launch`) cannot live in the project's venv (their pins clash),
so srft runs them as subprocesses from venvs of their own. Each stage used to find them by walking
up from its own file, which only works in a checkout. Here is the one rule, for every venv:

1. the environment variable (`SRFT_VLLM_VENV`, `SRFT_AGENT_VENV`, `SRFT_LAUNCH_VENV`), if set;
2. else, when the package runs from a source checkout, `CHECKOUT/.venv-vllm` (… `-agent`, `-launch`),
   where `make setup`, the tests and the build scripts in `scripts/` put them;
3. else `CACHE/venv-vllm` (…) under the cache directory (`$SRFT_CACHE_DIR`, default
   `~/.cache/srft-megatron`), for an installed wheel.

A venv is built by its script in the checkout's `scripts/` (`build_command`); an installed wheel
has no scripts, so the error then says which variable to point at a venv built elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def cache_dir() -> Path:
    """srft's cache (the offline tokenizer's files, helper venvs of an installed package)."""
    return Path(os.environ.get("SRFT_CACHE_DIR", Path.home() / ".cache" / "srft-megatron"))


def checkout_root() -> Path | None:
    """The source checkout this package is imported from, or None for an installed package."""
    root = Path(__file__).resolve().parent.parent
    markers = (root / "pyproject.toml", root / "scripts", root / "srft_megatron" / "__init__.py")
    return root if all(m.exists() for m in markers) else None


@dataclass(frozen=True)
class HelperVenv:
    name: str            # vllm | agent | launch
    env_var: str
    build_script: str    # relative to the checkout

    @property
    def path(self) -> Path:
        if os.environ.get(self.env_var):
            return Path(os.environ[self.env_var])
        root = checkout_root()
        return root / f".venv-{self.name}" if root else cache_dir() / f"venv-{self.name}"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def build_command(self) -> list[str]:
        """The command that builds (or refreshes) this venv; raises where no checkout has the script."""
        root = checkout_root()
        if root is None or not (root / self.build_script).is_file():
            raise FileNotFoundError(f"no {self.name} venv at {self.path} and no source checkout to build it "
                                    f"from: build it from a checkout (bash {self.build_script} DIR) and set "
                                    f"{self.env_var}=DIR")
        return ["bash", str(root / self.build_script), str(self.path)]


VLLM = HelperVenv("vllm", "SRFT_VLLM_VENV", "scripts/vllm_venv.sh")
AGENT = HelperVenv("agent", "SRFT_AGENT_VENV", "scripts/agent_venv.sh")
LAUNCH = HelperVenv("launch", "SRFT_LAUNCH_VENV", "scripts/nemorun_venv.sh")
