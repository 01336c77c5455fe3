"""Train the byte-level BPE tokenizer on the training split and tokenise both splits.

Usage: python train/tokenize_corpus.py [--corpus .cache/corpus] [--vocab 8192]
Writes tokenizer.json, train.bin and heldout.bin (uint16 token ids, documents joined by
<|endoftext|>) and counts.npy (how often each id occurs in train.bin).
"""
import argparse
import json
import os

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOT = "<|endoftext|>"


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split(f"\n{EOT}\n")


def encode(tok, docs, batch=512):
    eot = tok.token_to_id(EOT)
    ids = []
    for i in range(0, len(docs), batch):
        for enc in tok.encode_batch(docs[i:i + batch]):
            ids.extend(enc.ids)
            ids.append(eot)
    return np.asarray(ids, dtype=np.uint16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=".cache/corpus")
    ap.add_argument("--vocab", type=int, default=8192)
    args = ap.parse_args()
    train_docs = read_docs(os.path.join(args.corpus, "train.txt"))
    held_docs = read_docs(os.path.join(args.corpus, "heldout.txt"))

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    tok.train_from_iterator(train_docs, trainer=trainer, length=len(train_docs))
    tok.save(os.path.join(args.corpus, "tokenizer.json"))

    train = encode(tok, train_docs)
    held = encode(tok, held_docs)
    train.tofile(os.path.join(args.corpus, "train.bin"))
    held.tofile(os.path.join(args.corpus, "heldout.bin"))
    counts = np.bincount(train, minlength=tok.get_vocab_size()).astype(np.int64)
    np.save(os.path.join(args.corpus, "counts.npy"), counts)
    seen = int((counts > 0).sum())
    print(json.dumps({"vocab": tok.get_vocab_size(), "train_tokens": int(train.size),
                      "heldout_tokens": int(held.size), "ids_seen_in_train": seen,
                      "ids_seen_once_to_9_times": int(((counts > 0) & (counts < 10)).sum())}))


if __name__ == "__main__":
    main()
