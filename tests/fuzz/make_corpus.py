#!/usr/bin/env python3
"""Writes the GGUF seed corpus for gguf_fuzz into tests/fuzz/corpus/gguf/.

An independent GGUF encoder (struct only, no project code): valid v2/v3 files
with every metadata value type (incl. nested arrays) and every supported tensor
type, plus truncated and broken variants. Files named valid_* must parse; the
replay test (gguf_fuzz_replay) checks that. Deterministic: rerunning produces
the same bytes.

Usage: /usr/bin/python3 tests/fuzz/make_corpus.py [out_dir]
"""
import os
import random
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i",
              F32: "<f", BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}
# ggml type id -> (block elems, block bytes)
F32_T, F16_T, Q4_0_T, Q8_0_T, BF16_T = 0, 1, 2, 8, 30
Q6_K_T = 14  # storage-only: read and converted at load (kernels/ggml_storage.h)
BLOCK = {F32_T: (1, 4), F16_T: (1, 2), Q4_0_T: (32, 18), Q8_0_T: (32, 34), BF16_T: (1, 2),
         Q6_K_T: (256, 210)}


def gstr(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def value_body(t, v):
    """Encodes a value of type t (without the type tag)."""
    if t == STR:
        return gstr(v)
    if t == ARR:
        elem, items = v
        out = struct.pack("<IQ", elem, len(items))
        return out + b"".join(value_body(elem, x) for x in items)
    return struct.pack(SCALAR_FMT[t], v)


def kv(key, t, v):
    return gstr(key) + struct.pack("<I", t) + value_body(t, v)


def pad(n, a):
    return (n + a - 1) // a * a


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: list of (key, type, value); tensors: list of (name, ne, ggml_type, data)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    out += b"".join(kv(*x) for x in kvs)
    offset, infos = 0, b""
    for name, ne, t, data in tensors:
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", t, offset)
        offset = pad(offset + len(data), alignment)
    out += infos
    out += b"\0" * (pad(len(out), alignment) - len(out))
    for _, _, _, data in tensors:
        out += data + b"\0" * (pad(len(data), alignment) - len(data))
    return out


def nbytes(ne, t):
    elems, size = BLOCK[t]
    n = 1
    for d in ne:
        n *= d
    return n // elems * size


def tensor(rng, name, ne, t):
    return (name, ne, t, bytes(rng.randrange(256) for _ in range(nbytes(ne, t))))


def all_types_kvs():
    return [
        ("general.architecture", STR, "smallthinker"),
        ("general.name", STR, "fuzz seed \u4e16\u754c"),
        ("t.u8", U8, 255), ("t.i8", I8, -128), ("t.u16", U16, 65535), ("t.i16", I16, -32768),
        ("t.u32", U32, 4294967295), ("t.i32", I32, -2147483648), ("t.f32", F32, 1e-6),
        ("t.bool", BOOL, 1), ("t.str_empty", STR, ""), ("t.u64", U64, 2**64 - 1),
        ("t.i64", I64, -2**63), ("t.f64", F64, 1500000.0),
        ("a.u8", ARR, (U8, [0, 1, 255])), ("a.i8", ARR, (I8, [-1, 2])),
        ("a.u16", ARR, (U16, [7])), ("a.i16", ARR, (I16, [-7])),
        ("a.u32", ARR, (U32, [1, 2, 3])), ("a.i32", ARR, (I32, [1, 3, 4, 5])),
        ("a.f32", ARR, (F32, [0.5, -2.0])), ("a.bool", ARR, (BOOL, [0, 1])),
        ("a.str", ARR, (STR, ["", "a b", "\u0120hello"])), ("a.u64", ARR, (U64, [2**63])),
        ("a.i64", ARR, (I64, [-5])), ("a.f64", ARR, (F64, [1e300])),
        ("a.empty", ARR, (I32, [])),
        ("a.nested", ARR, (ARR, [(I32, [1, 2]), (STR, ["x"]), (ARR, [(F32, [1.0])])])),
        ("smallthinker.block_count", U32, 2),
        ("smallthinker.rope.freq_base", F32, 1500000.0),
    ]


def all_types_tensors(rng):
    return [
        tensor(rng, "token_embd.weight", [32, 4], F16_T),
        tensor(rng, "output_norm.weight", [32], F32_T),
        tensor(rng, "blk.0.attn_q.weight", [32, 2], BF16_T),
        tensor(rng, "blk.0.ffn_gate_exps.weight", [64, 2, 2], Q8_0_T),
        tensor(rng, "blk.0.ffn_down_exps.weight", [32, 1, 1, 3], Q4_0_T),
        tensor(rng, "odd.f16", [7], F16_T),
        tensor(rng, "output.weight", [256, 2], Q6_K_T),
    ]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "gguf")
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, f))
    rng = random.Random(1234)
    files = {}
    kvs, ts = all_types_kvs(), all_types_tensors(rng)
    files["valid_v3_all_types.gguf"] = gguf(kvs, ts, 3)
    files["valid_v2_all_types.gguf"] = gguf(kvs, ts, 2)
    files["valid_align64.gguf"] = gguf([("general.alignment", U32, 64)] + kvs[:3], ts[:3], 3, 64)
    files["valid_align1.gguf"] = gguf([("general.alignment", U32, 1)], ts[1:2], 3, 1)
    files["valid_metadata_only.gguf"] = gguf(kvs[:5], [], 3)
    files["valid_empty.gguf"] = gguf([], [], 3)
    files["valid_tokenizer.gguf"] = gguf([
        ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.tokens", ARR, (STR, ["a", "b", "ab", "<|im_end|>"])),
        ("tokenizer.ggml.token_type", ARR, (I32, [1, 1, 1, 3])),
        ("tokenizer.ggml.merges", ARR, (STR, ["a b"])),
        ("tokenizer.ggml.eos_token_id", U32, 3)], ts[:1], 3)
    small = gguf(kvs[:2], ts[1:2], 3)
    for cut in (0, 3, 4, 7, 12, 23, 30, len(small) // 2, len(small) - 33, len(small) - 1):
        files["trunc_%03d.gguf" % cut] = small[:cut]
    files["bad_magic.gguf"] = b"GGUG" + small[4:]
    files["bad_version1.gguf"] = small[:4] + struct.pack("<I", 1) + small[8:]
    files["bad_bigendian.gguf"] = small[:4] + struct.pack(">I", 3) + small[8:]
    hdr = b"GGUF" + struct.pack("<I", 3)
    files["bad_tensor_count.gguf"] = hdr + struct.pack("<QQ", 2**62, 0) + b"\0" * 64
    files["bad_kv_count.gguf"] = hdr + struct.pack("<QQ", 0, 2**64 - 1) + b"\0" * 64
    files["bad_string_len.gguf"] = hdr + struct.pack("<QQQ", 0, 1, 2**63) + b"\0" * 32
    files["bad_array_len.gguf"] = (hdr + struct.pack("<QQ", 0, 1) + gstr("a") +
                                   struct.pack("<IIQ", ARR, U32, 2**61) + b"\0" * 32)
    files["bad_value_type.gguf"] = hdr + struct.pack("<QQ", 0, 1) + gstr("k") + struct.pack("<IQ", 13, 0)
    files["bad_bool.gguf"] = hdr + struct.pack("<QQ", 0, 1) + kv("b", BOOL, 2)
    files["bad_dup_key.gguf"] = gguf([("k", U32, 1), ("k", U32, 2)], [])
    files["bad_alignment.gguf"] = gguf([("general.alignment", U32, 48)], [])
    files["bad_alignment_type.gguf"] = gguf([("general.alignment", U64, 64)], [])
    deep = (I32, [1])
    for _ in range(9):
        deep = (ARR, [deep])
    files["bad_deep_nesting.gguf"] = gguf([("deep", ARR, deep)], [])

    def one_tensor(ne, t, offset=0, data_len=64, name="w"):
        """One raw tensor info (any type/shape/offset) followed by data_len bytes."""
        body = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + gstr(name) + struct.pack("<I", len(ne))
        body += b"".join(struct.pack("<Q", d) for d in ne) + struct.pack("<IQ", t, offset)
        body += b"\0" * (pad(len(body), 32) - len(body))
        return body + b"\x3c" * data_len

    files["bad_iq4_xs.gguf"] = one_tensor([256], 23, data_len=136)
    files["bad_q4_k_block.gguf"] = one_tensor([128], 12)
    files["bad_iq2_s.gguf"] = one_tensor([256], 22)
    files["bad_ndims5.gguf"] = one_tensor([1, 1, 1, 1, 1], F32_T)
    files["bad_zero_dim.gguf"] = one_tensor([4, 0], F32_T)
    files["bad_dim_overflow.gguf"] = one_tensor([2**32, 2**32], F32_T)
    files["bad_block_multiple.gguf"] = one_tensor([33], Q8_0_T)
    files["bad_q6_k_block.gguf"] = one_tensor([128], Q6_K_T)
    files["bad_misaligned.gguf"] = one_tensor([4], F32_T, offset=16)
    files["bad_past_end.gguf"] = one_tensor([64], F32_T, data_len=128)
    files["bad_offset_overflow.gguf"] = one_tensor([8], F32_T, offset=2**64 - 32)
    files["bad_dup_tensor.gguf"] = gguf([], [ts[1], ts[1]])
    total = 0
    for name, data in sorted(files.items()):
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
        total += len(data)
    print("wrote %d files, %d bytes, to %s" % (len(files), total, out_dir))


if __name__ == "__main__":
    main()
