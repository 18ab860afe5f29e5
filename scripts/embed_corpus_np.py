#!/usr/bin/env python3
"""Add an `embedding` column (all-MiniLM-L6-v2 sentence embeddings, list<float32>, L2-normalised)
to parquet files, computed with a plain numpy BERT forward pass (no torch).

Documents are truncated to --max-tokens tokens (default 128). Mean pooling over real tokens,
then L2 normalisation, as sentence-transformers does for this model.

Usage: embed_corpus_np.py MODEL_DIR IN.parquet [IN2.parquet ...] --out-dir DIR
(needs numpy, pyarrow, safetensors, tokenizers; scripts/fetch-assets.sh installs them)
"""
import argparse, json, os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def erf(x):
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)
    s = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-x * x)
    return s * y


def layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class MiniLM:
    def __init__(self, model_dir, max_tokens):
        self.w = {k: v.astype(np.float32) for k, v in load_file(f"{model_dir}/model.safetensors").items()}
        self.cfg = json.load(open(f"{model_dir}/config.json"))
        self.tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
        self.tok.no_padding()
        self.tok.enable_truncation(max_tokens)

    def embed(self, text):
        w, cfg = self.w, self.cfg
        ids = np.array(self.tok.encode(text).ids)
        n, hidden, heads = len(ids), cfg["hidden_size"], cfg["num_attention_heads"]
        hd = hidden // heads
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] + w["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        for layer in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{layer}."

            def linear(h, name):
                return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q, k, v = (linear(x, f"attention.self.{m}").reshape(n, heads, hd).transpose(1, 0, 2) for m in ("query", "key", "value"))
            att = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            o = (att @ v).transpose(1, 0, 2).reshape(n, hidden)
            x = layer_norm(x + linear(o, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = linear(x, "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
            x = layer_norm(x + linear(h, "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        e = x.mean(0)
        return (e / np.linalg.norm(e)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--text-column", default="text")
    a = ap.parse_args()
    model = MiniLM(a.model_dir, a.max_tokens)
    os.makedirs(a.out_dir, exist_ok=True)
    for path in a.inputs:
        f = pq.ParquetFile(path)
        table = f.read()
        emb = [model.embed(t) for t in table.column(a.text_column).to_pylist()]
        col = pa.array([e.tolist() for e in emb], type=pa.list_(pa.float32()))
        table = table.append_column("embedding", col)
        out = os.path.join(a.out_dir, os.path.basename(path))
        pq.write_table(table, out + ".tmp", compression="zstd", row_group_size=f.metadata.row_group(0).num_rows)
        os.replace(out + ".tmp", out)
        print(f"{out}: {len(emb)} embeddings", flush=True)


if __name__ == "__main__":
    main()
