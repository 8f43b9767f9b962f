"""Batch indexing: inputs from folders and list files, parallel workers, resumable, consistent after a kill, Ray."""
from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from provenance.index import Store, add_many, collect_inputs
from provenance.index.batch import ray_available
from tests.index_fixtures import fingerprint_files

MODELS = ["base-s0", "base-s1", "base-s0-finetune", "base-s0-prune", "base-s1-rotate", "base-s0-upcycle",
          "base-s1-vocab", "base-s0-scratch_vocab"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_tree(zoo, tmp_path_factory):
    """A folder tree of zoo checkpoints (copies: symlinks leaving a model folder are refused) as a user's collection."""
    root = tmp_path_factory.mktemp("collection")
    for k, name in enumerate(MODELS):
        target = root / ("runs" if k % 2 else "released") / name
        target.mkdir(parents=True)
        for f in zoo(name).iterdir():
            shutil.copyfile(f, target / f.name)
    return root


def _rows(db) -> dict:
    """What the index holds, minus when and from where: the same models must give the same rows."""
    con = sqlite3.connect(db)
    rows = {r[0]: r[1:] for r in con.execute(
        "SELECT content_hash, name, role, family, layers, facts, backend, summary, fingerprint_sha256 FROM entries")}
    con.close()
    return rows


def test_collect_inputs_walks_folders_and_list_files(model_tree, tmp_path):
    found = collect_inputs([model_tree])
    assert sorted(Path(p).name for p in found) == sorted(MODELS)
    listing = tmp_path / "models.txt"
    listing.write_text(f"# checkpoints\n{model_tree / 'released' / 'base-s0'}\n\n{model_tree / 'runs' / 'base-s1'}\n")
    assert [Path(p).name for p in collect_inputs([], listing)] == ["base-s0", "base-s1"]


def test_parallel_add_equals_sequential_and_resumes(model_tree, tmp_path):
    items = collect_inputs([model_tree])
    with Store(tmp_path / "seq.db", create=True) as store:
        first = add_many(store, items[:3])
        assert len(first.added) == 3
        again = add_many(store, items)  # a rerun skips what is indexed
        assert sorted(again.skipped) == sorted(items[:3]) and len(again.added) == len(items) - 3
    with Store(tmp_path / "par.db", create=True) as store:
        add_many(store, items, workers=2)
    assert _rows(tmp_path / "seq.db") == _rows(tmp_path / "par.db")


KILL_IN_TRANSACTION = textwrap.dedent("""
    import os, signal, sys
    from provenance.fingerprint import load_fingerprint
    from provenance.index import Store
    store = Store(sys.argv[1], create=True)
    origin = store.origin("local", {"tool": "test"})
    store.add(load_fingerprint(sys.argv[2]), origin_id=origin)
    with store.transaction():
        store.insert(load_fingerprint(sys.argv[3]), origin_id=origin)
        os.kill(os.getpid(), signal.SIGKILL)  # dies between the insert and the commit
""")


def test_a_kill_inside_a_transaction_leaves_the_committed_entries(zoo, tmp_path):
    fps = fingerprint_files(zoo, ["base-s0", "base-s1"], tmp_path / "fps")
    db = tmp_path / "i.db"
    proc = subprocess.run([sys.executable, "-c", KILL_IN_TRANSACTION, str(db), str(fps["base-s0"]), str(fps["base-s1"])],
                          cwd=REPO, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    with Store(db) as store:
        assert store.integrity() == []
        assert [e.name for e in store.entries()] == ["base-s0"]


def _count(db) -> int:
    try:
        con = sqlite3.connect(db, timeout=0.05)
        try:
            return con.execute("SELECT count(*) FROM entries").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_a_killed_cli_run_leaves_a_consistent_index_and_a_rerun_completes_it(model_tree, tmp_path):
    db = tmp_path / "i.db"
    cmd = [sys.executable, "-m", "provenance.cli", "-q", "index", "add", str(model_tree), "--db", str(db)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _count(db) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Store(db) as store:
        assert store.integrity() == []
        done = len(store)
    assert 2 <= done <= len(MODELS)
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(MODELS) - done} added, {done} already indexed" in rerun.stdout
    with Store(db) as store:
        assert len(store) == len(MODELS) and store.integrity() == []


RAY_OK, RAY_WHY = ray_available()


@pytest.mark.skipif(not RAY_OK, reason=RAY_WHY)
def test_ray_builds_the_same_index_as_the_local_path(model_tree, tmp_path):
    items = collect_inputs([model_tree])[:4]
    with Store(tmp_path / "local.db", create=True) as store:
        add_many(store, items, scheduler="local", workers=2)
    with Store(tmp_path / "ray.db", create=True) as store:
        result = add_many(store, items, scheduler="ray", workers=2)
        assert not result.failed, result.failed
    local, ray_rows = _rows(tmp_path / "local.db"), _rows(tmp_path / "ray.db")
    assert len(local) == 4 and local == ray_rows
