"""Tokenizers (Qwen-1's tiktoken BPE, OPT's GPT-2 BPE) and the prompt templates of each release.
"""
