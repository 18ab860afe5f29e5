"""Write the tiny random-init models gleaner's unit tests load (embed/tests/fixtures/), in the
same Hugging Face layouts as the real ones, and their golden outputs from the independent numpy
reference (scripts/reference_models.py).

usage: make_tiny_models.py OUT_DIR      (needs numpy, safetensors, tokenizers)
"""
import json
import os
import string
import subprocess
import sys

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

rng = np.random.default_rng(20261123)


def normal(*shape, std=0.3):
    return (rng.standard_normal(shape) * std).astype(np.float32)


def norm_weight(n):
    return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)


def tiny_bert(out):
    os.makedirs(out, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + string.punctuation
    words = ["the", "a", "is", "man", "playing", "guitar", "stock", "market", "text", "and", "with"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars) + ["##" + c for c in chars] + words
    cfg = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": len(vocab), "hidden_size": 32,
           "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
           "max_position_embeddings": 128, "type_vocab_size": 2, "layer_norm_eps": 1e-12}
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    W = {"embeddings.word_embeddings.weight": normal(V, H), "embeddings.position_embeddings.weight": normal(128, H),
         "embeddings.token_type_embeddings.weight": normal(2, H),
         "embeddings.LayerNorm.weight": norm_weight(H), "embeddings.LayerNorm.bias": normal(H, std=0.1),
         "pooler.dense.weight": normal(H, H), "pooler.dense.bias": normal(H)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for n, (o, k) in {"attention.self.query": (H, H), "attention.self.key": (H, H),
                          "attention.self.value": (H, H), "attention.output.dense": (H, H),
                          "intermediate.dense": (I, H), "output.dense": (H, I)}.items():
            W[p + n + ".weight"], W[p + n + ".bias"] = normal(o, k, std=1 / np.sqrt(k)), normal(o, std=0.1)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            W[p + n + ".weight"], W[p + n + ".bias"] = norm_weight(H), normal(H, std=0.1)
    save_file(W, f"{out}/model.safetensors")
    json.dump(cfg, open(f"{out}/config.json", "w"), indent=2)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece()
    # Like the shipped MiniLM tokenizer: padding switched on, which the Rust side must ignore.
    tok.enable_padding(length=128, pad_id=0, pad_token="[PAD]")
    tok.save(f"{out}/tokenizer.json")


def tiny_llama(out):
    os.makedirs(out, exist_ok=True)
    byte_vocab = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate(sorted(byte_vocab))}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("a", "n")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": len(vocab), "hidden_size": 32,
           "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 8, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
           "tie_word_embeddings": True, "eos_token_id": vocab["<|endoftext|>"], "bos_token_id": vocab["<|endoftext|>"],
           "hidden_act": "silu"}
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q, kv = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    W = {"model.embed_tokens.weight": normal(V, H, std=1.0), "model.norm.weight": norm_weight(H)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for n, (o, k) in {"self_attn.q_proj": (q, H), "self_attn.k_proj": (kv, H), "self_attn.v_proj": (kv, H),
                          "self_attn.o_proj": (H, q), "mlp.gate_proj": (I, H), "mlp.up_proj": (I, H),
                          "mlp.down_proj": (H, I)}.items():
            W[p + n + ".weight"] = normal(o, k, std=1 / np.sqrt(k))
        W[p + "input_layernorm.weight"], W[p + "post_attention_layernorm.weight"] = norm_weight(H), norm_weight(H)
    save_file(W, f"{out}/model.safetensors")
    json.dump(cfg, open(f"{out}/config.json", "w"), indent=2)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.save(f"{out}/tokenizer.json")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    tiny_bert(f"{root}/tiny-bert")
    tiny_llama(f"{root}/tiny-llama")
    for kind, name in (("bert", "tiny-bert"), ("llama", "tiny-llama")):
        subprocess.run([sys.executable, f"{here}/reference_models.py", kind, f"{root}/{name}",
                        f"{root}/{name}/golden.json"], check=True)
