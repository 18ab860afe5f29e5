"""PyTorch side of scripts/bench-embed.sh: the same documents through Hugging Face transformers
on CPU (2 threads), as sentence-transformers would run them (length-sorted batches of 32, mean
pooling over real tokens, L2 normalisation), or the causal LM's mean next-token loss.

With `attention_influence`, the loss is computed twice: as is, then with the query heads in
HEADS (`layer:head,...`) attending uniformly to the visible positions (their context replaced by
the prefix mean of their value vectors, hooked in before `o_proj`), as AttentionInfluence
scores; MAX_TOKENS (default 512) truncates LM inputs.

With `gradients` (Quad's probe cost), each document gets one forward+backward pass of its mean
next-token loss with only the q/k/v/o projections of LAYERS (default 28,29) trainable; the
checksum is the sum of their weight gradients' squared norms.

usage: bench_models_torch.py encoder|lm|attention_influence|gradients MODEL_DIR TEXTS.jsonl
"""
import json
import os
import sys
import time

import torch
from tokenizers import Tokenizer
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM
from safetensors.torch import load_file

torch.set_num_threads(2)
kind, model_dir, path = sys.argv[1:4]
texts = [json.loads(line) for line in open(path)]
tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
tok.no_padding()
tok.no_truncation()

if kind == "encoder":
    model = BertModel(BertConfig.from_json_file(f"{model_dir}/config.json"), add_pooling_layer=False)
    model.load_state_dict(load_file(f"{model_dir}/model.safetensors"), strict=False)
    max_len, batch = 256, int(os.environ.get("BATCH", "32"))
else:
    model = LlamaForCausalLM(LlamaConfig.from_json_file(f"{model_dir}/config.json"))
    model.load_state_dict(load_file(f"{model_dir}/model.safetensors"), strict=False)
    model.tie_weights()
    max_len, batch = int(os.environ.get("MAX_TOKENS", "512")), 8
model.eval()
ids = []
for e in tok.encode_batch(texts):
    x = e.ids
    if kind == "encoder" and len(x) > max_len:
        x = x[: max_len - 1] + x[-1:]
    ids.append(x[:max_len])
tokens = sum(len(x) for x in ids)
order = sorted(range(len(ids)), key=lambda i: len(ids[i]))


def mask_heads(heads):
    """Hooks making `heads` uniform over visible positions; returns the hook handles."""
    cfg = model.config
    dim = cfg.hidden_size // cfg.num_attention_heads
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    handles = []
    for layer in sorted({l for l, _ in heads}):
        attn = model.model.layers[layer].self_attn
        store = {}
        handles.append(attn.v_proj.register_forward_hook(lambda m, i, o, s=store: s.update(v=o)))

        def pre(m, args, s=store, hs=[h for l, h in heads if l == layer]):
            (x,) = args
            x = x.clone()
            v = s["v"]
            counts = torch.arange(1, v.shape[1] + 1, dtype=v.dtype).view(1, -1, 1)
            for h in hs:
                kv = h // group
                x[..., h * dim:(h + 1) * dim] = v[..., kv * dim:(kv + 1) * dim].cumsum(1) / counts
            return (x,)
        handles.append(attn.o_proj.register_forward_pre_hook(pre))
    return handles


def run_pass():
    checksum = 0.0
    with torch.inference_mode():
        for b in range(0, len(order), batch):
            checksum += run_batch(b)
    return checksum


def run_batch(b):
    checksum = 0.0
    rows = [ids[i] for i in order[b:b + batch]]
    width = max(len(r) for r in rows)
    x = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    if kind == "encoder":
        h = model(input_ids=x, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        e = (h * m).sum(1) / m.sum(1)
        checksum += torch.nn.functional.normalize(e, dim=1).sum().item()
    else:
        logits = model(input_ids=x, attention_mask=mask).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
        valid = mask[:, 1:].float()
        checksum += ((nll * valid).sum(1) / valid.sum(1).clamp(min=1)).sum().item()
    return checksum


def gradient_pass():
    layers = [int(x) for x in os.environ.get("LAYERS", "28,29").split(",")]
    for p in model.parameters():
        p.requires_grad_(False)
    weights = [getattr(model.model.layers[l].self_attn, n).weight
               for l in layers for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    for w in weights:
        w.requires_grad_(True)
    checksum = 0.0
    for r in ids:
        x = torch.tensor([r])
        logits = model(input_ids=x).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:])
        grads = torch.autograd.grad(loss, weights)
        checksum += sum(float((g.double() ** 2).sum()) for g in grads)
    return checksum


start = time.perf_counter()
checksum = gradient_pass() if kind == "gradients" else run_pass()
seconds = time.perf_counter() - start
extra = {}
if kind == "attention_influence":
    heads = [tuple(int(x) for x in p.split(":")) for p in os.environ["HEADS"].split(",")]
    handles = mask_heads(heads)
    masked = run_pass()
    for h in handles:
        h.remove()
    total = time.perf_counter() - start
    extra = {"base_seconds": seconds, "masked_seconds": total - seconds,
             "base_checksum": checksum, "masked_checksum": masked}
    checksum, seconds = masked - checksum, total
print(json.dumps({"model": kind, "documents": len(texts), "tokens": tokens, "seconds": seconds,
                  "docs_per_second": len(texts) / seconds, "tokens_per_second": tokens / seconds,
                  "checksum": checksum, **extra}))
