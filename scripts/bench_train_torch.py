"""Training throughput of the same byte-level Llama in PyTorch (Hugging Face transformers'
LlamaForCausalLM, CPU), as scripts/bench-train.sh runs it beside gleaner's bench_train
example: the same shape, vocabulary (256 bytes + end marker), batches of BATCH sequences of
SEQ + 1 tokens cut from the same documents, AdamW at 3e-3, STEPS timed steps after 3 warm-up
steps. Prints one JSON line.

    python scripts/bench_train_torch.py TEXTS.jsonl
"""
import json
import os
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def env(name, default):
    return int(os.environ.get(name, default))


def main():
    torch.set_num_threads(env("THREADS", 2))
    torch.manual_seed(0)
    stream = []
    with open(sys.argv[1]) as f:
        for line in f:
            stream.extend(json.loads(line).encode("utf-8"))
            stream.append(256)
    steps, batch, seq = env("STEPS", 30), env("BATCH", 16), env("SEQ", 128)
    config = LlamaConfig(
        vocab_size=257,
        hidden_size=env("HIDDEN", 192),
        intermediate_size=env("INTERMEDIATE", 512),
        num_hidden_layers=env("LAYERS", 4),
        num_attention_heads=env("HEADS", 4),
        num_key_value_heads=env("HEADS", 4),
        max_position_embeddings=seq + 1,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )
    model = LlamaForCausalLM(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    data = torch.tensor(stream, dtype=torch.long)

    def rows_at(step):
        starts = [((step * batch + b) * (seq + 1)) % (len(stream) - seq - 1) for b in range(batch)]
        return torch.stack([data[s : s + seq + 1] for s in starts])

    def step_once(step):
        rows = rows_at(step)
        out = model(input_ids=rows[:, :-1], labels=None)
        logits = out.logits.reshape(-1, 257)
        loss = torch.nn.functional.cross_entropy(logits, rows[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    for step in range(3):
        step_once(step)
    start = time.perf_counter()
    loss = 0.0
    for step in range(3, 3 + steps):
        loss = step_once(step)
    seconds = time.perf_counter() - start
    tokens = steps * batch * seq
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        "system": "pytorch",
        "parameters": params,
        "steps": steps,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "last_loss": loss,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
