#!/usr/bin/env python3
"""Numpy float64 oracle for the generated test model (gateway/testmodel).

Dev-time only: recomputes last_hidden_state and the mean-pooled, L2-normalized
sentence embedding of a few fixed token-id sequences from the initialisers of
onnx/model.onnx, independently of ONNX Runtime, and prints golden JSON for
gateway/backend/onnx/testdata/golden.json. Needs Debian's python3-numpy and
python3-onnx (run with /usr/bin/python3). Regenerate with:

    go run ./gateway/cmd/testmodel -out /tmp/golden-model -pooled
    /usr/bin/python3 scripts/reference_model.py /tmp/golden-model \
        > gateway/backend/onnx/testdata/golden.json
"""
import hashlib
import json
import math
import re
import sys

import numpy as np
import onnx
from onnx import numpy_helper

# Fixed inputs: "hello world!" with special tokens, a longer sentence, a
# sentence pair (token types 0/1) and a lone [CLS] [SEP].
CASES = [
    {"ids": [101, 7592, 2088, 999, 102]},
    {"ids": [101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102]},
    {"ids": [101, 2054, 2003, 1037, 3899, 1029, 102, 1037, 2828, 1012, 102],
     "type_ids": [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]},
    {"ids": [101, 102]},
]

F32_MIN = float(np.finfo(np.float32).min)
erf = np.vectorize(math.erf)


def layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def forward(W, cfg, ids, type_ids, mask):
    H, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    d = H // heads
    S = len(ids)
    x = W["embeddings.word_embeddings.weight"][ids]
    x = x + W["embeddings.position_embeddings.weight"][:S]
    x = x + W["embeddings.token_type_embeddings.weight"][type_ids]
    x = layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"])
    add = (1.0 - mask) * F32_MIN  # [S], broadcast over query positions
    for l in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % l

        def lin(v, name):
            return v @ W[p + name + ".weight"] + W[p + name + ".bias"]

        def split(v):
            return v.reshape(S, heads, d).transpose(1, 0, 2)  # [h,S,d]

        q = split(lin(x, "attention.self.query"))
        k = split(lin(x, "attention.self.key"))
        v = split(lin(x, "attention.self.value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d) + add
        s = s - s.max(-1, keepdims=True)
        pr = np.exp(s)
        pr = pr / pr.sum(-1, keepdims=True)
        ctx = (pr @ v).transpose(1, 0, 2).reshape(S, H)
        x = layer_norm(lin(ctx, "attention.output.dense") + x,
                       W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"])
        h = lin(x, "intermediate.dense")
        h = h * 0.5 * (1.0 + erf(h / math.sqrt(2.0)))
        x = layer_norm(lin(h, "output.dense") + x,
                       W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"])
    return x


def main():
    model_dir = sys.argv[1]
    path = model_dir + "/onnx/model.onnx"
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    W = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in onnx.load(path).graph.initializer}
    with open(model_dir + "/config.json") as f:
        cfg = json.load(f)
    out = []
    for c in CASES:
        ids = np.array(c["ids"])
        type_ids = np.array(c.get("type_ids", [0] * len(ids)))
        mask = np.ones(len(ids))
        hidden = forward(W, cfg, ids, type_ids, mask)
        mean = (hidden * mask[:, None]).sum(0) / max(mask.sum(), 1e-9)
        emb = mean / max(np.linalg.norm(mean), 1e-12)
        out.append({"ids": c["ids"], "type_ids": type_ids.tolist(),
                    "last_hidden_state": [[float("%.9g" % v) for v in row] for row in hidden],
                    "sentence_embedding": [float("%.9g" % v) for v in emb]})
    text = json.dumps({"model_sha256": sha,
                       "generator": "go run ./gateway/cmd/testmodel -out DIR -pooled (seed 0)",
                       "oracle": "scripts/reference_model.py (numpy float64)",
                       "cases": out}, indent=1)
    # One line per vector keeps the file reviewable.
    text = re.sub(r"\[\s*([-+0-9.e]+(?:,\s*[-+0-9.e]+)*)\s*\]",
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
