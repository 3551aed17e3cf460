"""The one decode path: the continuous batcher over a per-row KV cache, sampling, the repetition guard.

Every command that generates text (convert, ocr, eval run, train --eval-generate) goes through here.
Model families plug in through the interface their modules share (`embed`, `forward`, `new_cache`,
`prompt_alphas`); nothing here reads files or knows a family by name.
"""
