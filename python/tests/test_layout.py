"""The ctypes structs of cterp/_lib.py against the C headers: every size and field offset, from a
small C program compiled here (skips without a C compiler)."""
import ctypes
import os
import shutil
import subprocess
import tempfile
import unittest

from common import REPO
from cterp import _lib

STRUCTS = {"SaeMeta": "cterp_sae_meta", "Sae": "cterp_sae", "TrainConfig": "cterp_train_config",
           "TrainMetrics": "cterp_train_metrics", "WindowConfig": "cterp_window_config",
           "DatasetOpts": "cterp_dataset_opts", "StoreConfig": "cterp_store_config",
           "ActSource": "cterp_act_source", "ModelConfig": "cterp_model_config",
           "Hook": "cterp_hook", "ForwardOpts": "cterp_forward_opts",
           "SamplerParams": "cterp_sampler_params", "Steer": "cterp_steer",
           "FeaturesConfig": "cterp_features_config", "DashboardOpts": "cterp_dashboard_opts",
           "ToyConfig": "cterp_toy_config"}


class TestLayout(unittest.TestCase):
    def test_structs_match_the_headers(self):
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            self.skipTest("no C compiler")
        lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "cterp/cterp.h"',
                 'int main(void) {']
        expect = []
        for py, c in STRUCTS.items():
            st = getattr(_lib, py)
            lines.append('printf("%%zu\\n", sizeof(%s));' % c)
            expect.append(("%s size" % c, ctypes.sizeof(st)))
            for f, _ in st._fields_:
                lines.append('printf("%%zu\\n", offsetof(%s, %s));' % (c, f))
                expect.append(("%s.%s" % (c, f), getattr(st, f).offset))
        lines.append("return 0; }")
        with tempfile.TemporaryDirectory() as d:
            src, exe = os.path.join(d, "l.c"), os.path.join(d, "l")
            with open(src, "w") as f:
                f.write("\n".join(lines))
            subprocess.run([cc, "-std=c11", "-I", os.path.join(REPO, "include"), src, "-o", exe],
                           check=True)
            got = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.split()
        self.assertEqual(len(got), len(expect))
        for (what, want), g in zip(expect, got):
            self.assertEqual(int(g), want, "%s: C says %s, ctypes %d" % (what, g, want))


if __name__ == "__main__":
    unittest.main()
