"""Fast mode, route (a) of issue #8: a small network trained per clip on keyframe patches.

A prototype measured against route (b) (``stylize_core.modes.fast.synthesis``, example-based synthesis) and the
per-frame reference on the sequences of ``bench fast`` (its data loading and metrics are
imported from bench/fast.py). Reimplemented from the papers' text:

- Texler et al. 2020, "Interactive Video Stylization Using Few-Shot Patch-Based Training"
  (SIGGRAPH): an image-to-image network N trained on small random patches (``--patch``,
  default 32 px) cropped from the pair (keyframe input, stylised keyframe) rather than whole
  frames; a compact fully-convolutional U-Net with residual blocks at its bottleneck; L1 plus
  an adversarial patch loss (a small conditional discriminator; no pretrained weights are
  used: there is no VGG here); optional input guides (``--guides gauss``: their
  Gaussian-mixture positional guide, random coloured Gaussian blobs on the keyframe carried to
  every frame by the flow); early stop on held-out keyframe patches.
- Ruder et al. 2018 (IJCV), the temporal loss on consecutive frames of the clip (unlabelled):
  ``L_t = sum_p c(p) |N(x_t+1)(p) - warp(N(x_t), flow t+1->t)(p)|^2 / (3 sum_p c(p))`` with c =
  ``consistency.reliability(flow t+1->t, flow t->t+1)`` (DIS, the flow fast mode sees).

Training is time-budgeted: ``--train-seconds 60,180`` trains once for the longest budget and
evaluates the best-on-held-out weights as they were at each budget (with a constant learning
rate a shorter run would have produced the same weights). Inference runs N on every whole
frame. Each sequence is trained from scratch (a new network per clip, as in the paper).
"""

import argparse
import copy
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from stylize_core.motion.consistency import reliability
from stylize_core.motion.flow import available_methods
from stylize_core.motion.warp import warp

from . import fast as fb
from .common import Table, grid, labelled, print_header, write_image


def add_arguments(parser):
    """bench fast's options (sequences, reference, device) and the training's."""
    fb.add_arguments(parser)
    parser.add_argument(
        "--train-seconds", help="training budgets in seconds, comma-separated (default 60,180; quick 4)"
    )
    parser.add_argument(
        "--guides",
        default="rgb",
        choices=("rgb", "gauss"),
        help="network input: frame colours, or + the Gaussian-mixture guide",
    )
    parser.add_argument("--patch", type=int, default=32, help="training patch side in pixels")
    parser.add_argument("--batch", type=int, help="keyframe patches per step (default 24, quick 8)")
    parser.add_argument("--width", type=int, default=16, help="U-Net channels at full resolution")
    parser.add_argument("--blocks", type=int, default=3, help="residual blocks at 1/4 resolution")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (G and D)")
    parser.add_argument("--adv-weight", type=float, default=0.05, help="weight of the adversarial loss")
    parser.add_argument(
        "--temporal-weight", type=float, default=1.0, help="weight of the temporal loss (0 disables it)"
    )
    parser.add_argument(
        "--grad-weight",
        type=float,
        default=1.0,
        help="weight of the L1 loss on image gradients (finite differences: keeps edges and texture contrast)",
    )
    parser.add_argument("--temporal-every", type=int, default=2, help="temporal loss on every k-th step")
    parser.add_argument("--temporal-batch", type=int, default=4, help="consecutive-frame patches per step")
    parser.add_argument("--no-route-b", action="store_true", help="skip the route (b) rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's; 1 is faster for "
        "the small training batches when other processes load the cores)",
    )


# -- network ----------------------------------------------------------------------------
class ResBlock(nn.Module):
    """``y = x + conv3(lrelu(conv3(x)))``, channels kept (no normalisation: tiny batches)."""

    def __init__(self, ch):
        """``ch``: channels in and out."""
        super().__init__()
        self.a, self.b = nn.Conv2d(ch, ch, 3, padding=1), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        """``(N, ch, H, W)`` -> same shape."""
        return x + self.b(F.leaky_relu(self.a(x), 0.2))


class Generator(nn.Module):
    """Compact U-Net (Texler et al. 2020 in spirit): widths w, 2w, 4w at scales 1, 1/2, 1/4,
    ``blocks`` residual blocks at 1/4, bilinear upsampling + conv, skip concatenation, sigmoid
    output in [0, 1]. Fully convolutional: H and W must be multiples of 4 (see ``infer``)."""

    def __init__(self, cin, w=16, blocks=3):
        """``cin`` input channels (3 colours + guides), ``w`` the full-resolution width."""
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.inc = nn.Sequential(nn.Conv2d(cin, w, 3, padding=1), act(), nn.Conv2d(w, w, 3, padding=1), act())
        self.d1 = nn.Sequential(
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), act(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), act()
        )
        self.d2 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), act())
        self.res = nn.Sequential(*[ResBlock(4 * w) for _ in range(blocks)])
        self.u1 = nn.Conv2d(4 * w, 2 * w, 3, padding=1)
        self.m1 = nn.Sequential(nn.Conv2d(4 * w, 2 * w, 3, padding=1), act())
        self.u2 = nn.Conv2d(2 * w, w, 3, padding=1)
        self.m2 = nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1), act())
        self.out = nn.Conv2d(w, 3, 3, padding=1)

    def forward(self, x):
        """``(N, cin, H, W)`` -> ``(N, 3, H, W)`` in [0, 1]."""
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        s0 = self.inc(x)
        s1 = self.d1(s0)
        z = self.res(self.d2(s1))
        z = self.m1(torch.cat([F.leaky_relu(self.u1(up(z)), 0.2), s1], 1))
        z = self.m2(torch.cat([F.leaky_relu(self.u2(up(z)), 0.2), s0], 1))
        return torch.sigmoid(self.out(z))


class Discriminator(nn.Module):
    """Conditional patch discriminator: (input, stylised) -> a map of realness scores, one per
    ~16x16 receptive field (two stride-2 4x4 convs and a 3x3 conv; LSGAN targets 1 / 0)."""

    def __init__(self, cin, w=32):
        """``cin``: channels of the network input; 3 stylised channels are appended."""
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(cin + 3, w, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 1, 3, 1, 1),
        )

    def forward(self, x, y):
        """``x`` (N, cin, H, W), ``y`` (N, 3, H, W) -> ``(N, 1, H/4, W/4)`` scores."""
        return self.net(torch.cat([x, y], 1))


class FlopCounter:
    """Forward conv FLOPs while active: ``2 * Cin/groups * k_h * k_w * Cout * H_out * W_out * N``
    per Conv2d call (multiply-add = 2 FLOPs). Backward is ~2x forward, so a training step costs
    ~3x the forward FLOPs of the passes whose gradients are taken."""

    def __init__(self, *modules):
        """Hooks every Conv2d of ``modules``."""
        self.flops, self.on, self.handles = 0, False, []
        for m in modules:
            for conv in m.modules():
                if isinstance(conv, nn.Conv2d):
                    self.handles.append(conv.register_forward_hook(self.hook))

    def hook(self, conv, inputs, output):
        """Adds one call's FLOPs when counting."""
        if self.on:
            kh, kw = conv.kernel_size
            self.flops += 2 * conv.in_channels // conv.groups * kh * kw * output.numel()

    def remove(self):
        """Unhooks."""
        for h in self.handles:
            h.remove()


# -- data -------------------------------------------------------------------------------
def to_tensor(img, device):
    """``(H, W, C)`` float32 numpy -> ``(1, C, H, W)`` tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(img, np.float32)).permute(2, 0, 1)[None].to(device)


def gaussian_guides(frames, flows, k=24, seed=0):
    """Texler et al.'s Gaussian-mixture positional guide, per frame ``(H, W, 3)`` in [0, 1].

    Keyframe (frame 0): ``G(p) = sum_j a_j exp(-|p - m_j|^2 / (2 s^2)) / sum_j exp(...)``, k
    random centres m_j (pixels), random RGB colours a_j, s = sqrt(H W / k) / 2 pixels (the blobs
    tile the frame). Frame t: G_t = warp(G_t-1, DIS flow t->t-1) (the guide moves with the
    content); samples from outside the frame keep the previous value at that pixel.
    """
    h, w = frames[0].shape[:2]
    rng = np.random.default_rng(seed)
    centres = rng.random((k, 2)) * [w, h]
    colours = rng.random((k, 3)).astype(np.float32)
    s = np.sqrt(h * w / k) / 2
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    wts = (
        np.exp(
            -((xs[None] - centres[:, 0, None, None]) ** 2 + (ys[None] - centres[:, 1, None, None]) ** 2) / (2 * s * s)
        )
        + 1e-12
    )
    guide = (np.einsum("khw,kc->hwc", wts, colours) / wts.sum(0)[..., None]).astype(np.float32)
    out = [guide]
    for t in range(1, len(frames)):
        prev = to_tensor(out[-1], "cpu")
        warped, valid = warp(prev, flows.flow(t, t - 1))
        g = warped * valid + prev * (1 - valid)
        out.append(g[0].permute(1, 2, 0).numpy())
    return out


def net_inputs(frames, guides):
    """Per frame the network input ``(H, W, 3 + guide channels)``."""
    return [f if guides is None else np.concatenate([f, g], 2) for f, g in zip(frames, guides or frames)]


class PatchSampler:
    """Random ``P x P`` training crops of the keyframe pair, minus held-out cells.

    The keyframe is cut into a grid of P x P cells; every 8th (random, at least one) is held
    out: its crops form the validation batch, and training crops never overlap them.
    """

    def __init__(self, x, y, patch, rng):
        """``x`` network input (H, W, C), ``y`` stylised keyframe (H, W, 3), numpy."""
        self.x, self.y, self.p, self.rng = x, y, patch, rng
        h, w = y.shape[:2]
        cells = [(r * patch, c * patch) for r in range(h // patch) for c in range(w // patch)]
        held = [cells[i] for i in rng.permutation(len(cells))[: max(1, len(cells) // 8)]]
        mask = np.zeros((h, w), np.float32)
        for r, c in held:
            mask[r : r + patch, c : c + patch] = 1
        # a crop at top-left (r, c) is allowed when the held-out mask is empty in it
        integral = cv2.integral(mask)
        hits = (
            integral[patch:, patch:]
            - integral[:-patch, patch:]
            - integral[patch:, :-patch]
            + integral[:-patch, :-patch]
        )
        self.allowed = np.argwhere(hits < 0.5)
        if len(self.allowed) == 0:  # a frame of one or two cells: train everywhere
            self.allowed = np.argwhere(np.ones_like(hits, bool))
        self.held = held

    def crop(self, corners):
        """Stacked crops ``(N, C, P, P)``, ``(N, 3, P, P)`` at top-left ``corners``."""
        p = self.p
        xs = np.stack([self.x[r : r + p, c : c + p] for r, c in corners])
        ys = np.stack([self.y[r : r + p, c : c + p] for r, c in corners])
        return torch.from_numpy(xs).permute(0, 3, 1, 2), torch.from_numpy(ys).permute(0, 3, 1, 2)

    def batch(self, n):
        """``n`` random training crops."""
        return self.crop(self.allowed[self.rng.integers(len(self.allowed), size=n)])

    def validation(self):
        """The held-out cells (at most 64)."""
        return self.crop(self.held[:64])


class TemporalSampler:
    """Crops for the temporal loss on consecutive frames (a, b = a + 1) of the clip.

    A ``P x P`` patch of frame b at top-left (r, c) and a window of frame a with a margin m = P/2
    around it (clamped to the frame); the DIS flow b->a, shifted into window coordinates,
    says where each patch pixel comes from. Weight ``c`` = reliability(flow b->a, flow a->b),
    zeroed where the source leaves the window.
    """

    def __init__(self, inputs, flows, patch, rng):
        """``inputs`` per-frame network inputs, ``flows`` a source with ``.flow(a, b)``."""
        self.inputs, self.p, self.rng = inputs, patch, rng
        self.m = patch // 2
        self.pairs = []
        for a in range(len(inputs) - 1):
            back, fwd = flows.flow(a + 1, a), flows.flow(a, a + 1)
            self.pairs.append((back, reliability(back, fwd)))

    def batch(self, n):
        """Lists of ``n`` (window of a (1, C, Hw, Ww), patch of b (1, C, P, P), flow in window
        coordinates (P, P, 2), weight (P, P)) - windows differ in size at the frame border."""
        out, p, m = [], self.p, self.m
        h, w = self.inputs[0].shape[:2]
        for _ in range(n):
            a = int(self.rng.integers(len(self.pairs)))
            back, rel = self.pairs[a]
            r, c = int(self.rng.integers(h - p + 1)), int(self.rng.integers(w - p + 1))
            r0, c0 = max(r - m, 0), max(c - m, 0)
            r1, c1 = min(r + p + m, h), min(c + p + m, w)
            flow = back[r : r + p, c : c + p] + np.array([c - c0, r - r0], np.float32)
            ys, xs = np.mgrid[0:p, 0:p]
            sx, sy = xs + flow[..., 0], ys + flow[..., 1]
            inside = (sx >= 0) & (sx <= c1 - c0 - 1) & (sy >= 0) & (sy <= r1 - r0 - 1)
            weight = rel[r : r + p, c : c + p] * inside
            win = torch.from_numpy(np.ascontiguousarray(self.inputs[a][r0:r1, c0:c1])).permute(2, 0, 1)[None]
            pat = torch.from_numpy(np.ascontiguousarray(self.inputs[a + 1][r : r + p, c : c + p])).permute(2, 0, 1)[
                None
            ]
            out.append((win, pat, flow.astype(np.float32), weight.astype(np.float32)))
        return out


def pad4(x):
    """Reflect-pad ``(N, C, H, W)`` on the bottom/right to multiples of 4 (the U-Net's two
    stride-2 levels); returns the padded tensor."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % 4, (-w) % 4
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def temporal_loss(net, items, device):
    """Ruder et al. 2018: ``sum c |N(x_b) - warp(N(x_a), flow b->a)|^2 / (3 sum c)`` pooled over
    the items of ``TemporalSampler.batch`` (images in [0, 1]); 0 if no reliable pixel."""
    num, den = 0.0, 0.0
    for win, pat, flow, weight in items:
        ya = net(pad4(win.to(device)))[..., : win.shape[2], : win.shape[3]]
        yb = net(pat.to(device))
        warped, _ = warp(ya, flow)  # out(p) = ya(p + flow(p)); flow is in window coordinates
        c = torch.from_numpy(weight).to(device)
        num = num + (c * ((yb[0] - warped[0]) ** 2).mean(0)).sum()
        den += float(weight.sum())
    return num / den if den > 0 else torch.zeros((), device=device)


def gradient_l1(a, b):
    """``(|dx a - dx b| + |dy a - dy b|) / 2``, means over pixels and channels; dx, dy forward
    differences between neighbouring pixels (units: image value per pixel)."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return ((dx(a) - dx(b)).abs().mean() + (dy(a) - dy(b)).abs().mean()) / 2


# -- training ---------------------------------------------------------------------------
def train(key_in, key_out, temporal, args, budgets, device):
    """Train N on the keyframe pair within the longest budget (seconds of wall time).

    Per step: a discriminator step (LSGAN: ``(D(x, y) - 1)^2 + D(x, N(x))^2``), then a
    generator step on ``|N(x) - y|_1 + adv (D(x, N(x)) - 1)^2 + temporal L_t`` (means over
    pixels and channels). Every 20 steps and when a budget is reached the mean L1 on the held-out
    patches is measured; the best weights are kept; stop early after 15 measurements without a gain of 0.5%.
    Returns ``{budget: (state_dict, seconds, steps)}`` (the best weights as of that budget, the
    training seconds and steps actually spent) and a stats dict (s/step, GFLOP/step, curve).
    """
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    cin = key_in.shape[2]
    G, D = Generator(cin, args.width, args.blocks).to(device), Discriminator(cin).to(device)
    opt_g = torch.optim.Adam(G.parameters(), args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), args.lr, betas=(0.5, 0.999))
    sampler = PatchSampler(key_in, key_out, args.patch, rng)
    vx, vy = (t.to(device) for t in sampler.validation())
    counter = FlopCounter(G, D)
    best, best_state, stale, steps, curve = float("inf"), None, 0, 0, []
    snaps, stopped = {}, None
    t0 = time.perf_counter()
    flops_step = None
    while True:
        elapsed = time.perf_counter() - t0
        due = [b for b in budgets if b not in snaps and elapsed >= b]
        if steps % 20 == 0 or due:
            with torch.no_grad():
                val = float((G(vx) - vy).abs().mean())
            curve.append((elapsed, steps, val))
            if val < best * 0.995 or best_state is None:
                best, best_state, stale = min(val, best), copy.deepcopy(G.state_dict()), 0
            else:
                stale += 1
            if stale >= 15:
                stopped = steps
        for b in budgets:
            if b not in snaps and (elapsed >= b or stopped is not None):
                snaps[b] = (copy.deepcopy(best_state), elapsed, steps)
        if len(snaps) == len(budgets):
            break
        counter.on = steps == 0
        x, y = (t.to(device) for t in sampler.batch(args.batch))
        fake = G(x)
        d_loss = ((D(x, y) - 1) ** 2).mean() + (D(x, fake.detach()) ** 2).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = (fake - y).abs().mean()
        if args.grad_weight:
            g_loss = g_loss + args.grad_weight * gradient_l1(fake, y)
        if args.adv_weight:
            g_loss = g_loss + args.adv_weight * ((D(x, fake) - 1) ** 2).mean()
        if temporal is not None and args.temporal_weight and steps % args.temporal_every == 0:
            g_loss = g_loss + args.temporal_weight * temporal_loss(G, temporal.batch(args.temporal_batch), device)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if counter.on:
            flops_step, counter.on = 3 * counter.flops, False
        steps += 1
    counter.remove()
    seconds = time.perf_counter() - t0
    stats = dict(
        s_step=seconds / max(steps, 1),
        gflop_step=(flops_step or 0) / 1e9,
        steps=steps,
        stopped=stopped,
        curve=curve,
        best_val=best,
    )
    return snaps, stats, G


@torch.no_grad()
def infer(G, state, inputs, device):
    """N on every whole frame; returns (outputs (H, W, 3) float32, seconds per frame list)."""
    G.load_state_dict(state)
    G.eval()
    outs, secs = [], []
    for x in inputs:
        t0 = time.perf_counter()
        xt = to_tensor(x, device)
        y = G(pad4(xt))[..., : x.shape[0], : x.shape[1]]
        outs.append(y[0].permute(1, 2, 0).cpu().numpy().astype(np.float32))
        secs.append(time.perf_counter() - t0)
    G.train()
    return outs, secs


def inference_gflop(G, cin, size, device):
    """Forward conv GFLOP of N on one frame of ``size`` (W, H), by the FlopCounter."""
    counter = FlopCounter(G)
    counter.on = True
    with torch.no_grad():
        G(pad4(torch.zeros(1, cin, size[1], size[0], device=device)))
    counter.remove()
    return counter.flops / 1e9


def learn_sequence(seq, args, budgets, device):
    """Train on ``seq`` (keyframe 0, temporal loss on its consecutive frames) and run every
    budget's weights on all frames. Returns ``{budget: (outs, s/frame list, train s, steps)}``,
    the training stats and the set-up seconds (DIS flows, guides)."""
    t0 = time.perf_counter()
    flows = fb.Flows(seq.frames)
    guides = gaussian_guides(seq.frames, flows, seed=args.seed) if args.guides == "gauss" else None
    inputs = net_inputs(seq.frames, guides)
    temporal = (
        TemporalSampler(inputs, flows, args.patch, np.random.default_rng(args.seed + 1))
        if args.temporal_weight and len(seq.frames) > 1
        else None
    )
    setup = time.perf_counter() - t0
    snaps, stats, G = train(inputs[0], seq.refs[0], temporal, args, budgets, device)
    results = {}
    for b in budgets:
        state, secs, steps = snaps[b]
        outs, per = infer(G, state, inputs, device)
        results[b] = (outs, per, secs, steps)
    stats["gflop_frame"] = inference_gflop(G, inputs[0].shape[2], (inputs[0].shape[1], inputs[0].shape[0]), device)
    return results, stats, setup


# -- run --------------------------------------------------------------------------------
def budgets_of(args):
    """The training budgets in seconds, ascending."""
    text = args.train_seconds or ("4" if args.quick else "60,180")
    return sorted(float(v) for v in str(text).split(","))


def fit_patch(args, seqs_shapes):
    """Patch side that fits twice into the smallest frame, a multiple of 4, at most ``--patch``."""
    smallest = min(min(h, w) for h, w in seqs_shapes)
    return max(8, min(args.patch, smallest // 2) // 4 * 4)


def run(args):
    """Prints the summary (same columns as bench fast + key PSNR, train s, steps, s/frame), PSNR
    and sharpness by distance, and seconds/FLOPs per step and per frame."""
    args.out.mkdir(parents=True, exist_ok=True)
    scale = args.scale or (1 / 8 if args.quick else 1.0)
    vscale = args.video_scale or (0.1 if args.quick else 0.5)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    budgets = budgets_of(args)
    args.batch = args.batch or (8 if args.quick else 24)
    ref, ref_line = fb.make_reference(args)
    eval_method = "deepflow" if "deepflow" in available_methods() else "dis"
    print_header("Fast mode route (a): a network trained per clip on keyframe patches", args)
    print(f"- reference stylisation: {ref_line}")
    print(
        f"- network: U-Net widths {args.width}/{2 * args.width}/{4 * args.width}, {args.blocks} residual "
        f"blocks, input {'RGB + Gaussian-mixture guide' if args.guides == 'gauss' else 'RGB'}; patches "
        f"{args.patch} px (fitted to small frames), batch {args.batch}, Adam {args.lr:g}; losses L1 + "
        f"{args.adv_weight:g} x LSGAN patch + {args.temporal_weight:g} x temporal (DIS flow, "
        f"reliability; {args.temporal_batch} consecutive-frame crops per step); device {device}"
    )
    print(
        f"- budgets {', '.join(f'{b:g}' for b in budgets)} s of training per sequence (one run, "
        "best held-out weights at each budget); Sintel scale {:g}, cockatoo scale {:g}\n".format(scale, vscale)
    )
    methods = [f"learned {b:g} s" for b in budgets] + ([] if args.no_route_b else ["fast (b)"]) + ["per-frame"]
    summary = Table(
        *fb.SUMMARY_COLUMNS,
        "key PSNR",
        "train s",
        "steps",
        "s/frame",
        title="Summary route (a) vs (b) (means over the predicted frames)",
    )
    by_distance = Table(
        "sequence",
        "distance",
        "method",
        "PSNR",
        "sharpness",
        "sharpness revealed",
        title="Route (a) vs (b) by distance from the keyframe",
    )
    speed = Table(
        "sequence",
        "size",
        "train s/step",
        "train GFLOP/step",
        "train GFLOP/s",
        "infer s/frame",
        "infer GFLOP/frame",
        "infer GFLOP/s",
        "set-up s",
        "early stop step",
        title="Seconds and FLOPs of route (a)",
    )
    pooled = {m: [] for m in methods}
    extra = {m: [] for m in methods}  # (key PSNR, train s, steps, s/frame) per sequence
    patch0 = args.patch

    def one(seq, name, pooled_rows, pooled_extra):
        """Train on ``seq``, evaluate every budget, route (b) and per-frame into ``pooled_rows``
        (metric rows) and ``pooled_extra`` (key PSNR, train s, steps, s/frame); a speed row."""
        args.patch = fit_patch(argparse.Namespace(patch=patch0), [seq.frames[0].shape[:2]])
        results, stats, setup = learn_sequence(seq, args, budgets, device)
        h, w = seq.frames[0].shape[:2]
        per_all = []
        for b in budgets:
            outs, per, secs, steps = results[b]
            m = f"learned {b:g} s"
            pooled_rows[m] += fb.evaluate(seq, outs)
            pooled_extra[m].append((fb.psnr(outs[0], seq.refs[0]), secs, steps, float(np.median(per))))
            per_all += per
        if not args.no_route_b:
            outs_b, per_b = fb.run_fast(seq, args)
            pooled_rows["fast (b)"] += fb.evaluate(seq, outs_b)
            pooled_extra["fast (b)"].append((None, 0.0, None, float(np.median(per_b))))
            results["b"] = (outs_b,)
        pooled_rows["per-frame"] += fb.evaluate(seq, seq.refs)
        pooled_extra["per-frame"].append((None, None, None, seq.ref_seconds))
        s_frame = float(np.median(per_all))
        speed.add(
            name,
            f"{w}x{h}",
            stats["s_step"],
            stats["gflop_step"],
            stats["gflop_step"] / stats["s_step"],
            s_frame,
            stats["gflop_frame"],
            stats["gflop_frame"] / s_frame,
            setup,
            "-" if stats["stopped"] is None else stats["stopped"],
        )
        print(
            f"fast_learned: {name} done ({stats['steps']} steps, held-out L1 {stats['best_val']:.4f})",
            file=sys.stderr,
            flush=True,
        )
        return results

    def add_summary(name, rows, extras):
        """One summary row per method: means of the metric rows, E over the per-frame E."""
        if not rows["per-frame"]:
            return
        base = fb.mean(r["E"] for r in rows["per-frame"])
        for m in methods:
            rs, ex = rows[m], extras[m]
            E = fb.mean(r["E"] for r in rs)
            srev = fb.mean(r["sharp_rev"] for r in rs)
            col = lambda k: "-" if not ex or ex[0][k] is None else float(np.mean([e[k] for e in ex]))  # noqa: E731
            summary.add(
                name,
                len(rs),
                m,
                "-" if m == "per-frame" else fb.mean(r["psnr"] for r in rs),
                fb.mean(r["mad"] for r in rs),
                E,
                E / max(base, 1e-12),
                fb.mean(r["sharp"] for r in rs),
                fb.mean(r["revealed"] for r in rs),
                "-" if srev is None else srev,
                col(0),
                col(1),
                col(2),
                col(3),
            )

    first = None
    for seq in fb.pair_seqs(args, ref, scale):
        results = one(seq, f"pair {seq.name}", pooled, extra)
        if first is None:
            first = seq.name
            b = budgets[-1]
            write_image(
                args.out / "fast_learned_pair.png",
                grid(
                    [
                        [labelled(seq.refs[0], "keyframe (ref t)"), labelled(results[b][0][0], f"learned t ({b:g} s)")],
                        [labelled(seq.refs[1], "ref t+1"), labelled(results[b][0][1], f"learned t+1 ({b:g} s)")],
                    ]
                ),
            )
    add_summary("sintel_pairs", pooled, extra)
    for d_method in methods[:-1]:
        rs = pooled[d_method]
        by_distance.add(
            "sintel_pairs",
            1,
            d_method,
            fb.mean(r["psnr"] for r in rs),
            fb.mean(r["sharp"] for r in rs),
            fb.mean(r["sharp_rev"] for r in rs) or "-",
        )
    for name, frames_ in fb.clip_frames(args, scale, vscale):
        seq = fb.Seq(name, frames_, ref, eval_method)
        rows, extras = {m: [] for m in methods}, {m: [] for m in methods}
        results = one(seq, name, rows, extras)
        add_summary(name, rows, extras)
        n = len(frames_)
        picks = sorted({1, 2, 5, 9, 20, 40, 60, n - 1} & set(range(1, n)))
        for d in picks:
            for m in methods[:-1]:
                r = rows[m][d - 1]
                by_distance.add(name, d, m, r["psnr"], r["sharp"], "-" if r["sharp_rev"] is None else r["sharp_rev"])
        b = budgets[-1]
        cols = [labelled(results[b][0][d], f"learned {d}") for d in picks[-3:]]
        rows_img = [cols, [labelled(seq.refs[d], f"ref {d}") for d in picks[-3:]]]
        if "b" in results:
            rows_img.insert(1, [labelled(results["b"][0][d], f"fast (b) {d}") for d in picks[-3:]])
        write_image(args.out / f"fast_learned_{name}.png", grid(rows_img))
    args.patch = patch0
    summary.notes.append(
        "Columns as bench fast. key PSNR: the network's output on the keyframe itself vs the "
        "stylised keyframe (the training target; learned rows output N(x) on every frame, the "
        "keyframe included). train s / steps: training actually spent (less than the budget "
        "after an early stop). s/frame: median seconds per frame (learned: inference; fast (b): "
        "flow + synthesis; per-frame: the reference)."
    )
    summary.print()
    by_distance.print()
    speed.notes.append(
        "FLOPs: conv multiply-adds x 2 counted by forward hooks; a training step = 3 x the forward "
        "FLOPs of its passes (G on keyframe and temporal crops, D three times). GFLOP/s = what "
        "this CPU sustained."
    )
    speed.print()
    print(
        f"Figures: {args.out / 'fast_learned_pair.png'}, {args.out / 'fast_learned_sintel_clip.png'}, "
        f"{args.out / 'fast_learned_cockatoo.png'}\n"
    )
