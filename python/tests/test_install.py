"""The package in a fresh venv (Debian's numpy through --system-site-packages), installed by pip
offline from a copy of python/, and the seed-flow example run from the source tree."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from common import MODEL, PYDIR, cterp, need_model


class TestInstall(unittest.TestCase):
    def test_pip_install_into_a_venv(self):
        if subprocess.run([sys.executable, "-c", "import venv, ensurepip"],
                          capture_output=True).returncode:
            self.skipTest("python3-venv is not installed")
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "src")
            shutil.copytree(PYDIR, src, ignore=shutil.ignore_patterns(
                "build", "*.egg-info", "__pycache__", "libcterp.so", "tests"))
            venv = os.path.join(d, "venv")
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                           check=True)
            py = os.path.join(venv, "bin", "python")
            env = dict(os.environ, CTERP_LIB=cterp.library_path, PIP_NO_INDEX="1")
            r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-build-isolation",
                                "--no-deps", src], env=env, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            env.pop("CTERP_LIB")
            env.pop("PYTHONPATH", None)
            code = ("import cterp, numpy as np, sys; p = cterp.library_path; "
                    "assert p.startswith(sys.prefix), p; "
                    "s = cterp.SAE.create(8, 16, 'topk', k=2); "
                    "print(s.encode(np.ones((1, 8), np.float32)).shape)")
            r = subprocess.run([py, "-c", code], env=env, capture_output=True, text=True, cwd=d)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.strip(), "(1, 16)")


class TestExamples(unittest.TestCase):
    def test_seed_flow(self):
        need_model(self)
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, PYTHONPATH=PYDIR)
            r = subprocess.run([sys.executable, os.path.join(PYDIR, "examples", "seed_flow.py"),
                                MODEL, d], env=env, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            for want in ("top features:", "steered:", "dashboard:"):
                self.assertIn(want, r.stdout)
            self.assertTrue(os.path.exists(os.path.join(d, "dashboard", "index.html")))
            self.assertTrue(os.path.exists(os.path.join(d, "sae", "cfg.json")))


if __name__ == "__main__":
    unittest.main()
