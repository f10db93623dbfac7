"""The label channel (DESIGN §4, `PREFIX_labels`): `srft preprocess` writes, per token, which kind of
step it belongs to. Decoded back, the non-context runs must be exactly the steps of the examples,
token for token, each carrying its expert label from examples/labels.jsonl."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srft_megatron.dataset import LABEL_CODES, DatasetWriter, open_dataset, open_labels, read_meta
from srft_megatron.trajectory import read_trajectories
from tests.conftest import ROOT
from tests.data.conftest import srft
from tests.data.test_spans import expected_step_text

EXAMPLES = ROOT / "examples"
NAMES = {code: name for name, code in LABEL_CODES.items()}


def _runs(codes: np.ndarray) -> list[tuple[int, int, int]]:
    """Maximal runs `(start, end, code)` of equal non-context codes."""
    runs, i = [], 0
    while i < len(codes):
        j = i
        while j < len(codes) and codes[j] == codes[i]:
            j += 1
        if codes[i] != LABEL_CODES["context"]:
            runs.append((i, j, int(codes[i])))
        i = j
    return runs


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    d = tmp_path_factory.mktemp("labels")
    trajs = d / "trajectories.jsonl"
    srft("ingest", *sorted((EXAMPLES / "trajectories").glob("*.traj")), "--resolved",
         EXAMPLES / "resolved.jsonl", "-o", trajs, "--quiet")
    return d, trajs, {r["id"]: r for r in map(json.loads, (EXAMPLES / "labels.jsonl").read_text().splitlines())}


def test_label_channel_decodes_to_each_step_and_its_expert_label(examples, tokenizer):
    d, trajs, expert = examples
    prefix = d / "naive"
    srft("preprocess", "--trajectories", trajs, "--labels", EXAMPLES / "labels.jsonl", "--policy", "naive",
         "--seq-length", 32768, "--output-prefix", prefix, "--quiet")
    ds, labels, meta = open_dataset(prefix), open_labels(prefix), read_meta(prefix)
    assert meta["label_codes"] == LABEL_CODES and meta["dtypes"]["labels"] == "uint8"
    by_id = {t.id: t for _, t in read_trajectories(str(trajs))}
    assert len(ds) == len(labels) == len(by_id) == len(expert)
    seen = dict.fromkeys(LABEL_CODES, 0)
    for index, doc in enumerate(meta["documents"]):
        traj, tokens, codes = by_id[doc["id"]], ds.document(index)[0], np.array(labels[index])
        assert codes.dtype == np.uint8 and codes.shape == tokens.shape
        runs = _runs(codes)
        steps = [m for m in traj.messages if m["role"] == "assistant" and not m.get("is_demo")]
        assert len(runs) == len(steps) == len(expert[traj.id]["steps"])
        for (start, end, code), msg, lab in zip(runs, steps, expert[traj.id]["steps"]):
            assert NAMES[code] == lab["label"], (traj.id, lab["step"])
            text = tokenizer.decode(tokens[start:end], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            assert text == expected_step_text(msg, "tools"), (traj.id, lab["step"])
            seen[NAMES[code]] += end - start
    assert meta["counts"]["label_tokens"] == {**seen, "context": int(meta["counts"]["tokens"]) - sum(seen.values())}
    assert all(seen[name] for name in ("good", "unnecessary", "harmful", "recover"))  # the examples hold every kind


def test_unlabelled_steps_and_cut_documents_keep_the_channel_aligned(examples):
    d, trajs, _ = examples
    prefix = d / "cut"
    srft("preprocess", "--trajectories", trajs, "--policy", "naive", "--seq-length", 2048, "--overlong", "cut",
         "--output-prefix", prefix, "--quiet")
    ds, labels, meta = open_dataset(prefix), open_labels(prefix), read_meta(prefix)
    assert meta["counts"]["truncated"] > 0  # some examples are cut: the channel must be cut with them
    for index in range(len(ds)):
        tokens, weights = ds.document(index)
        codes = np.array(labels[index])
        assert codes.shape == tokens.shape
        assert set(np.unique(codes)) == {LABEL_CODES["context"], LABEL_CODES["unlabelled"]}
        if meta["documents"][index]["steps_cut"]:  # a cut document ends with its last step's <|im_end|>
            assert codes[-1] == LABEL_CODES["unlabelled"]
        np.testing.assert_array_equal(weights > 0, codes == LABEL_CODES["unlabelled"])  # naive trains every step


def test_a_dataset_without_the_channel_stays_readable_and_open_labels_says_why(tmp_path):
    prefix = tmp_path / "old"
    with DatasetWriter(prefix, with_labels=True) as writer:
        writer.add(np.array([1, 2, 3], dtype=np.int32), np.array([0, 1, 1], dtype=np.float32),
                   np.array([0, 1, 1], dtype=np.uint8))
        labelled = writer.commit({})
    assert labelled["counts"]["label_tokens"]["good"] == 2 and np.array(open_labels(prefix)[0]).tolist() == [0, 1, 1]
    with DatasetWriter(prefix) as writer:  # rewritten without labels from the old metadata (test_overfit does)
        writer.add(np.array([1, 2, 3], dtype=np.int32), np.array([0, 1, 1], dtype=np.float32))
        writer.commit(labelled)
    assert len(open_dataset(prefix)) == 1 and "label_codes" not in read_meta(prefix)
    assert not (tmp_path / "old_labels.bin").exists()  # no stale channel beside the new dataset
    with pytest.raises(ValueError, match="no label channel"):
        open_labels(prefix)
    with DatasetWriter(tmp_path / "bad", with_labels=True) as writer, pytest.raises(ValueError, match="label codes"):
        writer.add(np.array([1, 2], dtype=np.int32), np.zeros(2, np.float32), np.array([0, 9], dtype=np.uint8))
