"""Every hostile input: a one-line error naming the file, a documented exit code, no traceback,
nothing executed, nothing written."""
import subprocess
import sys

import pytest

from provenance.cli import main

from .hostile_corpus import CASES


def test_corpus_is_large_and_distinct():
    names = [c[0] for c in CASES]
    assert len(names) >= 30 and len(set(names)) == len(names)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_gets_one_line_and_exit_code(case, tmp_path, capsys):
    name, builder, code, fragment, command = case
    model_dir = tmp_path / "input"
    model_dir.mkdir()
    target = builder(model_dir)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = ["--quiet", command, str(target)] + (["-o", str(tmp_path / "out" / "fp.safetensors")] if command == "fingerprint" else [])
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == code, err
    assert err.count("\n") == 1 and err.startswith("provenance: error: "), err
    assert "Traceback" not in err
    assert fragment in err, err
    assert not (model_dir / "CODE_RAN").exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written, not even a partial output


def test_pickle_payload_never_runs_in_a_real_process(tmp_path):
    from .hostile_corpus import _pickle_code, _torch_zip_code
    for builder in (_pickle_code, _torch_zip_code):
        d = tmp_path / builder.__name__
        d.mkdir()
        path = builder(d)
        result = subprocess.run([sys.executable, "-m", "provenance.cli", "inspect", str(path)], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 5 and "Traceback" not in result.stderr
        assert not (d / "CODE_RAN").exists()
