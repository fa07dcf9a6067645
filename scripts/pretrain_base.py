"""Train the embedded base: a BPE tokenizer and a small LlamaForCausalLM, pretrained briefly on offline text.

The corpus is the raw text of the same sources as the tasks (BBC News, WordNet glosses, fortunes, the standard
library's docstrings) without labels or prompts, and without any text held out for eval/test.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import torch

import sources

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
CONFIG = dict(
    vocab_size=4096, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=4, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True,
    bos_token_id=1, eos_token_id=2, pad_token_id=3,
)


def corpus(held_out: set[str], seed: int) -> list[str]:
    """Unlabelled documents; any document containing a held-out text is dropped."""
    docs = [text for text, _ in sources.bbc_news()]
    docs += [t for t, _ in sources.fortunes(["computers", "food", "law", "startrek", "science", "politics", "people", "work"])]
    nouns = sources.wordnet_nouns()
    random.Random(seed).shuffle(nouns)
    docs += [f"{lemma}: {gloss}" for lemma, gloss, _ in nouns[:30000]]
    docs += [f"{name}: {doc}" for name, doc, _ in sources.stdlib_docstrings(["asyncio", "email", "logging", "tkinter", "http", "json", "xml", "unittest"])]
    return [d for d in docs if not any(h in " ".join(d.split()) for h in held_out if len(h) > 20 and h[:30] in d)]


def train_tokenizer(docs: list[str], out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=CONFIG["vocab_size"], special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(out)
    return fast


def pretrain(docs: list[str], tokenizer, out: Path, seed: int, steps: int, batch: int = 32, seq: int = 128, lr: float = 3e-3):
    from tqdm import tqdm
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG))
    stream = []
    for d in docs:
        stream += [tokenizer.bos_token_id] + tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    data = torch.tensor(stream)
    n_windows = (len(data) - 1) // seq
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(range(steps), desc="pretrain")
    for step in bar:
        starts = torch.randint(0, n_windows, (batch,), generator=gen) * seq
        x = torch.stack([data[s : s + seq] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    model.save_pretrained(out)
    return model, len(stream)
