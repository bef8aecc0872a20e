"""bench/gpu.sh: an OUT it cannot write is one line before anything runs (a lent GPU's minutes are few)."""
import os
import subprocess

from tests.helpers import ROOT, read_only


def gpu_sh(out, tmp_path):
    env = {**os.environ, "OUT": str(out), "TMPDIR": str(tmp_path)}
    return subprocess.run(["bash", "bench/gpu.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_an_out_that_is_a_file_is_one_line_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    proc = gpu_sh(out, tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: OUT={out} is not a folder that can be written; set OUT to a writable "
                                        f"folder (or leave it unset)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no data, wheels or scratch generated


def test_a_read_only_out_is_one_line_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        proc = gpu_sh(out, tmp_path)
        assert list(out.iterdir()) == []
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "is not a folder that can be written" in (
        proc.stderr)
