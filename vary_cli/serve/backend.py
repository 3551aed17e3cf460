"""The model side of an engine thread: a loaded model, the one decode engine over it, pages in, results out.

`ModelBackend` builds its `Engine` with `pipeline.make_engine` and its requests with
`pipeline.page_request`, and turns outcomes into PageResults with `pipeline.page_result`: the calls
`vary convert` makes, so a page served here is decoded exactly as `vary convert` decodes it. Its
settings fingerprint is `vary convert`'s for the same prompt and token limit, so page stores (jobs.py)
are only reused under the same model and options. Drafting (`--draft`) gets the same sources as in
`vary convert`: a PDF page's text layer and the token ids of the document's last finished pages.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import InputError
from ..models.loaded import LoadedModel
from ..render.results import PageResult
from .queue import PageTask


class ModelBackend:
    """One engine thread's model; see the module docstring."""

    def __init__(self, loaded: LoadedModel, max_new_tokens: int, batch_size: int = 0, draft: str = "auto") -> None:
        from ..convert.pipeline import default_batch_size
        from ..engine.config import DraftConfig, GenerationConfig

        self.loaded = loaded
        # The engine's ceiling; each request carries its own limit (a job's max_new_tokens) below it.
        self.gen = GenerationConfig(max_new_tokens=max_new_tokens)
        self.draft = DraftConfig(mode=draft)
        self.batch_size = batch_size or default_batch_size(loaded, max_new_tokens)

    def new_engine(self, on_token: Callable[[Any, int], None]):
        from ..convert.pipeline import make_engine

        engine = make_engine(self.loaded, self.gen, self.batch_size, draft=self.draft)
        engine.on_token = on_token
        return engine

    def request(self, task: PageTask):
        from ..convert.pipeline import page_request

        try:
            image = task.render()
        except InputError as error:  # the page fails with it, as in `vary convert`
            image = error
        text_layer, earlier = None, []
        if task.text_layer is not None and self.draft.mode in ("text-layer", "auto"):
            text_layer = task.text_layer()
        if task.earlier is not None and self.draft.mode in ("ngram", "auto"):
            earlier = [self.loaded.tokenizer.encode(text) for text in task.earlier()]
        return page_request(self.loaded, task.key, image, task.prompt, text_layer=text_layer, earlier_pages=earlier,
                            max_new_tokens=task.max_new_tokens)

    def result(self, task: PageTask, outcome) -> PageResult:
        from ..convert.pipeline import page_result

        return page_result(self.loaded, task.source, task.page, outcome)

    def settings(self, prompt: str, max_new_tokens: int) -> str:
        """The settings fingerprint `vary convert --prompt PROMPT --max-new-tokens N` stores its pages under."""
        from ..convert.output import settings_fingerprint
        from ..convert.pipeline import page_settings

        return settings_fingerprint(page_settings(self.loaded, prompt, self.gen.with_(max_new_tokens=max_new_tokens)))

    def token_bytes(self, ids: list[int]) -> bytes:
        """The UTF-8 bytes of token ids (special tokens dropped), for streaming text piece by piece."""
        return self.loaded.tokenizer.decode_bytes(ids)

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.loaded.prompt_ids(prompt))

    def info(self) -> dict:
        return {"model": self.loaded.directory.name, "device": str(self.loaded.device),
                "dtype": str(self.loaded.dtype).removeprefix("torch.")}
