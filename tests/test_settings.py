"""Helper venvs are found by one rule: env var, then the checkout, then the cache directory."""

from pathlib import Path

import pytest

from srft_megatron import settings

ROOT = Path(__file__).resolve().parents[1]


def test_env_var_then_checkout_then_cache(monkeypatch, tmp_path):
    for venv in (settings.VLLM, settings.AGENT, settings.LAUNCH):
        monkeypatch.delenv(venv.env_var, raising=False)
    monkeypatch.setenv("SRFT_CACHE_DIR", str(tmp_path / "cache"))
    assert settings.checkout_root() == ROOT                      # the tests run from a checkout
    assert settings.AGENT.python == ROOT / ".venv-agent" / "bin" / "python"
    assert settings.VLLM.build_command() == ["bash", str(ROOT / "scripts" / "vllm_venv.sh"),
                                             str(ROOT / ".venv-vllm")]
    monkeypatch.setenv("SRFT_LAUNCH_VENV", str(tmp_path / "nemo"))
    assert settings.LAUNCH.path == tmp_path / "nemo"
    assert settings.LAUNCH.build_command()[-1] == str(tmp_path / "nemo")

    monkeypatch.setattr(settings, "checkout_root", lambda: None)  # as an installed wheel
    assert settings.VLLM.path == tmp_path / "cache" / "venv-vllm"
    with pytest.raises(FileNotFoundError, match="SRFT_VLLM_VENV"):
        settings.VLLM.build_command()
