"""libagave from Python: ctypes over the installed libagave.so, NumPy arrays
in and out.

    import numpy as np
    import agave

    model = agave.Model.load("run/model.ckpt", threads=2)
    test = agave.Dataset.open("/usr/share/datasets/fashion-mnist", "test")
    x = test.images[:100]                      # (100, 1, 28, 28) uint8
    scores = model.score(x, samples=10)        # per-image bpd: elbo, iwae, kl, ...
    fz, samples = model.sample(16, seed=1)     # f(z) and PixelCNN samples, uint8
    z = model.encode(x[:2])                    # (2, Z, 7, 7) float32
    fz, x2 = model.decode(z, seed=3)

Every failure raises agave.Error, whose message is the library's own
(agave_context_last_error) and whose .status is the agave_status code.
Images are uint8 arrays of shape (n, C, H, W); latents float32 (n, Z, H/4, W/4).
The library is found through $AGAVE_LIBRARY, the path `make install` wrote
into agave/_paths.py, or the loader's search path (libagave.so.MAJOR).
"""

import ctypes
import os

import numpy as np

__all__ = ["Error", "Model", "Dataset", "version", "library_path"]

# ---- the library ------------------------------------------------------------


def _candidates():
    env = os.environ.get("AGAVE_LIBRARY")
    if env:
        return [env]
    names = []
    try:
        from . import _paths  # written by `make install`

        names.append(_paths.LIBRARY)
    except ImportError:
        pass
    return names + ["libagave.so.0", "libagave.so"]


def _open_library():
    errors = []
    for name in _candidates():
        try:
            return ctypes.CDLL(name), name
        except OSError as e:
            errors.append("%s: %s" % (name, e))
    raise ImportError("agave: cannot load libagave (set AGAVE_LIBRARY to its path): "
                      + "; ".join(errors))


_lib, _lib_path = _open_library()

_c = ctypes
_p = _c.c_void_p
_u8p = _c.POINTER(_c.c_uint8)
_f32p = _c.POINTER(_c.c_float)
_f64p = _c.POINTER(_c.c_double)


def _fn(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_status_string = _fn("agave_status_string", _c.c_char_p, _c.c_int)
_version_string = _fn("agave_version_string", _c.c_char_p)
_ctx_create = _fn("agave_context_create", _c.c_int, _c.POINTER(_p), _c.c_uint64)
_ctx_free = _fn("agave_context_free", None, _p)
_ctx_threads = _fn("agave_context_set_threads", _c.c_int, _p, _c.c_int)
_ctx_error = _fn("agave_context_last_error", _c.c_char_p, _p)
_config_init = _fn("agave_config_init_sized", _c.c_int, _p, _c.c_size_t, _c.c_char_p)
_config_set = _fn("agave_config_set", _c.c_int, _p, _c.c_char_p, _c.c_char_p)
_config_get = _fn("agave_config_get", _c.c_int, _p, _c.c_char_p, _c.c_char_p, _c.c_size_t)
_config_key_count = _fn("agave_config_key_count", _c.c_int)
_config_key_info = _fn("agave_config_key_info", _c.c_int, _c.c_int, _p)
_model_create = _fn("agave_model_create", _c.c_int, _p, _p, _c.POINTER(_p))
_model_free = _fn("agave_model_free", None, _p)
_model_load = _fn("agave_model_load", _c.c_int, _p, _c.c_char_p, _p, _c.POINTER(_p))
_model_save = _fn("agave_model_save", _c.c_int, _p, _c.c_char_p)
_model_get_config = _fn("agave_model_get_config_sized", _c.c_int, _p, _p, _c.c_size_t)
_model_step_count = _fn("agave_model_step_count", _c.c_int64, _p)
_model_train_step = _fn("agave_model_train_step", _c.c_int, _p, _u8p, _c.c_int, _p)
_model_evaluate = _fn("agave_model_evaluate", _c.c_int, _p, _u8p, _c.c_int, _c.c_int, _p)
_model_sample = _fn("agave_model_sample", _c.c_int, _p, _c.c_int, _c.c_uint64, _u8p, _u8p)
_model_reconstruct = _fn("agave_model_reconstruct", _c.c_int, _p, _u8p, _c.c_int,
                         _c.c_uint64, _u8p, _u8p)
_model_latent_shape = _fn("agave_model_latent_shape", _c.c_int, _p, _c.POINTER(_c.c_int),
                          _c.POINTER(_c.c_int), _c.POINTER(_c.c_int))
_model_encode = _fn("agave_model_encode", _c.c_int, _p, _u8p, _c.c_int, _f32p)
_model_decode = _fn("agave_model_decode", _c.c_int, _p, _f32p, _c.c_int, _c.c_uint64, _u8p,
                    _u8p)
_model_set_weights = _fn("agave_model_set_weights", _c.c_int, _p, _c.c_int)
_ds_open = _fn("agave_dataset_open_v2", _c.c_int, _p, _c.c_char_p, _c.c_int, _p,
               _c.POINTER(_p))
_ds_options_init = _fn("agave_dataset_options_init_sized", None, _p, _c.c_size_t)
_ds_free = _fn("agave_dataset_free", None, _p)
_ds_count = _fn("agave_dataset_count", _c.c_size_t, _p)
_ds_channels = _fn("agave_dataset_channels", _c.c_int, _p)
_ds_height = _fn("agave_dataset_height", _c.c_int, _p)
_ds_width = _fn("agave_dataset_width", _c.c_int, _p)
_ds_pixels = _fn("agave_dataset_pixels", _u8p, _p)
_ds_name = _fn("agave_dataset_image_name", _c.c_char_p, _p, _c.c_size_t)

_evaluate_scores = _fn("agave_model_evaluate_scores", _c.c_int, _p, _u8p, _c.c_int, _c.c_int,
                       _p, _p)
_eval_options_init = _fn("agave_eval_options_init_sized", None, _p, _c.c_size_t)

# ---- structs ------------------------------------------------------------------
# Opaque structs (agave_config, agave_dataset_options) live in a zeroed buffer
# larger than any version of them: the library's struct_size rule reads the
# fields it knows and requires the rest to be zero. The structs whose fields
# Python reads are declared up to the fields used here: fields are only ever
# appended, so such a prefix stays valid (the library writes only what
# struct_size covers).
_OPAQUE = 1024


class _StepStats(_c.Structure):
    _fields_ = [("struct_size", _c.c_size_t), ("loss_bpd", _c.c_double),
                ("pixelcnn_nll", _c.c_double), ("aux_nll", _c.c_double), ("kl", _c.c_double),
                ("pixelcnn_bpd", _c.c_double), ("aux_bpd", _c.c_double),
                ("kl_bpd", _c.c_double), ("grad_norm", _c.c_double), ("rejected", _c.c_int)]


class _EvalStats(_c.Structure):
    _fields_ = [("struct_size", _c.c_size_t), ("n_images", _c.c_int),
                ("elbo_bpd", _c.c_double), ("recon_bpd", _c.c_double), ("kl_bpd", _c.c_double),
                ("aux_bpd", _c.c_double), ("iwae_bpd", _c.c_double),
                ("iwae_samples", _c.c_int)]


class _EvalOptions(_c.Structure):
    _fields_ = [("struct_size", _c.c_size_t), ("elbo_bpd", _f64p), ("recon_bpd", _f64p),
                ("kl_bpd", _f64p), ("aux_bpd", _f64p), ("iwae_bpd", _f64p),
                ("progress", _p), ("progress_user", _p)]


class _ConfigKey(_c.Structure):
    _fields_ = [("struct_size", _c.c_size_t), ("name", _c.c_char_p)]


def _config_keys():
    keys = []
    for i in range(_config_key_count()):
        info = _ConfigKey()
        info.struct_size = _c.sizeof(_ConfigKey)
        if _config_key_info(i, _c.byref(info)) == 0:
            keys.append(info.name.decode())
    return keys


class _DatasetOptions(_c.Structure):
    _fields_ = [("struct_size", _c.c_size_t), ("crop_height", _c.c_int),
                ("crop_width", _c.c_int), ("resize_height", _c.c_int),
                ("resize_width", _c.c_int), ("test_percent", _c.c_int)]


CROP_ASPECT = -1
_SPLITS = {"train": 0, "test": 1}
_WEIGHTS = {"average": 0, "raw": 1}

# ---- errors -------------------------------------------------------------------


class Error(RuntimeError):
    """A libagave call failed: str(e) is the library's message, e.status its code."""

    def __init__(self, status, message):
        text = message or _status_string(status).decode()
        super().__init__(text)
        self.status = status


def version():
    """The linked library's version, "MAJOR.MINOR.PATCH"."""
    return _version_string().decode()


def library_path():
    """The name or path the library was loaded from."""
    return _lib_path


class _Context:
    """A library context: its generator, threads and last-error message."""

    def __init__(self, seed, threads):
        self.handle = _p()
        st = _ctx_create(_c.byref(self.handle), int(seed))
        if st != 0:
            raise Error(st, "cannot create a libagave context")
        self.check(_ctx_threads(self.handle, int(threads)))

    def check(self, status):
        if status != 0:
            raise Error(status, _ctx_error(self.handle).decode(errors="replace"))

    def __del__(self):
        if getattr(self, "handle", None):
            _ctx_free(self.handle)
            self.handle = None


def _images(x, shape=None, name="x"):
    """x as a C-contiguous (n, C, H, W) uint8 array (checked against shape)."""
    a = np.ascontiguousarray(x)
    if a.dtype != np.uint8:
        raise TypeError("%s must be uint8 images (values 0..255), not %s" % (name, a.dtype))
    if a.ndim == 3 and shape is not None and shape[0] == 1:
        a = a[:, None, :, :]
    if a.ndim != 4:
        raise ValueError("%s must be (n, C, H, W), not of shape %s" % (name, a.shape))
    if shape is not None and a.shape[1:] != tuple(shape):
        raise ValueError("%s holds images of %s (C, H, W) but the model takes %s"
                         % (name, a.shape[1:], tuple(shape)))
    if a.shape[0] < 1:
        raise ValueError("%s holds no image" % name)
    return a


def _u8(a):
    return a.ctypes.data_as(_u8p)


# ---- models -------------------------------------------------------------------


class Model:
    """An AGAVE model on a context of its own (seeded, with a thread count)."""

    def __init__(self, handle, ctx):
        self._m = handle
        self._ctx = ctx
        self._refresh_config()

    @classmethod
    def create(cls, config="tiny", seed=1, threads=1, **settings):
        """A new model from a named configuration ("tiny", "fashion",
        "cifar-small", "cifar-paper") with settings changed by key, e.g.
        Model.create("tiny", C=3, H=16, W=16, mode="vae", lr=1e-3)."""
        ctx = _Context(seed, threads)
        buf = _c.create_string_buffer(_OPAQUE)
        ctx.check(_config_init(buf, _OPAQUE, config.encode()))
        for key, value in settings.items():
            ctx.check(_config_set(buf, key.encode(), str(value).encode()))
        handle = _p()
        ctx.check(_model_create(ctx.handle, buf, _c.byref(handle)))
        return cls(handle, ctx)

    @classmethod
    def load(cls, path, seed=1, threads=1, weights=None):
        """A model from a checkpoint. weights: "average" or "raw" (default: the
        average when the checkpoint has one)."""
        ctx = _Context(seed, threads)
        handle = _p()
        ctx.check(_model_load(ctx.handle, os.fsencode(path), None, _c.byref(handle)))
        m = cls(handle, ctx)
        if weights is not None:
            m.set_weights(weights)
        return m

    def __del__(self):
        if getattr(self, "_m", None):
            _model_free(self._m)
            self._m = None

    def _refresh_config(self):
        buf = _c.create_string_buffer(_OPAQUE)
        self._ctx.check(_model_get_config(self._m, buf, _OPAQUE))
        out = _c.create_string_buffer(64)
        cfg = {}
        for key in _config_keys():
            if _config_get(buf, key.encode(), out, 64) == 0:
                text = out.value.decode()
                try:
                    cfg[key] = int(text)
                except ValueError:
                    try:
                        cfg[key] = float(text)
                    except ValueError:
                        cfg[key] = text
        self.config = cfg
        self.shape = (cfg["C"], cfg["H"], cfg["W"])

    @property
    def steps(self):
        """Training steps applied so far."""
        return int(_model_step_count(self._m))

    def set_weights(self, weights):
        """Evaluate and sample with "average" or "raw" parameters."""
        if weights not in _WEIGHTS:
            raise ValueError("weights must be 'average' or 'raw', not %r" % (weights,))
        self._ctx.check(_model_set_weights(self._m, _WEIGHTS[weights]))

    def save(self, path):
        """Writes a checkpoint (atomically)."""
        self._ctx.check(_model_save(self._m, os.fsencode(path)))

    # -- training --------------------------------------------------------------

    def train(self, x, steps, batch=16, seed=0):
        """Trains for `steps` steps on the uint8 images x (n, C, H, W), batches
        of `batch` images in an order that NumPy's default_rng(seed) shuffles
        afresh every epoch. Returns a dict of per-step arrays: loss_bpd,
        pixelcnn_bpd, aux_bpd, kl_bpd, grad_norm and rejected."""
        x = _images(x, self.shape)
        n = x.shape[0]
        rng = np.random.default_rng(seed)
        order, at = rng.permutation(n), 0
        keys = ("loss_bpd", "pixelcnn_bpd", "aux_bpd", "kl_bpd", "grad_norm", "rejected")
        out = {k: np.zeros(steps) for k in keys}
        stats = _StepStats()
        stats.struct_size = _c.sizeof(_StepStats)
        for step in range(steps):
            take = []
            while len(take) < batch:
                if at == n:
                    order, at = rng.permutation(n), 0
                k = min(batch - len(take), n - at)
                take.extend(order[at:at + k])
                at += k
            xb = np.ascontiguousarray(x[np.array(take)])
            self._ctx.check(_model_train_step(self._m, _u8(xb), batch, _c.byref(stats)))
            for k in keys:
                out[k][step] = getattr(stats, k)
        out["rejected"] = out["rejected"].astype(bool)
        return out

    # -- evaluation ------------------------------------------------------------

    def evaluate(self, x, samples=10):
        """The bounds over the images x, averaged: a dict of elbo_bpd,
        recon_bpd, kl_bpd, aux_bpd and iwae_bpd (samples = K importance
        samples; 0 skips IWAE, iwae_bpd then repeats elbo_bpd)."""
        x = _images(x, self.shape)
        s = _EvalStats()
        s.struct_size = _c.sizeof(_EvalStats)
        self._ctx.check(_model_evaluate(self._m, _u8(x), x.shape[0], int(samples),
                                        _c.byref(s)))
        return {k: getattr(s, k) for k in ("elbo_bpd", "recon_bpd", "kl_bpd", "aux_bpd",
                                           "iwae_bpd")}

    def score(self, x, samples=10):
        """Per-image bpd for outlier and novelty detection: a dict of arrays of
        n floats each, elbo_bpd, recon_bpd, kl_bpd, aux_bpd and iwae_bpd."""
        x = _images(x, self.shape)
        n = x.shape[0]
        keys = ("elbo_bpd", "recon_bpd", "kl_bpd", "aux_bpd", "iwae_bpd")
        out = {k: np.full(n, np.nan) for k in keys}
        opt = _EvalOptions()
        _eval_options_init(_c.byref(opt), _c.sizeof(_EvalOptions))
        for k in keys:
            setattr(opt, k, out[k].ctypes.data_as(_f64p))
        s = _EvalStats()
        s.struct_size = _c.sizeof(_EvalStats)
        self._ctx.check(_evaluate_scores(self._m, _u8(x), n, int(samples), _c.byref(opt),
                                         _c.byref(s)))
        return out

    # -- sampling and latents ----------------------------------------------------

    def _small_shape(self):
        s = self.config["s"]
        return (self.config["C"], self.config["H"] // s, self.config["W"] // s)

    def sample(self, n, seed=1):
        """n samples: (fz, x), f(z) for z ~ p(z) as uint8 images (n, C, H/s,
        W/s) and the PixelCNN samples given it (n, C, H, W)."""
        fz = np.zeros((n,) + self._small_shape(), np.uint8)
        x = np.zeros((n,) + self.shape, np.uint8)
        self._ctx.check(_model_sample(self._m, int(n), int(seed), _u8(fz), _u8(x)))
        return fz, x

    def reconstruct(self, x, seed=1):
        """(fz, x'): f(z) for z ~ q(z|x) and the PixelCNN sample given it."""
        x = _images(x, self.shape)
        n = x.shape[0]
        fz = np.zeros((n,) + self._small_shape(), np.uint8)
        out = np.zeros((n,) + self.shape, np.uint8)
        self._ctx.check(_model_reconstruct(self._m, _u8(x), n, int(seed), _u8(fz), _u8(out)))
        return fz, out

    def latent_shape(self):
        """(Z, H/4, W/4), the shape of one image's latent z."""
        z, h, w = _c.c_int(), _c.c_int(), _c.c_int()
        self._ctx.check(_model_latent_shape(self._m, _c.byref(z), _c.byref(h), _c.byref(w)))
        return (z.value, h.value, w.value)

    def encode(self, x):
        """The posterior mean of z for images x: float32 (n, Z, H/4, W/4)."""
        x = _images(x, self.shape)
        z = np.zeros((x.shape[0],) + self.latent_shape(), np.float32)
        self._ctx.check(_model_encode(self._m, _u8(x), x.shape[0],
                                      z.ctypes.data_as(_f32p)))
        return z

    def decode(self, z, seed=1):
        """(fz, x) for latents z (n, Z, H/4, W/4): f(z) and a PixelCNN sample."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        shape = self.latent_shape()
        if z.ndim != 4 or z.shape[1:] != shape:
            raise ValueError("z must be (n,) + %s, not of shape %s" % (shape, z.shape))
        n = z.shape[0]
        fz = np.zeros((n,) + self._small_shape(), np.uint8)
        x = np.zeros((n,) + self.shape, np.uint8)
        self._ctx.check(_model_decode(self._m, z.ctypes.data_as(_f32p), n, int(seed),
                                      _u8(fz), _u8(x)))
        return fz, x


# ---- data sets ------------------------------------------------------------------


class Dataset:
    """A data set loaded by the library: .images (n, C, H, W) uint8 (a copy)
    and .names (file names for image folders, else None)."""

    def __init__(self, images, names):
        self.images = images
        self.names = names

    @classmethod
    def open(cls, path, split="train", resize=None, crop=None, test_percent=10):
        """CIFAR-10 batches, IDX files or an image folder (docs/data.md).
        resize and crop: (H, W); crop may also be "aspect"."""
        if split not in _SPLITS:
            raise ValueError("split must be 'train' or 'test', not %r" % (split,))
        ctx = _Context(1, 1)
        opt = _DatasetOptions()
        _ds_options_init(_c.byref(opt), _c.sizeof(_DatasetOptions))
        if resize is not None:
            opt.resize_height, opt.resize_width = resize
        if crop == "aspect":
            opt.crop_height = opt.crop_width = CROP_ASPECT
        elif crop is not None:
            opt.crop_height, opt.crop_width = crop
        opt.test_percent = int(test_percent)
        handle = _p()
        ctx.check(_ds_open(ctx.handle, os.fsencode(path), _SPLITS[split], _c.byref(opt),
                           _c.byref(handle)))
        try:
            n = _ds_count(handle)
            shape = (n, _ds_channels(handle), _ds_height(handle), _ds_width(handle))
            size = int(np.prod(shape))
            images = np.ctypeslib.as_array(_ds_pixels(handle), shape=(size,)).copy()
            first = _ds_name(handle, 0)
            names = None
            if first is not None:
                names = [_ds_name(handle, i).decode(errors="surrogateescape") for i in range(n)]
        finally:
            _ds_free(handle)
        return cls(images.reshape(shape), names)
