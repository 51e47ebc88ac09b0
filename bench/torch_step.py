#!/usr/bin/python3
"""torch_step: the training step of bench/train_step, in PyTorch.

The same AGAVE model (docs/model.md) in mode agave: the VAE (encoder, a
diagonal Gaussian posterior with its analytic KL, decoder f(z)), the auxiliary
discretized-logistic loss on y = x (b = 256, s = 1), the conditional PixelCNN++
(u and ul streams, gated residual blocks with concat_elu, dropout and the
conditioning stream's 1x1 projections, shifted and stride-2 convolutions,
cropped transposed convolutions, the discretized mixture of logistics), every
convolution weight-normalised, and the step: objective, backward, Adamax
(lr 0.002) and the parameter average (Polyak). Same layer sizes and FLOPs as
the library's; the data-dependent initialisation is left out (a step's cost
does not depend on it).

Timing as bench/train_step: per configuration and batch, 3 warm-up steps,
then the median of R timed steps (wall time), images/s. Threads: PyTorch's
intra-op pool (torch.set_num_threads) and MKL/oneDNN inside it; interop 1.

usage: /usr/bin/python3 bench/torch_step.py [--threads T] [--repeats R] [--cpu-time]
                                            [config:batch ...]
       default: fashion:16 fashion:32 fashion:64 cifar-small:16 cifar-small:32
                cifar-small:64
Needs Debian's python3-torch (sh scripts/deps.sh bench). Not part of make check.
"""
import argparse
import math
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as Fn
from torch.nn.utils import weight_norm

CONFIGS = {
    # name: C, H, W, F, R, M, dropout, Fv, Rv, Z, lambda
    "fashion": dict(C=1, H=28, W=28, F=32, R=1, M=5, dropout=0.0, Fv=32, Rv=1, Z=8, lam=2.0),
    "cifar-small": dict(C=3, H=32, W=32, F=64, R=2, M=10, dropout=0.5, Fv=64, Rv=2, Z=16,
                        lam=4.0),
}


def concat_elu(x):
    return Fn.elu(torch.cat([x, -x], dim=1))


def wn_conv(cin, cout, k, stride=1):
    return weight_norm(nn.Conv2d(cin, cout, k, stride=stride))


class ShiftedConv(nn.Module):
    """Down-shifted (kw centred) or down-right-shifted conv: zero padding on top
    (and left) so that no output sees rows below (or columns right of) it."""

    def __init__(self, cin, cout, kh, kw, stride=1, right=False):
        super().__init__()
        self.pad = (kw - 1, 0, kh - 1, 0) if right else ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)
        self.conv = wn_conv(cin, cout, (kh, kw), stride)

    def forward(self, x):
        return self.conv(Fn.pad(x, self.pad))


class ShiftedDeconv(nn.Module):
    """Stride-2 transposed conv at TensorFlow's full size, cropped to 2H x 2W:
    the top rows; the centre columns (down) or the left ones (down-right)."""

    def __init__(self, cin, cout, kh, kw, right=False):
        super().__init__()
        # without output_padding: the extra row and column would be cropped anyway,
        # and PyTorch 1.13 runs this case twice as fast
        self.deconv = weight_norm(nn.ConvTranspose2d(cin, cout, (kh, kw), stride=2))
        self.left = 0 if right else (kw - 1) // 2

    def forward(self, x):
        H, W = x.shape[2], x.shape[3]
        y = self.deconv(x)
        return y[:, :, :2 * H, self.left:self.left + 2 * W]


def down_shift(x):
    return Fn.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x):
    return Fn.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class Gated(nn.Module):
    def __init__(self, F, right, shortcut, dropout):
        super().__init__()
        kh, kw = (2, 2) if right else (2, 3)
        self.conv1 = ShiftedConv(2 * F, F, kh, kw, right=right)
        self.nin_a = wn_conv(2 * shortcut, F, 1) if shortcut else None
        self.conv2 = ShiftedConv(2 * F, 2 * F, kh, kw, right=right)
        self.nin_h = wn_conv(F, 2 * F, 1)
        self.dropout = dropout
        self.F = F

    def forward(self, x, a, h):
        c1 = self.conv1(concat_elu(x))
        if a is not None:
            c1 = c1 + self.nin_a(concat_elu(a))
        c1 = concat_elu(c1)
        if self.dropout > 0:
            c1 = Fn.dropout(c1, self.dropout, self.training)
        c2 = self.conv2(c1) + self.nin_h(h)
        return x + c2[:, :self.F] * torch.sigmoid(c2[:, self.F:])


class PixelCNN(nn.Module):
    def __init__(self, c):
        super().__init__()
        F, R, C = c["F"], c["R"], c["C"]
        self.R = R
        self.cond = nn.ModuleList([wn_conv(C, F, 3), wn_conv(F, F, 3, 2), wn_conv(F, F, 3, 2)])
        self.u_init = ShiftedConv(C + 1, F, 2, 3)
        self.ul_init_a = ShiftedConv(C + 1, F, 1, 3)
        self.ul_init_b = ShiftedConv(C + 1, F, 2, 1, right=True)
        d = c["dropout"]
        self.up_u = nn.ModuleList([Gated(F, False, 0, d) for _ in range(3 * R)])
        self.up_ul = nn.ModuleList([Gated(F, True, F, d) for _ in range(3 * R)])
        self.down_u = nn.ModuleList([ShiftedConv(F, F, 2, 3, 2) for _ in range(2)])
        self.down_ul = nn.ModuleList([ShiftedConv(F, F, 2, 2, 2, right=True) for _ in range(2)])
        n_dn = R + 2 * (R + 1)
        self.dn_u = nn.ModuleList([Gated(F, False, F, d) for _ in range(n_dn)])
        self.dn_ul = nn.ModuleList([Gated(F, True, 2 * F, d) for _ in range(n_dn)])
        self.up_u2 = nn.ModuleList([ShiftedDeconv(F, F, 2, 3) for _ in range(2)])
        self.up_ul2 = nn.ModuleList([ShiftedDeconv(F, F, 2, 2, right=True) for _ in range(2)])
        P = 3 * c["M"] if C == 1 else 10 * c["M"]
        self.out = wn_conv(F, P, 1)

    def forward(self, x, f):
        g, t = [], f
        for conv in self.cond:
            t = Fn.elu(conv(Fn.pad(t, (1, 1, 1, 1))))
            g.append(t)
        xp = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        u = down_shift(self.u_init(xp))
        ul = down_shift(self.ul_init_a(xp)) + right_shift(self.ul_init_b(xp))
        us, uls = [u], [ul]
        i = 0
        for lv in range(3):
            for _ in range(self.R):
                u = self.up_u[i](u, None, g[lv])
                ul = self.up_ul[i](ul, u, g[lv])
                i += 1
                us.append(u), uls.append(ul)
            if lv < 2:
                u, ul = self.down_u[lv](u), self.down_ul[lv](ul)
                us.append(u), uls.append(ul)
        u, ul = us.pop(), uls.pop()
        i = 0
        for lv in (2, 1, 0):
            for _ in range(self.R if lv == 2 else self.R + 1):
                u = self.dn_u[i](u, us.pop(), g[lv])
                ul = self.dn_ul[i](ul, torch.cat([u, uls.pop()], dim=1), g[lv])
                i += 1
            if lv > 0:
                u, ul = self.up_u2[lv - 1](u), self.up_ul2[lv - 1](ul)
        return self.out(Fn.elu(ul))


class ResBlock(nn.Module):
    def __init__(self, F):
        super().__init__()
        self.c1, self.c2 = wn_conv(F, F, 3), wn_conv(F, F, 3)

    def forward(self, x):
        t = self.c1(Fn.pad(Fn.elu(x), (1, 1, 1, 1)))
        return x + self.c2(Fn.pad(Fn.elu(t), (1, 1, 1, 1)))


def conv3(conv, x):
    return conv(Fn.pad(x, (1, 1, 1, 1)))


class VAE(nn.Module):
    def __init__(self, c):
        super().__init__()
        Fv, Rv, Z, C = c["Fv"], c["Rv"], c["Z"], c["C"]
        self.Z = Z
        self.enc_in = wn_conv(C, Fv, 3)
        self.enc_res = nn.ModuleList([ResBlock(Fv) for _ in range(2 * Rv)])
        self.enc_down = nn.ModuleList([wn_conv(Fv, Fv, 3, 2) for _ in range(2)])
        self.enc_out = wn_conv(Fv, 2 * Z, 3)
        self.dec_in = wn_conv(Z, Fv, 3)
        self.dec_up = nn.ModuleList([wn_conv(Fv, Fv, 3) for _ in range(2)])
        self.dec_res = nn.ModuleList([ResBlock(Fv) for _ in range(2 * Rv)])
        self.dec_out = wn_conv(Fv, C, 3)
        self.Rv = Rv

    def forward(self, x):
        h = conv3(self.enc_in, x)
        for s in range(2):
            for r in range(self.Rv):
                h = self.enc_res[s * self.Rv + r](h)
            h = conv3(self.enc_down[s], h)
        h = conv3(self.enc_out, Fn.elu(h))
        mean, log_std = h[:, :self.Z], h[:, self.Z:]
        z = mean + torch.exp(log_std) * torch.randn_like(mean)
        kl = (0.5 * (mean * mean + torch.exp(2 * log_std) - 1) - log_std).flatten(1).sum(1)
        h = conv3(self.dec_in, z)
        for s in range(2):
            h = conv3(self.dec_up[s], Fn.interpolate(h, scale_factor=2, mode="nearest"))
            for r in range(self.Rv):
                h = self.dec_res[s * self.Rv + r](h)
        return conv3(self.dec_out, Fn.elu(h)), kl


def log_prob_from_logits(x, dim):
    return x - torch.logsumexp(x, dim=dim, keepdim=True)


def bin_logprob(x, mean, log_scale):
    """log P(bin of x) under a logistic (PixelCNN++'s bins of width 2/255, open
    ends at 0 and 255; the density at the centre where the mass underflows)."""
    inv = torch.exp(-log_scale)
    c = x - mean
    plus, minus = inv * (c + 1.0 / 255), inv * (c - 1.0 / 255)
    cdf_plus, cdf_min = torch.sigmoid(plus), torch.sigmoid(minus)
    log_cdf_plus = plus - Fn.softplus(plus)
    log_one_minus_cdf_min = -Fn.softplus(minus)
    mid = inv * c
    log_pdf_mid = mid - log_scale - 2 * Fn.softplus(mid)
    inner = torch.where(cdf_plus - cdf_min > 1e-5,
                        torch.log(torch.clamp(cdf_plus - cdf_min, min=1e-12)),
                        log_pdf_mid - math.log(127.5))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, inner))


def dmol_nll(x, p, M):
    """x (N,C,H,W) in [-1,1]; p the mixture parameters in docs/model.md's layout."""
    N, C, H, W = x.shape
    logits = p[:, :M]
    if C == 1:
        means, ls = p[:, M:2 * M], torch.clamp(p[:, 2 * M:3 * M], min=-7)
        lp = bin_logprob(x, means, ls)
    else:
        coef = [torch.tanh(p[:, M + 3 * M * c + 2 * M:M + 3 * M * c + 3 * M]) for c in range(3)]
        xr, xg = x[:, 0:1], x[:, 1:2]
        lps = []
        for c in range(3):
            base = M + 3 * M * c
            mean = p[:, base:base + M]
            if c == 1:   # green: + a x_r (slot 0)
                mean = mean + coef[0] * xr
            elif c == 2:   # blue: + b x_r + c x_g (slots 1 and 2)
                mean = mean + coef[1] * xr + coef[2] * xg
            ls = torch.clamp(p[:, base + M:base + 2 * M], min=-7)
            lps.append(bin_logprob(x[:, c:c + 1], mean, ls))
        lp = lps[0] + lps[1] + lps[2]
    lp = lp + log_prob_from_logits(logits, 1)
    return -torch.logsumexp(lp, dim=1).flatten(1).sum(1)


class Agave(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.vae = VAE(c)
        self.pcnn = PixelCNN(c)
        self.aux_log_scale = nn.Parameter(torch.zeros(1, c["C"], 1, 1))

    def forward(self, x):
        f, kl = self.vae(x)
        nll_y = -bin_logprob(x, f, self.aux_log_scale.expand_as(f)).flatten(1).sum(1)
        nll_x = dmol_nll(x, self.pcnn(x, f), self.c["M"])
        return (nll_x + nll_y + self.c["lam"] * kl).mean()


CPU_TIME = False


def run(name, batch, repeats):
    c = CONFIGS[name]
    torch.manual_seed(1)
    model = Agave(c)
    model.train()
    opt = torch.optim.Adamax(model.parameters(), lr=0.002)
    params = [p for p in model.parameters()]
    avg = [p.detach().clone() for p in params]
    g = torch.Generator().manual_seed(2)
    x8 = torch.randint(0, 256, (batch, c["C"], c["H"], c["W"]), generator=g)
    x = x8.float() / 127.5 - 1

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(x)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(avg, 0.9995)
            torch._foreach_add_(avg, params, alpha=0.0005)
        return loss

    for _ in range(3):
        step()
    clock = time.process_time if CPU_TIME else time.perf_counter
    times = []
    for _ in range(repeats):
        t0 = clock()
        step()
        times.append(clock() - t0)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {name:12s} batch {batch:3d} threads {torch.get_num_threads()} | "
          f"{batch / med:7.1f} images/s | {med:6.3f} s/step | peak RSS {rss:6.0f} MiB | "
          f"{'process CPU' if CPU_TIME else 'wall'} time",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("runs", nargs="*", default=["fashion:16", "fashion:32", "fashion:64",
                                                "cifar-small:16", "cifar-small:32",
                                                "cifar-small:64"])
    ap.add_argument("--cpu-time", action="store_true",
                    help="time steps by process CPU time (for 1 thread on a busy machine)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    global CPU_TIME
    CPU_TIME = a.cpu_time
    if not a.child:   # each run in a process of its own, so that peak RSS is that run's
        for spec in a.runs:
            subprocess.run([sys.executable, __file__, "--child", "--threads", str(a.threads),
                            "--repeats", str(a.repeats)] + (["--cpu-time"] if a.cpu_time else [])
                           + [spec], check=True)
        return
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, oneDNN "
          f"{'on' if torch.backends.mkldnn.is_available() else 'off'}, "
          f"config: {torch.__config__.parallel_info().splitlines()[0]}", flush=True)
    for spec in a.runs:
        name, _, b = spec.partition(":")
        if name not in CONFIGS:
            sys.exit(f"torch_step: unknown configuration {name}")
        run(name, int(b or 16), a.repeats)


if __name__ == "__main__":
    main()
