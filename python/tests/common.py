"""Shared by the Python tests: the repository's paths, the shared test model, the CLI binary, and a
small corpus sampled from stories260K (once per test process)."""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
REPO = os.path.dirname(PYDIR)
sys.path.insert(0, PYDIR)

import cterp  # noqa: E402

CLI = os.environ.get("CTERP_BIN") or os.path.join(REPO, "build", "cterp")


def testdata():
    for d in (os.environ.get("CTERP_TESTDATA"), os.environ.get("CTERP_DEFAULT_TESTDATA"),
              os.path.join(REPO, "..", "shared", "testdata")):
        if d and os.path.exists(os.path.join(d, "models", "stories260K.gguf")):
            return os.path.abspath(d)
    return None


TESTDATA = testdata()
MODEL = os.path.join(TESTDATA, "models", "stories260K.gguf") if TESTDATA else None


def need_model(tc):
    if MODEL is None:
        raise unittest.SkipTest("shared test data not found (set CTERP_TESTDATA)")


def cli(*args, check=True):
    r = subprocess.run([CLI] + [str(a) for a in args], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")))
    if check and r.returncode != 0:
        raise AssertionError("cterp %s failed (%d): %s" % (" ".join(map(str, args)), r.returncode,
                                                           r.stderr))
    return r


_corpus = None


def corpus():
    """Ten sampled stories, one per line (as tests/cli_dashboard.sh makes them)."""
    global _corpus
    if _corpus is None:
        d = tempfile.mkdtemp(prefix="cterp_pytest_")
        atexit.register(shutil.rmtree, d, True)
        _corpus = os.path.join(d, "s.txt")
        m = cterp.InterpretableModel(MODEL)
        with open(_corpus, "w") as f:
            for i in range(1, 11):
                f.write(" ".join(m.generate("", 100, temperature=1.0, seed=i).splitlines()) + "\n")
    return _corpus
