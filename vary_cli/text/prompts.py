"""Prompt presets and the releases' conversation templates, built as token ids (vary.md §8).

`build_prompt_ids()` lays out one turn of the template with the image's `<img>`, N x `<imgpad>`,
`</img>` tokens. Special tokens are placed by id and only the template's own text and the user's
prompt are BPE-encoded (with no special tokens allowed), so a prompt that contains `<|im_end|>` cannot
end the turn. Because tiktoken encodes the text between special tokens piece by piece, these ids are the
ones the original code gets by encoding the whole template string with specials allowed.
Used by `pipeline.py` and `train/dataset.py`.

Vary-tiny (vary.md §11) has two formats: the released model's chat demo (vicuna v1 template) and, for
an empty prompt, the vocabulary-stage format of image tokens alone; see `build_tiny_prompt_ids()`.

GOT-OCR2.0 uses Vary-toy's template with its own queries, written as transformers' `GotOcr2Processor`
writes them (`got_query`); see there for where the original `chat()` differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .qwen_tokenizer import QwenTokenizer

if TYPE_CHECKING:
    from .gpt2_tokenizer import OPTTokenizer

PRESETS: dict[str, str] = {
    "ocr": "Provide the ocr results of this image.",
    "markdown": "Convert the document to markdown format.",
}

# The preset each output format asks for unless a prompt is given (`vary convert`, `vary serve`): Vary's
# document task writes Markdown with LaTeX math, which serves md, mmd, tex and jsonl; plain text asks for OCR.
# GOT-OCR2 reads "markdown" as its format OCR ("OCR with format: ", Mathpix Markdown) and "ocr" as its plain OCR.
FORMAT_PROMPTS: dict[str, str] = {"md": "markdown", "mmd": "markdown", "tex": "markdown", "jsonl": "markdown",
                                  "txt": "ocr"}

# Vary-toy's "mpt" conversation (vary/utils/conversation.py) and its system message.
SYSTEM = "You should follow the instructions carefully and explain your answers in detail."


# Vary-tiny's demo (Ucas-HaoranWei/Vary vary/demo/run_opt_with_text.py) asks for "OCR" in capitals.
TINY_PRESETS: dict[str, str] = dict(PRESETS, ocr="Provide the OCR results of this image.")

# The vicuna v1.1 conversation ("v1" in vary/utils/conversation.py) that Vary-tiny's demo uses.
V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
             "helpful, detailed, and polite answers to the user's questions.")


def resolve_prompt(prompt: str, style: str | None = None) -> str:
    """A preset's text (`ocr`, `markdown`) for the model's prompt style, or `prompt` itself used as given."""
    return (TINY_PRESETS if style == "vary-tiny" else PRESETS).get(prompt, prompt)


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


def build_tiny_prompt_ids(tokenizer: "OPTTokenizer", prompt: str, image_token_len: int) -> list[int]:
    """Vary-tiny's prompt ids, led by OPT's `</s>` as its tokenizer adds it.

    An empty `prompt` gives the vocabulary-stage format, the image tokens alone (vary/demo/run_opt.py).
    Otherwise the chat demo's `{V1_SYSTEM} USER: <img>...</img>\n{prompt} ASSISTANT:`, tokenized as the
    transformers the original pins (4.32) tokenizes it: its slow tokenizer splits at the added image tokens
    and strips the whitespace on both sides of each, so `USER: ` loses its space and `\n{prompt}` its
    leading whitespace before BPE.
    """
    t = tokenizer
    image = [t.img_start_id] + [t.img_pad_id] * image_token_len + [t.img_end_id]
    if prompt == "":
        return [t.bos_id] + image
    before = (V1_SYSTEM + " USER: ").rstrip()
    after = ("\n" + prompt + " ASSISTANT:").lstrip()
    return [t.bos_id] + t.encode(before) + image + t.encode(after)


def tiny_template_text(prompt: str, image_token_len: int) -> str:
    """Vary-tiny's prompt as one string, as the original writes it before tokenizing (tests and docs)."""
    image = "<img>" + "<imgpad>" * image_token_len + "</img>"
    if prompt == "":
        return image
    return f"{V1_SYSTEM} USER: {image}\n{prompt} ASSISTANT:"


# GOT-OCR2.0: which presets ask for plain OCR and which for formatted OCR (Mathpix Markdown, LaTeX, tables).
GOT_PRESETS: dict[str, bool] = {"ocr": False, "markdown": True, "format": True}
GOT_COLORS = ("red", "green", "blue")


def got_query(formatted: bool, box: list[int] | None = None, color: str | None = None,
              crops: bool = False) -> str:
    """GOT's query after `</img>\n`, exactly as `GotOcr2Processor` writes it.

    "[color] " if any, the box as Python prints a list if any, then " OCR", " with format" and, when the
    page was cut into tiles, " upon the patch reference", and ": ". So a plain prompt is " OCR: " with a
    leading space, where the original `chat()` writes "OCR: "; a colour with no box gives two spaces
    ("[red]  OCR: ", the original "[red] OCR: "); the original also drops the box when a colour is given
    and asks for tiles only in its format mode ("OCR with format upon the patch reference: ").
    """
    return (f"{f'[{color}] ' if color is not None else ''}{str(box) if box is not None else ''} OCR"
            f"{' with format' if formatted else ''}{' upon the patch reference' if crops else ''}: ")
