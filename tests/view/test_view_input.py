"""`srft view` on awkward input: ids that are not file names, bad bytes and odd lines."""

from __future__ import annotations

import json

from srft_megatron.view import file_stem
from tests.data.conftest import srft, write_jsonl


def _traj(tid):
    return {"id": tid, "messages": [{"role": "user", "content": f"task {tid[:20]}"},
                                    {"role": "assistant", "content": "done"}]}


def _labels(path, ids):
    return write_jsonl(path, [{"id": tid, "steps": [{"step": 1, "label": "good"}]} for tid in ids])


IDS = ["a/b", "a_b", "A_b", "a_B", "x" * 300, "x" * 299 + "y", "run-1/django__django-11099", "../etc/passwd",
       "plain-id_1.2", ".hidden"]


def test_page_names_are_unique_bounded_and_plain_ids_keep_theirs():
    names = [file_stem(tid) for tid in IDS]
    assert len({n.lower() for n in names}) == len(IDS)  # unique, even on a case-insensitive file system
    assert all(0 < len(n) <= 100 and "/" not in n and not n.startswith(".") for n in names)
    assert file_stem("plain-id_1.2") == "plain-id_1.2" and file_stem("a_b") == "a_b"
    assert file_stem("a/b").startswith("a_b~") and file_stem("a/b") == file_stem("a/b")  # stable


def test_output_dir_writes_one_page_per_id(tmp_path):
    ids = IDS[:6]
    src = write_jsonl(tmp_path / "t.jsonl", [_traj(t) for t in ids])
    out = tmp_path / "pages"
    proc = srft("view", src, _labels(tmp_path / "l.jsonl", ids), "--output-dir", out, "--policy", "naive", "--quiet")
    pages = sorted(p.name for p in out.iterdir())
    assert len(pages) == len(ids) + 1 and f"and {len(ids)} pages" in proc.stdout
    index = (out / "index.html").read_text()
    for tid in ids:
        page = out / f"{file_stem(tid)}.html"
        assert f'href="{page.name}"' in index and json.dumps(tid)[1:-1][:50] in page.read_text()


def test_bad_bytes_and_odd_lines_are_rejected_and_the_rest_shown(tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_bytes(json.dumps(_traj("good")).encode() + b"\n" + b'{"id": "bin\xff"}\n' + b"[1, 2]\n"
                    + json.dumps(_traj("other")).encode() + b"\n" + json.dumps(_traj("good")).encode() + b"\n")
    labels = tmp_path / "l.jsonl"
    labels.write_bytes(b"".join(json.dumps({"id": t, "steps": [{"step": 1, "label": "good"}]}).encode() + b"\n"
                                for t in ("good", "other")) + b"\xc3(\n" + b'"just a string"\n')
    resolved = tmp_path / "r.jsonl"
    resolved.write_bytes(b'{"id": "good", "resolved": true}\n{"id": 3}\n')
    out = tmp_path / "v.html"
    proc = srft("view", src, labels, "-o", out, "--policy", "naive", "--resolved", resolved, "--quiet")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("rejected: ")]
    assert [line.split(": ")[1] for line in lines] == \
        [f"{resolved}:2", f"{src}:2", f"{src}:3", f"{src}:5, trajectory good", f"{labels}:3", f"{labels}:4"]
    assert "invalid UTF-8" in lines[1] and "not a JSON object (got list)" in lines[2]
    assert "duplicate trajectory id" in lines[3] and "invalid UTF-8" in lines[4]
    assert "2 trajectories" in proc.stdout and "rejected 6 bad records" in proc.stdout
    page = out.read_text()
    assert 'data-id="good"' in page and 'data-id="other"' in page
    strict = srft("view", src, labels, "-o", tmp_path / "s.html", "--policy", "naive", "--strict", check=False)
    assert strict.returncode == 2 and f"{src}:2" in strict.stderr and not (tmp_path / "s.html").exists()
