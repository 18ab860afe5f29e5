"""Independent numpy forward passes of gleaner's two model families, used to produce the golden
values its Rust parity tests compare against.

  reference_models.py bert  MODEL_DIR OUT.json     sentence embeddings of SENTENCES
  reference_models.py llama MODEL_DIR OUT.json     per-token and mean losses of TEXTS,
                                                    plain and with MASKED_HEADS uniform

Written from the papers' formulas (BERT post-norm encoder with mean pooling; Llama pre-norm
decoder with RoPE rotate_half, GQA, SwiGLU), float64 throughout.
needs: numpy, safetensors, tokenizers
"""
import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming a musical instrument.",
    "The stock market fell sharply today.",
    "def add(a, b):\n    return a + b",
    "Ünïcödé text, with punctuation!? and numbers 12345.",
]
TEXTS = {
    "english": "The cat sat on the mat. It was a sunny day, and the children were playing in the garden near the old oak tree.",
    "code": "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return a + b\n\nprint(add(2, 3))\n",
    "spam": "CLICK HERE!!! FREE $$$ viagra cheap mortgage rates 100% guaranteed act now limited offer unsubscribe",
}
# (layer, head) pairs made uniform for the masked losses: a spread over layers.
MASKED_HEADS = [(0, 0), (1, 2), (3, 1)]
# (layer, head) whose attention probabilities are recorded for the first text.
ATTENTION_HEAD = (1, 1)


def weights(d):
    return {k: v.astype(np.float64) for k, v in load_file(f"{d}/model.safetensors").items()}


def bert(d):
    cfg = json.load(open(f"{d}/config.json"))
    W = weights(d)
    if "bert.embeddings.word_embeddings.weight" in W:
        W = {k[5:]: v for k, v in W.items()}
    tok = Tokenizer.from_file(f"{d}/tokenizer.json")
    tok.no_padding()
    tok.no_truncation()
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    hd, eps = H // nh, cfg.get("layer_norm_eps", 1e-12)

    def norm(x, p):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * W[p + ".weight"] + W[p + ".bias"]

    def dense(x, p):
        return x @ W[p + ".weight"].T + W[p + ".bias"]

    erf = np.vectorize(math.erf)
    out = []
    for s in SENTENCES:
        ids = np.array(tok.encode(s).ids)
        T = len(ids)
        x = (W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][:T]
             + W["embeddings.token_type_embeddings.weight"][0])
        x = norm(x, "embeddings.LayerNorm")
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (dense(x, p + f"attention.self.{n}").reshape(T, nh, hd).transpose(1, 0, 2)
                       for n in ("query", "key", "value"))
            a = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            o = (a @ v).transpose(1, 0, 2).reshape(T, H)
            x = norm(x + dense(o, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = dense(x, p + "intermediate.dense")
            h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
            x = norm(x + dense(h, p + "output.dense"), p + "output.LayerNorm")
        e = x.mean(0)
        out.append({"text": s, "ids": ids.tolist(), "embedding": (e / np.linalg.norm(e)).tolist()})
    return {"model": d, "sentences": out}


def llama(d):
    cfg = json.load(open(f"{d}/config.json"))
    W = weights(d)
    tok = Tokenizer.from_file(f"{d}/tokenizer.json")
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    head_out = W.get("lm_head.weight", W["model.embed_tokens.weight"])

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rotate(x):
        T = x.shape[1]
        freq = theta ** (-np.arange(0, hd, 2) / hd)
        ang = np.arange(T)[:, None] * freq[None, :]
        cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
        half = hd // 2
        return x * cos + np.concatenate([-x[..., half:], x[..., :half]], -1) * sin

    def losses(ids, masked, attention=None):
        T = len(ids)
        x = W["model.embed_tokens.weight"][ids]
        future = np.triu(np.ones((T, T), bool), 1)
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rms(x, W[p + "input_layernorm.weight"])
            q = (h @ W[p + "self_attn.q_proj.weight"].T).reshape(T, nh, hd).transpose(1, 0, 2)
            k = (h @ W[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hd).transpose(1, 0, 2)
            v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hd).transpose(1, 0, 2)
            q, k = rotate(q), rotate(k)
            group = nh // nkv
            o = np.empty((nh, T, hd))
            for head in range(nh):
                kv = head // group
                if (i, head) in masked:
                    # uniform attention over the visible positions
                    a = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
                else:
                    a = q[head] @ k[kv].T / math.sqrt(hd)
                    a[future] = -np.inf
                    a = np.exp(a - a.max(-1, keepdims=True))
                    a /= a.sum(-1, keepdims=True)
                if attention is not None and (i, head) == ATTENTION_HEAD:
                    attention.extend(a.ravel().tolist())
                o[head] = a @ v[kv]
            x = x + o.transpose(1, 0, 2).reshape(T, nh * hd) @ W[p + "self_attn.o_proj.weight"].T
            h = rms(x, W[p + "post_attention_layernorm.weight"])
            g = h @ W[p + "mlp.gate_proj.weight"].T
            u = h @ W[p + "mlp.up_proj.weight"].T
            x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
        logits = rms(x, W["model.norm.weight"]) @ head_out.T
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return -logp[np.arange(T - 1), ids[1:]]

    masked = [(l, h) for l, h in MASKED_HEADS if l < cfg["num_hidden_layers"] and h < nh]
    out = []
    attention = []
    for name, text in TEXTS.items():
        ids = np.array(tok.encode(text).ids)
        plain = losses(ids, [], attention if not out else None)
        weak = losses(ids, set(masked))
        out.append({"name": name, "text": text, "ids": ids.tolist(),
                    "token_losses": plain.tolist(), "mean_nll": float(plain.mean()),
                    "masked_mean_nll": float(weak.mean())})
    return {"model": d, "masked_heads": masked, "attention_head": ATTENTION_HEAD,
            "attention": attention, "texts": out}


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("bert", "llama"):
        sys.exit(__doc__)
    result = bert(sys.argv[2]) if sys.argv[1] == "bert" else llama(sys.argv[2])
    with open(sys.argv[3], "w") as f:
        json.dump(result, f)
    for t in result.get("texts", []):
        print(f"{t['name']:8s} tokens={len(t['ids']):3d} nll={t['mean_nll']:.3f} masked={t['masked_mean_nll']:.3f}")
