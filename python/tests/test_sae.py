"""SAE, SAEConfig, Toy and cterp.train: bit-identical to the CLI on the toy, weights as views,
inputs checked, errors as CterpError naming the thing, no leak over 100 create/free cycles."""
import gc
import os
import signal
import tempfile
import unittest

import numpy as np

from common import cli
import cterp
from cterp import CterpError, SAE, SAEConfig


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class TestToy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.d = cls.tmp.name
        cls.cfg = SAEConfig(d_sae=256, k=4, batch_size=256, training_steps=40, log_every=10,
                            seed=3)
        cls.sae = cterp.train(cterp.Toy(), cls.cfg, save_path=os.path.join(cls.d, "py"),
                              verbose=False)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_same_weights_as_the_cli(self):
        cli("train", "--toy", "--d-sae", 256, "--k", 4, "--batch", 256, "--steps", 40,
            "--log-every", 10, "--seed", 3, "--quiet", "--out", os.path.join(self.d, "cli"))
        ref = SAE.load_from_disk(os.path.join(self.d, "cli"))
        for n in ("W_enc", "W_dec", "b_enc", "b_dec"):
            self.assertTrue(np.array_equal(getattr(self.sae, n), getattr(ref, n)), n)
        with open(os.path.join(self.d, "cli", "sae_weights.safetensors"), "rb") as a, \
                open(os.path.join(self.d, "py", "sae_weights.safetensors"), "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_mmcs_and_metrics(self):
        toy = cterp.Toy()
        rec, prec = toy.mmcs(self.sae)
        self.assertTrue(0 < rec <= 1 and 0 < prec <= 1)
        self.assertEqual(self.sae.metrics["step"], 40)
        x = toy.sample(64, batch=7)
        self.assertEqual(x.shape, (64, 128))

    def test_from_numpy(self):
        x = cterp.Toy().sample(4096)
        sae = cterp.train(x, SAEConfig(d_sae=128, k=4, batch_size=256, training_steps=10),
                          verbose=False)
        self.assertEqual((sae.d_in, sae.d_sae), (128, 128))
        with self.assertRaisesRegex(CterpError, "float32"):
            cterp.train(x.astype(np.float64), verbose=False)

    def test_callback_and_interrupt(self):
        seen = []

        def cb(m):
            seen.append(m["step"])
            if m["step"] == 20:
                signal.raise_signal(signal.SIGINT)  # Ctrl-C: Python raises KeyboardInterrupt

        # Python turns SIGINT into KeyboardInterrupt only where it started with SIGINT at its
        # default; a job started in the background by a non-interactive shell (`cmd &`) inherits
        # it ignored, so the test installs Python's handler itself
        old = signal.signal(signal.SIGINT, signal.default_int_handler)
        d = os.path.join(self.d, "intr")
        try:
            sae = cterp.train(cterp.Toy(), SAEConfig(d_sae=128, k=4, batch_size=128,
                                                     training_steps=100, log_every=10),
                              save_path=d, verbose=False, callback=cb)
        finally:
            signal.signal(signal.SIGINT, old)
        self.assertEqual(seen, [10, 20])
        self.assertTrue(sae.interrupted)
        self.assertEqual(sae.metrics["step"], 20)
        self.assertTrue(os.path.exists(os.path.join(sae.checkpoint, "trainer_state.safetensors")))
        self.assertEqual(sae.checkpoint, os.path.join(d, "checkpoints", "step_20"))
        SAE.load_from_disk(d)  # the SAE so far is saved too
        # the CLI resumes the checkpoint
        cli("train", "--toy", "--resume", sae.checkpoint, "--quiet", "--out",
            os.path.join(self.d, "resumed"))


class TestSAE(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = self.tmp.name
        rng = np.random.default_rng(0)
        self.sae = SAE.create(16, 64, "topk", k=4)
        self.sae.W_dec[:] = rng.standard_normal((64, 16)).astype(np.float32)
        self.sae.W_enc[:] = self.sae.W_dec.T
        self.sae.b_enc[:] = 0.1

    def tearDown(self):
        self.tmp.cleanup()

    def test_views_share_the_c_memory(self):
        W = self.sae.W_enc
        self.assertEqual(W.shape, (16, 64))
        self.assertEqual(self.sae.W_dec.shape, (64, 16))
        self.assertFalse(W.flags.owndata)
        self.assertTrue(np.shares_memory(self.sae.W_enc, self.sae.W_enc))
        x = np.ones((2, 16), dtype=np.float32)
        before = self.sae.encode(x)
        self.sae.b_enc[:] += 100  # writing into the view changes the SAE
        self.assertGreater(self.sae.encode(x).max(), before.max() + 50)
        # a view keeps the SAE alive after the object is dropped
        b_dec = self.sae.b_dec
        del self.sae, W
        gc.collect()
        self.assertEqual(float(b_dec.sum()), 0.0)

    def test_encode_decode_match_numpy(self):
        s = self.sae
        x = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
        z = (x - s.b_dec) @ s.W_enc + s.b_enc
        f = s.encode(x)
        self.assertEqual(f.shape, (5, 64))
        self.assertTrue(((f > 0).sum(1) <= 4).all())
        top = np.argsort(-z, axis=1)[:, :4]
        for r in range(5):
            np.testing.assert_allclose(f[r, top[r]], np.maximum(z[r, top[r]], 0), rtol=1e-5,
                                       atol=1e-5)
        np.testing.assert_allclose(s.decode(f), f @ s.W_dec + s.b_dec, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(s(x), s.decode(f))
        self.assertEqual(s.encode(x.reshape(5, 1, 16)).shape, (5, 1, 64))

    def test_bad_inputs_refused(self):
        with self.assertRaisesRegex(CterpError, "float32.*float64"):
            self.sae.encode(np.zeros((2, 16)))
        with self.assertRaisesRegex(CterpError, r"shape \(B, 16\).*d_in.*\(2, 15\)"):
            self.sae.encode(np.zeros((2, 15), dtype=np.float32))
        with self.assertRaisesRegex(CterpError, "d_sae"):
            self.sae.decode(np.zeros((2, 16), dtype=np.float32))
        with self.assertRaisesRegex(CterpError, "int32"):
            self.sae.decode(np.zeros((2, 64), dtype=np.int32))

    def test_save_load_round_trip(self):
        p = os.path.join(self.d, "s")
        self.sae.save_model(p)
        t = SAE.load_from_disk(p)
        for n in ("W_enc", "W_dec", "b_enc", "b_dec"):
            np.testing.assert_array_equal(getattr(t, n), getattr(self.sae, n))
        self.assertEqual(t.cfg.d_sae, 64)
        self.assertEqual(t.cfg["architecture"], "topk")
        self.assertEqual(t.cfg.k, 4)
        cli("inspect", p)  # the CLI reads what the package wrote

    def test_errors_name_the_thing(self):
        with self.assertRaisesRegex(CterpError, "/nonexistent/sae"):
            SAE.load_from_disk("/nonexistent/sae")
        with self.assertRaisesRegex(CterpError, "architecture.*nope"):
            SAE.create(4, 8, "nope")
        with self.assertRaisesRegex(CterpError, "k"):
            SAE.create(4, 8, "topk", k=99)
        try:
            SAE.load_from_disk(self.d)
        except CterpError as e:
            self.assertNotEqual(e.status, 0)

    def test_no_leak_over_100_cycles(self):
        p = os.path.join(self.d, "s")
        self.sae.save_model(p)
        for _ in range(10):  # warm up the allocator
            SAE.load_from_disk(p)
        gc.collect()
        r0 = rss_kb()
        for _ in range(100):
            s = SAE.create(256, 4096, "topk", k=8)  # 8 MiB of parameters each
            s.encode(np.zeros((4, 256), dtype=np.float32))
            del s
            t = SAE.load_from_disk(p)
            t.W_enc
            del t
        gc.collect()
        self.assertLess(rss_kb() - r0, 16 * 1024, "RSS grew over 100 create/free cycles")


class TestNewArchitectures(unittest.TestCase):
    def test_matryoshka_widths_and_save_as_jumprelu(self):
        c = SAEConfig(architecture="matryoshka_batchtopk", matryoshka_widths=[16, 64], d_sae=128,
                      k=4, batch_size=256, training_steps=20)
        self.assertEqual(c.matryoshka_widths, [16, 64])
        self.assertNotIn("n_matryoshka_widths", c.to_dict())
        with self.assertRaisesRegex(CterpError, "matryoshka_widths.*64 after 64"):
            SAEConfig(architecture="matryoshka_batchtopk", matryoshka_widths="64,64").validate(32)
        with tempfile.TemporaryDirectory() as d:
            sae = cterp.train(cterp.Toy().sample(4096), c, save_path=d, verbose=False)
            self.assertEqual(sae.architecture, "jumprelu")  # as SAELens saves it
            self.assertGreater(sae.metrics["inner_mse_loss"], 0)
            self.assertEqual(SAE.load_from_disk(d).cfg["architecture"], "jumprelu")

    def test_gated_views_round_trip_and_encode(self):
        c = SAEConfig(architecture="gated", d_sae=128, batch_size=256, training_steps=20,
                      l1_coefficient=0.1)
        with tempfile.TemporaryDirectory() as d:
            sae = cterp.train(cterp.Toy().sample(4096), c, save_path=d, verbose=False)
            self.assertEqual(sae.architecture, "gated")
            self.assertEqual(sae.r_mag.shape, (128,))
            self.assertGreater(float(np.abs(sae.r_mag).sum() + np.abs(sae.b_mag).sum()), 0)
            t = SAE.load_from_disk(d)
            for n in ("W_enc", "W_dec", "b_enc", "b_dec", "r_mag", "b_mag"):
                np.testing.assert_array_equal(getattr(t, n), getattr(sae, n))
            self.assertIsNone(t.threshold)
        x = cterp.Toy().sample(16)
        xc = x - sae.b_dec
        gate = xc @ sae.W_enc + sae.b_enc  # b_enc holds b_gate
        mag = xc @ (sae.W_enc * np.exp(sae.r_mag)) + sae.b_mag
        want = np.where((gate > 0) & (mag > 0), mag, 0)
        np.testing.assert_allclose(sae.encode(x), want, rtol=1e-4, atol=1e-5)

    def test_k_anneal(self):
        c = SAEConfig(d_sae=128, k=4, batch_size=256, training_steps=20, log_every=1,
                      k_anneal_steps=12, k_anneal_start=32)
        self.assertEqual((c.k_anneal_steps, c.k_anneal_start), (12, 32))
        # dictionary_learning's int(k_start * (1 - r) + k * r), r = min(step, 12) / 12
        want = [int(32 * (1 - min(s, 12) / 12) + 4 * min(s, 12) / 12) for s in range(20)]
        self.assertEqual([c.k_at(s, 128) for s in range(20)], want)
        seen = []
        with tempfile.TemporaryDirectory() as d:
            sae = cterp.train(cterp.Toy().sample(4096), c, save_path=d, verbose=False,
                              callback=lambda m: seen.append(m["k"]))
            self.assertEqual(seen, want)
            self.assertEqual(SAE.load_from_disk(d).cfg["k"], 4)
        self.assertEqual(sae.metrics["k"], 4)
        with self.assertRaisesRegex(CterpError, r"k_anneal_steps: got 20, expected < the training"):
            SAEConfig(d_sae=128, k=4, training_steps=20, k_anneal_steps=20).validate(32)
        with self.assertRaisesRegex(CterpError, r"k_anneal_start: got 2, expected > k \(4\)"):
            SAEConfig(d_sae=128, k=4, training_steps=20, k_anneal_steps=5,
                      k_anneal_start=2).validate(32)


class TestConfig(unittest.TestCase):
    def test_names(self):
        c = SAEConfig(sae_type="standard", learning_rate=1e-3, lambda_sparse=2.0,
                      warmup_steps=5, gradient_clip=None, normalize_input=True, k=16)
        self.assertEqual(c.architecture, "standard")
        self.assertEqual(c.sae_type, "standard")
        self.assertAlmostEqual(c.lr, 1e-3, places=9)
        self.assertAlmostEqual(c.l1_coefficient, 2.0)
        self.assertEqual(c.lr_warm_up_steps, 5)
        self.assertEqual(c.grad_clip, 0)
        self.assertEqual(c.normalize_activations, 1)
        c.k = 32
        self.assertEqual(c.k, 32)

    def test_presets(self):
        m = SAEConfig.mlxterp()
        self.assertEqual((m.architecture, m.expansion_factor, m.k, m.lr_scheduler,
                          m.use_ghost_grads, m.dead_feature_window),
                         ("topk", 32, 128, "cosine", 1, 5000))
        self.assertAlmostEqual(m.learning_rate, 3e-4)
        self.assertEqual(SAEConfig().batch_size, 2048)
        self.assertEqual(SAEConfig.saelens().architecture, "standard")

    def test_bad_values(self):
        with self.assertRaisesRegex(CterpError, "lr_scheduler.*bogus"):
            SAEConfig(lr_scheduler="bogus")
        with self.assertRaisesRegex(CterpError, "no_such_field"):
            SAEConfig(no_such_field=1)
        with self.assertRaisesRegex(CterpError, "architecture.*crossfoo"):
            SAEConfig(sae_type="crossfoo")
        with self.assertRaisesRegex(CterpError, "num_epochs"):
            SAEConfig(num_epochs=3)
        with self.assertRaisesRegex(CterpError, "k"):
            SAEConfig(k=100000).validate(64)


if __name__ == "__main__":
    unittest.main()
