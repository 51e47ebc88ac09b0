"""Tests of the Python binding python/agave/ (run by tests/python.sh).

Every figure is checked against the C library's own answer for the same
call, or against a property that a wrong binding breaks: the training
history adds up to the objective, per-image scores to the batch figures,
f(z) depends on z and not on the seed, a folder's names and pixels are the
files', and errors raise agave.Error with the library's message.
"""
import os
import sys
import tempfile
import unittest

import numpy as np

import agave


def images(n, c=1, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 200, 64).reshape(1, 1, 8, 8)
    noise = rng.integers(0, 50, size=(n, c, 8, 8))
    return (base + noise).astype(np.uint8)


def write_pgm(path, px):
    h, w = px.shape
    with open(path, "wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (w, h) + px.astype(np.uint8).tobytes())


class BindingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.x = images(32)
        cls.model = agave.Model.create("tiny", seed=3)
        cls.history = cls.model.train(cls.x, steps=4, batch=8, seed=1)

    def test_version_and_library(self):
        self.assertRegex(agave.version(), r"^\d+\.\d+\.\d+$")
        self.assertTrue(agave.library_path())

    def test_training_history(self):
        h = self.history
        self.assertEqual(self.model.steps, 4)
        self.assertEqual(h["loss_bpd"].shape, (4,))
        self.assertTrue(np.all(np.isfinite(h["loss_bpd"])))
        self.assertFalse(h["rejected"].any())
        # tiny has s = 1: the objective is pixelcnn + aux + lambda * kl.
        lam = self.model.config["lambda"]
        np.testing.assert_allclose(h["loss_bpd"],
                                   h["pixelcnn_bpd"] + h["aux_bpd"] + lam * h["kl_bpd"],
                                   rtol=1e-6)

    def test_config_read_back(self):
        cfg = self.model.config
        self.assertEqual((cfg["C"], cfg["H"], cfg["W"]), (1, 8, 8))
        self.assertEqual(cfg["mode"], "agave")
        m = agave.Model.create("tiny", seed=1, C=3, mode="vae", lr=0.001)
        self.assertEqual(m.shape, (3, 8, 8))
        self.assertEqual(m.config["mode"], "vae")
        self.assertAlmostEqual(m.config["lr"], 0.001, places=9)

    def test_scores_average_to_the_batch_figures(self):
        x = self.x[:6]
        scores = self.model.score(x, samples=3)
        self.assertEqual(scores["elbo_bpd"].shape, (6,))
        self.assertTrue(np.all(np.isfinite(scores["iwae_bpd"])))
        # The ELBO and its two parts: recon + kl = elbo for every image.
        np.testing.assert_allclose(scores["recon_bpd"] + scores["kl_bpd"],
                                   scores["elbo_bpd"], rtol=1e-9, atol=1e-9)
        # Images differ, so their scores do.
        self.assertGreater(np.ptp(scores["elbo_bpd"]), 0)
        # The mean of the ELBO's KL part (analytic, no sampling) is the batch
        # figure the library reports for the same images.
        batch = self.model.evaluate(x, samples=0)
        self.assertAlmostEqual(float(np.mean(scores["kl_bpd"])), batch["kl_bpd"], places=6)

    def test_sample_and_reconstruct(self):
        fz, x = self.model.sample(5, seed=2)
        self.assertEqual(fz.shape, (5, 1, 8, 8))
        self.assertEqual(x.dtype, np.uint8)
        fz2, x2 = self.model.sample(5, seed=2)
        np.testing.assert_array_equal(x, x2)
        fz3, x3 = self.model.sample(5, seed=3)
        self.assertFalse(np.array_equal(x, x3))
        rfz, rx = self.model.reconstruct(self.x[:3], seed=1)
        self.assertEqual(rx.shape, (3, 1, 8, 8))

    def test_encode_decode(self):
        z = self.model.encode(self.x[:4])
        self.assertEqual(z.shape, (4,) + self.model.latent_shape())
        self.assertEqual(z.dtype, np.float32)
        np.testing.assert_array_equal(z, self.model.encode(self.x[:4]))
        # Row i is image i's code (one image at a time: the same to rounding).
        for i in range(4):
            np.testing.assert_allclose(self.model.encode(self.x[i:i + 1])[0], z[i],
                                       rtol=1e-5, atol=1e-5)
        fz, x = self.model.decode(z, seed=1)
        self.assertEqual(fz.shape, (4, 1, 8, 8))
        # f(z) is a function of z alone; the PixelCNN's draws follow the seed.
        fz2, x2 = self.model.decode(z, seed=1)
        np.testing.assert_array_equal(fz, fz2)
        np.testing.assert_array_equal(x, x2)
        fz3, x3 = self.model.decode(z, seed=2)
        np.testing.assert_array_equal(fz, fz3)
        self.assertFalse(np.array_equal(x, x3))
        fz4, _ = self.model.decode(z + 3.0, seed=1)
        self.assertFalse(np.array_equal(fz, fz4))

    def test_errors_carry_the_library_message(self):
        with self.assertRaises(agave.Error) as e:
            agave.Model.load("/nonexistent/model.ckpt")
        self.assertIn("/nonexistent/model.ckpt", str(e.exception))
        self.assertEqual(e.exception.status, 6)   # AGAVE_ERR_IO
        with self.assertRaises(agave.Error) as e:
            agave.Model.create("tiny", F=0)
        self.assertIn("F", str(e.exception))
        with self.assertRaises(agave.Error) as e:
            agave.Model.create("no-such-config")
        with self.assertRaises(ValueError):
            self.model.encode(images(2, c=3))
        with self.assertRaises(TypeError):
            self.model.encode(self.x.astype(np.float32))
        z = np.full((1,) + self.model.latent_shape(), np.nan, np.float32)
        with self.assertRaises(agave.Error) as e:
            self.model.decode(z)
        self.assertIn("not a finite number", str(e.exception))

    def test_save_and_load(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.ckpt")
            self.model.save(path)
            m2 = agave.Model.load(path)
            self.assertEqual(m2.steps, self.model.steps)
            np.testing.assert_array_equal(m2.encode(self.x[:2]), self.model.encode(self.x[:2]))
            np.testing.assert_array_equal(m2.sample(2, seed=4)[1], self.model.sample(2, seed=4)[1])

    def test_dataset_from_a_folder(self):
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "train", "b"))
            os.makedirs(os.path.join(d, "test"))
            px = [np.arange(i, i + 120).reshape(10, 12) % 256 for i in range(3)]
            write_pgm(os.path.join(d, "train", "b", "0.pgm"), px[0])
            write_pgm(os.path.join(d, "train", "a.pgm"), px[1])
            write_pgm(os.path.join(d, "test", "z.pgm"), px[2])
            train = agave.Dataset.open(d, "train")
            self.assertEqual(train.names, ["train/a.pgm", "train/b/0.pgm"])
            np.testing.assert_array_equal(train.images[0, 0], px[1])
            np.testing.assert_array_equal(train.images[1, 0], px[0])
            small = agave.Dataset.open(d, "test", resize=(5, 6))
            self.assertEqual(small.images.shape, (1, 1, 5, 6))
            # Halving both sides: 2x2 block means, rounded half up.
            want = (px[2].reshape(5, 2, 6, 2).sum(axis=(1, 3)) + 2) // 4
            np.testing.assert_array_equal(small.images[0, 0], want)
            with self.assertRaises(agave.Error) as e:
                agave.Dataset.open(d, "test", crop=(20, 20))
            self.assertIn("smaller than the crop window", str(e.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
