"""PyTorch side of scripts/bench-embed.sh: the same documents through Hugging Face transformers
on CPU (2 threads), as sentence-transformers would run them (length-sorted batches of 32, mean
pooling over real tokens, L2 normalisation), or the causal LM's mean next-token loss.

usage: bench_models_torch.py encoder|lm MODEL_DIR TEXTS.jsonl
"""
import json
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
    max_len, batch = 256, 32
else:
    model = LlamaForCausalLM(LlamaConfig.from_json_file(f"{model_dir}/config.json"))
    model.load_state_dict(load_file(f"{model_dir}/model.safetensors"), strict=False)
    model.tie_weights()
    max_len, batch = 512, 8
model.eval()
ids = []
for e in tok.encode_batch(texts):
    x = e.ids
    if kind == "encoder" and len(x) > max_len:
        x = x[: max_len - 1] + x[-1:]
    ids.append(x[:max_len])
tokens = sum(len(x) for x in ids)
order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
checksum = 0.0
start = time.perf_counter()
with torch.inference_mode():
    for b in range(0, len(order), batch):
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
seconds = time.perf_counter() - start
print(json.dumps({"model": kind, "documents": len(texts), "tokens": tokens, "seconds": seconds,
                  "docs_per_second": len(texts) / seconds, "tokens_per_second": tokens / seconds,
                  "checksum": checksum}))
