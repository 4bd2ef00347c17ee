"""InterpretableModel on stories260K: trace and its aliases, train_sae bit-identical to the CLI
(and each side loads the other's SAE), top features / texts, generate and steering against the
CLI, features/dashboard writing the CLI's files, errors naming the thing."""
import json
import os
import shutil
import tempfile
import unittest

import numpy as np

from common import MODEL, cli, corpus, need_model
import cterp
from cterp import CterpError, SAE, SAEConfig

TRAIN_FLAGS = ["--context-size", 32, "--d-sae", 256, "--k", 8, "--batch", 128, "--steps", 60,
               "--log-every", 10, "--buffer-rows", 1024, "--seed", 5]


def lines(path):
    with open(path) as f:
        return f.read().splitlines()


class TestModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need_model(cls)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.d = cls.tmp.name
        cls.data = corpus()
        cls.m = cterp.InterpretableModel(MODEL)
        cls.cfg = SAEConfig(d_sae=256, k=8, batch_size=128, training_steps=60, log_every=10,
                            seed=5)
        cls.sae_dir = os.path.join(cls.d, "py_sae")
        cls.sae = cls.m.train_sae(2, cls.data, component="resid", save_path=cls.sae_dir,
                                  config=cls.cfg, verbose=False, context_size=32,
                                  buffer_rows=1024)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_config_and_hooks(self):
        c = self.m.config
        self.assertEqual((c["arch"], c["n_layers"], c["d_model"], c["n_vocab"]),
                         ("llama", 5, 64, 512))
        self.assertIn("blocks.4.hook_mlp_out", self.m.hook_points)
        self.assertEqual(self.m.hook_name(3, "mlp"), "blocks.3.hook_mlp_out")
        self.assertEqual(self.m.hook_name(3, "residual"), "blocks.3.hook_resid_post")
        self.assertEqual(cterp.hook_alias("model.model.layers.12.mlp"), "blocks.12.hook_mlp_out")
        self.assertEqual(cterp.hook_alias("layers.2.self_attn"), "blocks.2.hook_attn_out")
        self.assertEqual(cterp.hook_alias("model.layers.2"), "blocks.2.hook_resid_post")

    def test_trace(self):
        texts = ["Once upon a time", "The cat sat on the mat and looked around"]
        with self.m.trace(texts) as tr:
            a = tr.activations
            self.assertEqual(a["blocks.1.hook_mlp_out"].shape, (2, tr.tokens.shape[1], 64))
            self.assertIs(a["model.model.layers.1.mlp"], a["blocks.1.hook_mlp_out"])
            self.assertIn("layers.0.self_attn", a)
            self.assertEqual(a["blocks.0.attn.hook_pattern"].shape[:2], (2, 8))
            self.assertEqual(tr.logits.shape, (2, tr.tokens.shape[1], 512))
        # padding changes nothing before it: text 0 alone gives the same values
        with self.m.trace(texts[0]) as t0:
            n = t0.lengths[0]
            # (a batch of 2 runs other GEMM shapes: equal to rounding)
            np.testing.assert_allclose(t0.activations["blocks.1.hook_mlp_out"][0],
                                       a["blocks.1.hook_mlp_out"][0, :n], rtol=1e-4, atol=1e-5)
        self.assertEqual(tr.lengths.tolist(), [len(self.m.encode(t)) for t in texts])
        with self.assertRaisesRegex(KeyError, "blocks.9.hook_mlp_out"):
            a["blocks.9.hook_mlp_out"]
        with self.assertRaisesRegex(CterpError, "nonsense"):
            self.m.trace("hi", hooks=["blocks.0.nonsense"])

    def test_train_sae_same_as_cli(self):
        out = os.path.join(self.d, "cli_sae")
        cli("train", "--model", MODEL, "--layer", 2, "--component", "resid", "--data", self.data,
            *TRAIN_FLAGS, "--quiet", "--eval-windows", 0, "--out", out)
        ref = SAE.load_from_disk(out)  # the package loads the CLI's SAE
        for n in ("W_enc", "W_dec", "b_enc", "b_dec"):
            self.assertTrue(np.array_equal(getattr(self.sae, n), getattr(ref, n)), n)
        self.assertEqual(self.sae.cfg.hook_name, "blocks.2.hook_resid_post")
        self.assertEqual(ref.cfg.metadata.context_size, 32)
        self.assertTrue(os.path.exists(os.path.join(self.sae_dir, "metrics.jsonl")))

    def test_train_transcoder_same_as_cli(self):
        # the MLP at layer 1 from one forward: the weights of cterp train --arch transcoder
        cfg = SAEConfig(architecture="transcoder", d_sae=128, batch_size=128, training_steps=60,
                        log_every=10, seed=5)
        out = os.path.join(self.d, "py_tc")
        tc = self.m.train_transcoder(1, self.data, save_path=out, config=cfg, verbose=False,
                                     context_size=32, buffer_rows=1024)
        ref_dir = os.path.join(self.d, "cli_tc")
        cli("train", "--model", MODEL, "--arch", "transcoder", "--layer", 1, "--component", "mlp",
            "--data", self.data, "--context-size", 32, "--d-sae", 128, "--batch", 128, "--steps",
            60, "--buffer-rows", 1024, "--seed", 5, "--quiet", "--eval-windows", 0, "--out",
            ref_dir)
        ref = SAE.load_from_disk(ref_dir)
        for n in ("W_enc", "W_dec", "b_enc", "b_dec"):
            self.assertTrue(np.array_equal(getattr(tc, n), getattr(ref, n)), n)
        with open(os.path.join(out, "cfg.json")) as f:
            c = json.load(f)
        self.assertEqual(c["hook_name_out"], "blocks.1.hook_mlp_out")
        self.assertEqual(c["metadata"]["hook_name"], "blocks.1.ln2.hook_normalized")
        with self.assertRaises(cterp.CterpError):
            self.m.train_transcoder(1, self.data, config=SAEConfig(architecture="topk"))
        with self.assertRaises(cterp.CterpError):
            self.m.train_transcoder(1, self.data, config=cfg, hook_in="blocks.1.hook_resid_mid")

    def test_train_crosscoder_same_as_cli(self):
        # layers 1-3 of the residual stream side by side: the weights of cterp train --arch
        # crosscoder --layers 1-3 --component resid
        cfg = SAEConfig(architecture="crosscoder", d_sae=128, batch_size=128, training_steps=40,
                        log_every=10, seed=5, l1_coefficient=0.5)
        out = os.path.join(self.d, "py_xc")
        seen = []
        xc = self.m.train_crosscoder(layers="1-3", dataset=self.data, save_path=out, config=cfg,
                                     verbose=False, context_size=32, buffer_rows=1024,
                                     callback=lambda m: seen.append(m["step"]))
        self.assertEqual(seen, [10, 20, 30, 40])
        ref_dir = os.path.join(self.d, "cli_xc")
        cli("train", "--model", MODEL, "--arch", "crosscoder", "--layers", "1-3", "--component",
            "resid", "--data", self.data, "--context-size", 32, "--d-sae", 128, "--batch", 128,
            "--steps", 40, "--l1-coefficient", 0.5, "--buffer-rows", 1024, "--seed", 5,
            "--quiet", "--eval-windows", 0, "--out", ref_dir)
        ref = SAE.load_from_disk(ref_dir)
        loaded = SAE.load_from_disk(out)  # the package's directory loads as a crosscoder
        self.assertEqual((loaded.architecture, loaded.d_in, loaded.d_sae), ("crosscoder", 192, 128))
        for n in ("W_enc", "W_dec", "b_enc", "b_dec"):
            self.assertTrue(np.array_equal(getattr(xc, n), getattr(ref, n)), n)
            self.assertTrue(np.array_equal(getattr(loaded, n), getattr(ref, n)), n)
        with open(os.path.join(out, "cfg.json")) as f:
            c = json.load(f)
        self.assertEqual((c["n_layers"], c["d_in"]), (3, 64))
        self.assertEqual(c["hook_names"], ["blocks.%d.hook_resid_post" % l for l in (1, 2, 3)])
        self.assertTrue(os.path.exists(os.path.join(out, "metrics.jsonl")))
        with self.assertRaisesRegex(CterpError, "architecture 'topk': expected crosscoder"):
            self.m.train_crosscoder([1, 2], self.data, config=SAEConfig(architecture="topk"))
        with self.assertRaisesRegex(CterpError, "two or more layers"):
            self.m.train_crosscoder([1], self.data, config=cfg)
        with self.assertRaisesRegex(CterpError, "not both"):
            self.m.train_crosscoder([1, 2], self.data, config=cfg, hooks=["blocks.1.hook_mlp_out"])
        with self.assertRaisesRegex(CterpError, "given twice"):
            self.m.train_crosscoder(hooks=["blocks.1.hook_mlp_out", "blocks.1.hook_mlp_out"],
                                    dataset=self.data, config=cfg)
        with self.assertRaisesRegex(CterpError, "layers '1-x'"):
            self.m.train_crosscoder("1-x", self.data, config=cfg)

    def test_train_saes_one_forward(self):
        # two hooks from one forward, the second with its own d_sae: each SAE is the one trained
        # alone (hook 0: the class's train_sae; hook 1: the CLI's --hook run)
        cfg1 = SAEConfig(d_sae=128, k=8, batch_size=128, training_steps=60, log_every=10, seed=5)
        out = os.path.join(self.d, "py_saes")
        saes = self.m.train_saes(["blocks.2.hook_resid_post", "blocks.1.hook_mlp_out"], self.data,
                                 save_dir=out, config=[self.cfg, cfg1], verbose=False,
                                 context_size=32, buffer_rows=1024)
        alone = os.path.join(self.d, "cli_mlp1")
        cli("train", "--model", MODEL, "--hook", "blocks.1.hook_mlp_out", "--data", self.data,
            *TRAIN_FLAGS[:2], "--d-sae", 128, *TRAIN_FLAGS[4:], "--quiet", "--eval-windows", 0,
            "--out", alone)
        ref = SAE.load_from_disk(alone)
        for n in ("W_enc", "W_dec", "b_enc", "b_dec"):
            self.assertTrue(np.array_equal(getattr(saes[0], n), getattr(self.sae, n)), n)
            self.assertTrue(np.array_equal(getattr(saes[1], n), getattr(ref, n)), n)
        self.assertEqual(SAE.load_from_disk(os.path.join(out, "blocks.1.hook_mlp_out")).d_sae, 128)
        with self.assertRaisesRegex(CterpError, "batch_size"):
            self.m.train_saes(["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"], self.data,
                              config=[self.cfg, SAEConfig(batch_size=64)], verbose=False)
        with self.assertRaisesRegex(CterpError, "given twice"):
            self.m.train_saes(["blocks.0.hook_resid_post", "blocks.0.hook_resid_post"], self.data,
                              config=self.cfg, verbose=False)

    def test_cli_loads_the_package_sae(self):
        r = cli("features", "--model", MODEL, "--sae", self.sae_dir, "--text", "Once upon a time")
        self.assertIn("blocks.2.hook_resid_post", r.stdout)

    def test_texts_as_a_list_and_interrupt(self):
        texts = lines(self.data)
        steps = []

        def cb(m):
            steps.append(m["step"])
            if m["step"] == 2:
                raise KeyboardInterrupt

        sae = self.m.train_sae(1, texts, "mlp", config=SAEConfig(
            d_sae=128, k=4, batch_size=64, training_steps=10, log_every=1), verbose=False,
            callback=cb, context_size=32, buffer_rows=512)
        self.assertTrue(sae.interrupted)
        self.assertEqual(steps, [1, 2])
        self.assertTrue(os.path.isdir(sae.checkpoint))
        self.assertEqual(sae.hook_name, "blocks.1.hook_mlp_out")
        # without save_path the checkpoint went to a temporary directory: remove it
        shutil.rmtree(os.path.dirname(os.path.dirname(sae.checkpoint)))

    def test_top_features_for_text(self):
        text = "Once upon a time there was a little girl"
        top = self.m.get_top_features_for_text(text, self.sae, top_k=5)
        self.assertEqual(len(top), 5)
        self.assertTrue(all(top[i][1] >= top[i + 1][1] for i in range(4)))
        r = cli("features", "--model", MODEL, "--sae", self.sae_dir, "--text", text, "--top", 5)
        rows = [l.split() for l in r.stdout.splitlines()[2:7]]
        self.assertEqual([int(x[0]) for x in rows], [f for f, _ in top])
        self.assertEqual(self.m.get_top_features_for_text(text, self.sae_dir, layer=2,
                                                          component="resid", top_k=5), top)
        html = self.m.visualize_feature_activations(text, self.sae, top[0][0])._repr_html_()
        self.assertIn("latent %d" % top[0][0], html)
        self.assertIn("<span", html)

    def test_top_texts_for_feature(self):
        texts = lines(self.data)[:5] + ["The dog ran.", "Hello"]
        f = self.m.get_top_features_for_text(texts[0], self.sae, top_k=1)[0][0]
        top = self.m.get_top_texts_for_feature(f, self.sae, texts, top_k=3)
        self.assertTrue(1 <= len(top) <= 3)
        self.assertTrue(all(t in texts for t, _, _ in top))
        self.assertTrue(all(top[i][1] >= top[i + 1][1] for i in range(len(top) - 1)))
        with self.assertRaisesRegex(CterpError, "feature 9999"):
            self.m.get_top_texts_for_feature(9999, self.sae, texts)

    def test_generate_and_steer_like_the_cli(self):
        p = "Once upon a time"
        plain = self.m.generate(p, 30)
        self.assertTrue(plain.startswith(p))
        steered = self.m.generate(p, 30, steer={3: 8.0}, sae=self.sae)
        r = cli("steer", "--model", MODEL, "--sae", self.sae_dir, "--feature", 3, "--strength", 8,
                "--prompt", p, "-n", 30)
        without, with_ = r.stdout.split("--- without ---\n")[1].split("\n--- with ---\n")
        self.assertEqual(plain, without)
        self.assertEqual(steered, with_.rstrip("\n"))
        ab = self.m.generate(p, 30, ablate=[3], sae=self.sae)
        r = cli("steer", "--model", MODEL, "--sae", self.sae_dir, "--feature", 3, "--ablate",
                "--prompt", p, "-n", 30)
        self.assertEqual(ab, r.stdout.split("\n--- with ---\n")[1].rstrip("\n"))
        with self.assertRaisesRegex(CterpError, "feature 99999"):
            self.m.generate(p, 5, steer={99999: 1.0}, sae=self.sae)

    def test_features_and_dashboard_write_the_cli_files(self):
        out = os.path.join(self.d, "feats")
        cterp.features(self.m, self.sae_dir, self.data, out)
        ref = os.path.join(self.d, "feats_cli")
        cli("features", "--model", MODEL, "--sae", self.sae_dir, "--data", self.data, "--out", ref)
        for f in ("features.json", "latents.jsonl"):
            with open(os.path.join(out, f)) as a, open(os.path.join(ref, f)) as b:
                self.assertEqual(a.read(), b.read(), f)
        dash = os.path.join(self.d, "dash")
        idx = cterp.dashboard(dash, model=MODEL, sae=self.sae_dir, data=self.data)
        self.assertTrue(os.path.exists(idx))
        self.assertTrue(os.path.exists(os.path.join(dash, "training.html")))
        self.assertTrue(os.path.exists(os.path.join(dash, "f", "0.html")))
        cterp.dashboard(os.path.join(self.d, "dash2"), features_dir=out)
        with open(os.path.join(dash, "features", "features.json")) as f:
            h = json.load(f)
        self.assertEqual(h["d_sae"], 256)

    def test_errors_name_the_thing(self):
        with self.assertRaisesRegex(CterpError, "/no/such/model.gguf"):
            cterp.InterpretableModel("/no/such/model.gguf")
        with self.assertRaisesRegex(CterpError, "blocks.7.hook_mlp_out"):
            self.m.train_sae(7, self.data, config=self.cfg, verbose=False)
        with self.assertRaisesRegex(CterpError, "component"):
            self.m.hook_name(1, "nonsense")
        with self.assertRaisesRegex(CterpError, "/no/such/data.txt"):
            self.m.train_sae(1, "/no/such/data.txt", config=self.cfg, verbose=False)
        with self.assertRaisesRegex(CterpError, "d_sae|k"):
            self.m.train_sae(1, self.data, config=SAEConfig(d_sae=4, k=8), verbose=False)

    def test_no_leak_over_100_model_cycles(self):
        from test_sae import rss_kb
        import gc
        for _ in range(5):
            cterp.InterpretableModel(MODEL).close()
        gc.collect()
        r0 = rss_kb()
        for _ in range(100):
            m = cterp.InterpretableModel(MODEL)
            with m.trace("Once upon a time", hooks=["blocks.0.hook_mlp_out"]):
                pass
            del m
        gc.collect()
        self.assertLess(rss_kb() - r0, 16 * 1024)


if __name__ == "__main__":
    unittest.main()
