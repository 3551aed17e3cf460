"""Prompt presets and the releases' conversation templates, built as token ids (vary.md §8).

`build_prompt_ids()` lays out one turn of the template with the image's `<img>`, N x `<imgpad>`,
`</img>` tokens. Special tokens are placed by id and only the template's own text and the user's
prompt are BPE-encoded (with no special tokens allowed), so a prompt that contains `<|im_end|>` cannot
end the turn. Because tiktoken encodes the text between special tokens piece by piece, these ids are the
ones the original code gets by encoding the whole template string with specials allowed.
Used by `pipeline.py` and `data.py`.
"""

from __future__ import annotations

from .tokenizer import QwenTokenizer

PRESETS: dict[str, str] = {
    "ocr": "Provide the ocr results of this image.",
    "markdown": "Convert the document to markdown format.",
}

# Vary-toy's "mpt" conversation (vary/utils/conversation.py) and its system message.
SYSTEM = "You should follow the instructions carefully and explain your answers in detail."


def resolve_prompt(prompt: str) -> str:
    """A preset's text (`ocr`, `markdown`), or `prompt` itself used as given."""
    return PRESETS.get(prompt, prompt)


def build_prompt_ids(tokenizer: QwenTokenizer, prompt: str, style: str, image_token_len: int) -> list[int]:
    """Ids of the system turn, the user turn (image, then `prompt`) and the assistant's opening.

    style: "vary-toy" puts a newline between `</img>` and the prompt; "vary-base" (the Vary demo) does not.
    """
    t = tokenizer
    image = [t.img_start_id] + [t.img_pad_id] * image_token_len + [t.img_end_id]
    after_image = ("\n" if style == "vary-toy" else "") + prompt
    return ([t.im_start_id] + t.encode("system\n" + SYSTEM) + [t.im_end_id]
            + [t.im_start_id] + t.encode("user\n") + image + t.encode(after_image) + [t.im_end_id]
            + [t.im_start_id] + t.encode("assistant\n"))


def template_text(prompt: str, style: str, image_token_len: int) -> str:
    """The template as one string, as the original writes it before tokenizing (for tests and docs)."""
    pads = "<imgpad>" * image_token_len
    sep = "\n" if style == "vary-toy" else ""
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|><|im_start|>user\n<img>{pads}</img>{sep}{prompt}"
            f"<|im_end|><|im_start|>assistant\n")
