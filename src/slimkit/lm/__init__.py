"""Language models: an offline corpus, a BPE tokenizer, token blocks, perplexity and one-shot pruning.

    from slimkit import lm
    corpus = lm.stdlib_corpus()                                   # this Python's stdlib, split by file
    tokenizer = lm.train_bpe(corpus.texts("train"), vocab_size=8192); tokenizer.save("tok")
    calib = lm.sample_blocks(lm.encode_texts(tokenizer, corpus.texts("train")), 256, 64, seed=0)
    result = lm.prune_oneshot(model, calib, criterion="wanda", scheme="2:4")
    print(lm.perplexity(model, lm.token_blocks(lm.encode_texts(tokenizer, corpus.texts("test")), 256)))

The model is any HF-style causal LM (``LlamaForCausalLM`` built from a config); nothing here
downloads. `tokenizers` is needed for the tokenizer (``pip install 'slimkit[lm]'``). See docs/lm.md.
"""

from slimkit.lm.blocks import as_batches, encode_texts, sample_blocks, token_blocks
from slimkit.lm.corpus import SPLITS, CorpusInfo, TextCorpus, folder_corpus, split_of, stdlib_corpus
from slimkit.lm.oneshot import CRITERIA, OneShotResult, decoder_blocks, parse_scheme, prune_oneshot, select_linears
from slimkit.lm.perplexity import NLL, logits_of, perplexity, token_nll
from slimkit.lm.tokenizer import BPETokenizer, train_bpe

__all__ = [
    "CRITERIA", "NLL", "SPLITS", "BPETokenizer", "CorpusInfo", "OneShotResult", "TextCorpus", "as_batches",
    "decoder_blocks", "encode_texts", "folder_corpus", "logits_of", "parse_scheme", "perplexity", "prune_oneshot",
    "sample_blocks", "select_linears", "split_of", "stdlib_corpus", "token_blocks", "token_nll", "train_bpe",
]
