"""The served tiny model is built aside and renamed into place: a build cut short never leaves a
directory that later runs (srft demo --critic, the vLLM tests) would take for a complete model."""

from __future__ import annotations

import pytest

from srft_megatron.convert.tiny_hf import save_tiny_served_model


def test_served_model_is_renamed_into_place_kept_and_never_written_into_a_foreign_dir(tmp_path):
    out = save_tiny_served_model(tmp_path / "model")
    files = sorted(p.name for p in out.iterdir())
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    assert save_tiny_served_model(tmp_path / "model") == out  # kept, not rebuilt
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a served tiny model"):
        save_tiny_served_model(foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign", "model"]  # no temporary directory left
