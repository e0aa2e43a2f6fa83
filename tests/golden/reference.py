#!/usr/bin/python3
"""Independent NumPy reference for the SmallThinker forward pass.

Written apart from the engine: its own GGUF parser, its own dequantizers and
the math of MODEL.md section 4 in float64. Used by golden_test.cc:

  reference.py MODEL.gguf TOKENS.txt OUT.bin [--q8-activations]

TOKENS.txt holds whitespace-separated token ids; OUT.bin receives logits
[n_tokens, vocab] as raw little-endian float64 for every position.

--q8-activations mirrors llama.cpp's (and the engine's) numerics for Q4_0 /
Q8_0 weights: the input vector of every such matrix product is first
quantized to Q8_0 blocks. Without it activations stay float64. Q5_0, Q4_K
and Q6_K weights (a Q4_K_M file) are dequantized by their ggml layout, then
taken through Q8_0 as the engine computes them, except Q4_K and Q6_K
experts, which the engine computes as stored, and with
--kquant-dense-as-stored (the engine's flag) dense Q4_K and Q6_K as well.
"""
import struct
import sys

import numpy as np

GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
                7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
F32, F16, Q4_0, Q8_0, BF16 = 0, 1, 2, 8, 30
# ggml storage formats of llama.cpp's K-quant mixes (Q4_K_M), which the
# engine computes as Q8_0 (their values re-quantized once), except Q4_K and
# Q6_K experts (computed as stored, against Q8_0 activations).
Q5_0, Q4_K, Q6_K = 6, 12, 14
STORAGE = (Q5_0, Q4_K, Q6_K)


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        return self.take(GGUF_SCALARS[t])


def load_gguf(path):
    data = open(path, "rb").read()
    r = Reader(data)
    assert r.take("<I") == 0x46554747, "bad magic"
    version = r.take("<I")
    assert version in (2, 3)
    n_tensors, n_kv = r.take("<Q"), r.take("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        infos.append((name, ne, r.take("<I"), r.take("<Q")))
    align = meta.get("general.alignment", 32)
    base = (r.pos + align - 1) // align * align
    tensors = {}
    for name, ne, t, off in infos:
        tensors[name] = dequantize(data, base + off, ne, t)
    return meta, tensors


def f16(u16):
    return u16.view(np.float16).astype(np.float64)


def dequantize(data, off, ne, t):
    n = int(np.prod(ne))
    shape = list(reversed(ne))  # numpy row-major: slowest first
    if t == F32:
        v = np.frombuffer(data, np.float32, n, off).astype(np.float64)
    elif t == F16:
        v = np.frombuffer(data, np.float16, n, off).astype(np.float64)
    elif t == BF16:
        u = np.frombuffer(data, np.uint16, n, off).astype(np.uint32) << 16
        v = u.view(np.float32).astype(np.float64)
    elif t == Q8_0:
        blocks = np.frombuffer(data, np.uint8, n // 32 * 34, off).reshape(-1, 34)
        d = f16(blocks[:, :2].copy().view(np.uint16))
        q = blocks[:, 2:].view(np.int8).astype(np.float64)
        v = (q * d).reshape(-1)
    elif t == Q4_0:
        blocks = np.frombuffer(data, np.uint8, n // 32 * 18, off).reshape(-1, 18)
        d = f16(blocks[:, :2].copy().view(np.uint16))
        qs = blocks[:, 2:]
        lo = (qs & 0x0F).astype(np.float64) - 8
        hi = (qs >> 4).astype(np.float64) - 8
        v = (np.concatenate([lo, hi], axis=1) * d).reshape(-1)
    elif t == Q5_0:
        # f16 d, u32 of fifth bits (bit j: weight j), 16 bytes of nibbles
        # (low: weights 0-15, high: 16-31); value d * (q - 16).
        blocks = np.frombuffer(data, np.uint8, n // 32 * 22, off).reshape(-1, 22)
        d = f16(blocks[:, :2].copy().view(np.uint16))
        qh = blocks[:, 2:6].copy().view("<u4")
        bits = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int64)
        qs = blocks[:, 6:].astype(np.int64)
        q = np.concatenate([(qs & 0xF) | (bits[:, :16] << 4), (qs >> 4) | (bits[:, 16:] << 4)], axis=1)
        v = ((q - 16).astype(np.float32) * d.astype(np.float32)).reshape(-1)
    elif t == Q4_K:
        # f16 d, f16 dmin, 12 bytes of eight 6-bit (scale, min) pairs, 128
        # bytes of nibbles: 64-weight chunks, low nibbles first. Value
        # d * scale * q - dmin * min per 32-weight sub-block.
        # In float32 operation by operation, as ggml's C computes it.
        blocks = np.frombuffer(data, np.uint8, n // 256 * 144, off).reshape(-1, 144)
        d = f16(blocks[:, 0:2].copy().view(np.uint16)).astype(np.float32)
        dmin = f16(blocks[:, 2:4].copy().view(np.uint16)).astype(np.float32)
        sc = blocks[:, 4:16].astype(np.int64)
        scale, mn = [], []
        for j in range(8):
            if j < 4:
                scale.append(sc[:, j] & 63)
                mn.append(sc[:, j + 4] & 63)
            else:
                scale.append((sc[:, j + 4] & 0xF) | ((sc[:, j - 4] >> 6) << 4))
                mn.append((sc[:, j + 4] >> 4) | ((sc[:, j] >> 6) << 4))
        qs = blocks[:, 16:].astype(np.int64)
        parts = []
        for c in range(4):
            chunk = qs[:, 32 * c:32 * c + 32]
            for j, q in ((2 * c, chunk & 0xF), (2 * c + 1, chunk >> 4)):
                dl = d * scale[j][:, None].astype(np.float32)
                ml = dmin * mn[j][:, None].astype(np.float32)
                parts.append(dl * q.astype(np.float32) - ml)
        v = np.concatenate(parts, axis=1).reshape(-1)
    elif t == Q6_K:
        # 128 bytes of low nibbles, 64 of 2-bit highs, 16 int8 scales (one
        # per 16 weights), f16 d; value d * scale * (q - 32). In each
        # 128-weight half, weight l + 32 k takes nibble k // 2 of byte
        # l + 32 (k % 2) and bits 2k of the high byte l.
        blocks = np.frombuffer(data, np.uint8, n // 256 * 210, off).reshape(-1, 210)
        ql = blocks[:, :128].astype(np.int64)
        qh = blocks[:, 128:192].astype(np.int64)
        sc = blocks[:, 192:208].copy().view(np.int8).astype(np.float32)
        d = f16(blocks[:, 208:210].copy().view(np.uint16)).astype(np.float32)
        q = np.zeros((blocks.shape[0], 256), np.int64)
        for h in range(2):
            lo, hi = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32]
            for k in range(4):
                nib = lo[:, 32 * (k % 2):32 * (k % 2) + 32]
                nib = nib & 0xF if k < 2 else nib >> 4
                q[:, 128 * h + 32 * k:128 * h + 32 * k + 32] = nib | (((hi >> (2 * k)) & 3) << 4)
        v = (d * np.repeat(sc, 16, axis=1) * (q - 32).astype(np.float32)).reshape(-1)
    else:
        raise ValueError(f"unsupported type {t}")
    return v.astype(np.float64).reshape(shape)


def q8_round_trip(x):
    """Quantize rows of x to Q8_0 and back (ggml's quantize_row_q8_0_ref)."""
    shape = x.shape
    b = x.astype(np.float32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = (amax / 127.0).astype(np.float32)
    inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
    y = b * inv[:, None]
    q = np.sign(y) * np.floor(np.abs(y) + 0.5)  # roundf: half away from zero
    d16 = d.astype(np.float16).astype(np.float64)
    return (q * d16[:, None]).reshape(shape)


class Model:
    def __init__(self, path, q8_act, dense_as_stored=False):
        self.meta, self.t = load_gguf(path)
        m, a = self.meta, "smallthinker."
        self.d = m[a + "embedding_length"]
        self.L = m[a + "block_count"]
        self.nh = m[a + "attention.head_count"]
        self.nkv = m.get(a + "attention.head_count_kv", self.nh)
        self.hd = m.get(a + "attention.key_length", self.d // self.nh)
        self.E = m[a + "expert_count"]
        self.k = m[a + "expert_used_count"]
        self.eps = m[a + "attention.layer_norm_rms_epsilon"]
        self.theta = m.get(a + "rope.freq_base", 10000.0)
        self.gating = m.get(a + "expert_gating_func", 2)
        self.window = m.get(a + "attention.sliding_window", 0)
        self.period = m.get(a + "attention.sliding_window_pattern", 4)
        self.theta_swa = m.get(a + "rope.freq_base_swa", self.theta)
        self.types = {}
        self.q8_act = q8_act
        # Remember which tensors were block-quantized (for --q8-activations).
        data = open(path, "rb").read()
        r = Reader(data)
        r.take("<I"); r.take("<I")
        n_tensors, n_kv = r.take("<Q"), r.take("<Q")
        for _ in range(n_kv):
            r.string(); r.value(r.take("<I"))
        for _ in range(n_tensors):
            name = r.string(); nd = r.take("<I")
            [r.take("<Q") for _ in range(nd)]
            self.types[name] = r.take("<I"); r.take("<Q")
        # The engine computes storage-format tensors as Q8_0, except Q4_K and
        # Q6_K experts (computed as stored); it reads the rows of an
        # embedding that is not also the LM head as they are.
        for name, t in self.types.items():
            if name == "token_embd.weight" and "output.weight" in self.t:
                continue
            if t in (Q4_K, Q6_K) and ("_exps." in name or dense_as_stored):
                continue
            if t in STORAGE:
                self.t[name] = q8_round_trip(self.t[name])

    def matmul(self, name, W, x):
        """x [n, in] @ W[out, in]^T with optional Q8 activation emulation."""
        if self.q8_act and self.types[name] in (Q4_0, Q8_0) + STORAGE:
            x = q8_round_trip(x)
        return x @ W.T

    def rms(self, x, g):
        return g * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps)

    def rope(self, x, pos, theta):
        # x [n, heads, hd]; NeoX rotate-half.
        half = self.hd // 2
        inv = theta ** (-2.0 * np.arange(half) / self.hd)
        phi = pos[:, None] * inv[None, :]
        c, s = np.cos(phi)[:, None, :], np.sin(phi)[:, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)

    def forward(self, tokens):
        t, n = self.t, len(tokens)
        x = t["token_embd.weight"][tokens].copy()
        pos = np.arange(n, dtype=np.float64)
        for l in range(self.L):
            b = f"blk.{l}."
            # llama.cpp: the pattern places the window; NoPE stays at l % 4 == 0
            # (n_no_rope_layer_step), except in a model of exactly 4 layers.
            swa = self.window > 0 and (self.period == 0 or l % self.period != 0)
            use_rope = self.window == 0 or self.L == 4 or l % 4 != 0
            logits = self.matmul(b + "ffn_gate_inp.weight", t[b + "ffn_gate_inp.weight"], x)
            h = self.rms(x, t[b + "attn_norm.weight"])
            q = self.matmul(b + "attn_q.weight", t[b + "attn_q.weight"], h).reshape(n, self.nh, self.hd)
            k = self.matmul(b + "attn_k.weight", t[b + "attn_k.weight"], h).reshape(n, self.nkv, self.hd)
            v = self.matmul(b + "attn_v.weight", t[b + "attn_v.weight"], h).reshape(n, self.nkv, self.hd)
            if use_rope:
                theta = self.theta_swa if swa else self.theta
                q, k = self.rope(q, pos, theta), self.rope(k, pos, theta)
            group = self.nh // self.nkv
            att = np.zeros((n, self.nh, self.hd))
            for hq in range(self.nh):
                kh = hq // group
                s = q[:, hq, :] @ k[:, kh, :].T / np.sqrt(self.hd)
                i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
                mask = j > i
                if swa:
                    mask |= (i - j) >= self.window
                s[mask] = -np.inf
                s -= s.max(axis=1, keepdims=True)
                p = np.exp(s)
                p /= p.sum(axis=1, keepdims=True)
                att[:, hq, :] = p @ v[:, kh, :]
            x = x + self.matmul(b + "attn_output.weight", t[b + "attn_output.weight"],
                                att.reshape(n, -1))
            h2 = self.rms(x, t[b + "ffn_norm.weight"])
            gate, up = t[b + "ffn_gate_exps.weight"], t[b + "ffn_up_exps.weight"]
            down = t[b + "ffn_down_exps.weight"]
            # Upstream stores down as [E, d_model, d_expert]; PowerInfer's
            # transposed files as [E, d_expert, d_model] (same as gate).
            transposed = down.shape[1:] == gate.shape[1:] and gate.shape[1] != gate.shape[2]
            moe = np.zeros_like(x)
            for ti in range(n):
                lg = logits[ti]
                ids = sorted(range(self.E), key=lambda e: (-lg[e], e))[: self.k]
                sel = lg[ids]
                g = 1 / (1 + np.exp(-sel)) if self.gating == 2 else np.exp(sel - sel.max())
                w = g / max(g.sum(), 6.1035e-5)
                for wj, e in zip(w, ids):
                    xe = h2[ti:ti + 1]
                    ge = self.matmul(b + "ffn_gate_exps.weight", gate[e], xe)
                    ue = self.matmul(b + "ffn_up_exps.weight", up[e], xe)
                    z = np.maximum(ge, 0) * ue
                    if transposed:  # row-accumulated in float, no Q8 activations
                        ye = z @ down[e]
                    else:
                        ye = self.matmul(b + "ffn_down_exps.weight", down[e], z)
                    moe[ti] += wj * ye[0]
            x = x + moe
        out = t.get("output.weight", t["token_embd.weight"])
        name = "output.weight" if "output.weight" in t else "token_embd.weight"
        return self.matmul(name, out, self.rms(x, t["output_norm.weight"]))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    q8 = "--q8-activations" in sys.argv
    model = Model(args[0], q8, "--kquant-dense-as-stored" in sys.argv)
    tokens = [int(v) for v in open(args[1]).read().split()]
    model.forward(tokens).astype("<f8").tofile(args[2])


if __name__ == "__main__":
    main()
