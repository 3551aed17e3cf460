"""A corpus of OCR output in the styles the writers meet, and a word check on the PDFs they make.

Each item is one page as Mathpix Markdown (Vary, Mathpix), nougat, GOT or olmOCR writes it, written
for these tests (no tool's output is copied): long-text and many-column tables, nested tabulars,
spans without braces, currency dollars in cells, LaTeX structure commands, and text in many scripts.
tests/render/test_writer_words.py compiles them and bench/bench_writers.py counts the pages whose
words all survive.

`expected_words` reads the words a reader sees in an item without any of vary's code: math, LaTeX
command names, arguments that are never printed (`\\label`, `\\begin`, column specs, widths, URLs
of links) and Markdown punctuation are dropped. `pdf_words` reads a PDF's words with pypdfium2 (or
pdftotext), NFKC-normalized, so ligatures and Arabic presentation forms compare as letters, and with
words hyphenated at a line end joined again.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Item:
    name: str
    style: str  # mathpix, nougat, got, olmocr
    text: str
    scripts: tuple[str, ...] = ()  # non-Latin scripts: the item needs xelatex and their fonts
    note: str = ""


LONG_DEFINITION = ("An iterative optimisation algorithm that moves the parameters a small step against the "
                   "gradient of the loss, computed on a random minibatch of training examples at every step")

ITEMS = [
    Item("p-columns", "mathpix",
         "\\begin{tabular}{|p{0.3\\textwidth}|p{0.6\\textwidth}|}\n\\hline Term & Definition \\\\\n\\hline "
         f"Stochastic gradient descent & {LONG_DEFINITION}. \\\\\n\\hline Weight decay & A penalty on the squared "
         "norm of the weights that is added to the loss and keeps them small, which often helps the model "
         "generalise to unseen documents \\\\\n\\hline\n\\end{tabular}"),
    Item("nougat-pt-columns", "nougat",
         "\\begin{table}\n\\begin{tabular}{p{142.3pt} p{142.3pt} p{56.9pt}} \\hline Dataset & Description & "
         "Pages \\\\ \\hline arXiv & Scientific articles from physics, mathematics and computer science "
         "with dense formulas & 8,204 \\\\ PMC & Open access medical papers with many tables and figures, "
         "often in two columns & 536 \\\\ \\hline \\end{tabular}\n\\end{table}\n\nTable 1: Sources of the "
         "training data."),
    Item("long-l-columns", "nougat",
         "\\begin{table}\n\\begin{tabular}{l l l}\n\\hline Method & Strengths & Weaknesses \\\\\n\\hline "
         "Rule based extraction & Transparent, fast and easy to audit by a domain expert on any machine & "
         "Breaks on every new layout and needs constant maintenance by engineers \\\\\n"
         "Neural sequence models & Read formulas and tables end to end without any hand written rules & "
         "Hallucinate text on blank pages and repeat themselves on long pages \\\\\n\\hline\n\\end{tabular}\n"
         "\\caption{Comparison of extraction methods.}\n\\end{table}"),
    Item("pipe-long-cells", "olmocr",
         "| Parameter | Meaning | Default |\n|---|---|---|\n| `--max-new-tokens` | The largest number of "
         "tokens generated for one page before the page is cut and marked in the output | 2048 |\n"
         "| `--batch-size` | How many pages are decoded together on the accelerator; zero picks a size from "
         "the free device memory at start | 0 |"),
    Item("many-columns", "got",
         "\\begin{tabular}{|l|c|c|c|c|c|c|c|c|c|c|c|c|}\n\\hline Region & Jan & Feb & Mar & Apr & May & Jun & "
         "Jul & Aug & Sep & Oct & Nov & Dec \\\\\n\\hline Northern Territories & 1,204.5 & 1,187.2 & 1,310.9 & "
         "1,298.4 & 1,402.7 & 1,455.0 & 1,512.3 & 1,498.8 & 1,377.1 & 1,301.6 & 1,255.9 & 1,240.2 \\\\\n"
         "Southern Highlands & 2,004.1 & 1,987.6 & 2,110.4 & 2,098.0 & 2,202.3 & 2,255.5 & 2,312.9 & 2,298.1 "
         "& 2,177.7 & 2,101.2 & 2,055.4 & 2,040.8 \\\\\n\\hline\n\\end{tabular}"),
    Item("very-wide", "got",
         "\\begin{tabular}{" + "c" * 22 + "}\n" + " & ".join(f"Year{2000 + k}" for k in range(22)) + " \\\\\n"
         + " & ".join(f"{1000 + 37 * k:,}.{k % 10}" for k in range(22)) + " \\\\\n\\end{tabular}"),
    Item("nested-tabular", "got",
         "\\begin{tabular}{|l|l|}\n\\hline Item & Notes \\\\\n\\hline Scanner & \\begin{tabular}{l}First line of "
         "the note \\\\ Second line of the note\\end{tabular} \\\\\n\\hline Printer & Toner \\& drum replaced "
         "\\\\\n\\hline Monitor & Calibrated \\\\\n\\hline\n\\end{tabular}"),
    Item("spans-without-braces", "got",
         "\\begin{tabular}{|c|c|c|}\n\\hline \\multirow{2}{*} 0.015 & Alpha & Beta \\\\\n\\cline{2-3} & Gamma "
         "& Delta \\\\\n\\hline \\multicolumn{1}{c} $x<1$ & Epsilon & Zeta \\\\\n\\hline\n\\end{tabular}"),
    Item("currency-dollar", "got",
         "\\begin{tabular}{|l|r|r|}\n\\hline (AUD $'000) & 2023 & 2022 \\\\\n\\hline Revenue & 12,450 & "
         "11,020 \\\\\n\\hline Operating expenses & (8,310) & (7,905) \\\\\n\\hline Net profit & 4,140 & "
         "3,115 \\\\\n\\hline\n\\end{tabular}"),
    Item("currency-dollar-md", "olmocr",
         "Amounts in (USD $m) unless stated.\n\n| Segment | 2023 | 2022 |\n|---|---|---|\n| Cloud | 1,204 | 998 |"
         "\n| Devices | 730 | 812 |"),
    Item("display-math-in-cell", "mathpix",
         "\\begin{tabular}{|l|l|}\n\\hline Case & Condition \\\\\n\\hline Stable & $$\\begin{array}{l}x<1 \\\\ "
         "y>0\\end{array}$$ \\\\\n\\hline Unstable & otherwise \\\\\n\\hline\n\\end{tabular}"),
    Item("tabularx-and-m", "mathpix",
         "\\begin{tabularx}{\\textwidth}{|m{2cm}|X|}\n\\hline Symbol & Explanation \\\\\n\\hline \\(\\eta\\) & "
         "The learning rate, which scales every update of the parameters and is lowered by the schedule "
         "during training \\\\\n\\hline \\(\\lambda\\) & The weight decay coefficient \\\\\n\\hline\n"
         "\\end{tabularx}"),
    Item("array-package-spec", "nougat",
         "\\begin{tabular}{@{}>{\\raggedright\\arraybackslash}p{3cm}*{2}{c}@{}}\n\\toprule Model & Params & "
         "Score \\\\\n\\midrule Vary base with the new vision vocabulary & 7B & 0.918 \\\\\nVary toy & 1.8B & "
         "0.870 \\\\\n\\bottomrule\n\\end{tabular}"),
    Item("long-table", "got",
         "\\begin{tabular}{|c|l|r|}\n\\hline No. & Station & Rainfall \\\\\n\\hline\n" + "".join(
             f"{k} & Station number {k} on the {['north', 'east', 'south', 'west'][k % 4]} coast & {100 + 7 * k} "
             "\\\\\n" for k in range(1, 61)) + "\\hline\n\\end{tabular}"),
    Item("structure-commands", "mathpix",
         "\\title{\nDeep \\textbf{Learning} for Document Reading\n}\n\n\\author{\nAnna Petrova\\\\ Institute of "
         "Mathematics\n}\n\n\\begin{abstract}\nWe read scanned pages\\footnote{Code and weights are public.} "
         "with a vision language model.\n\\end{abstract}\n\n\\section*{Results for \\(x>0\\)}\n\\label{sec:res}"
         "\n\n\\begin{center}\nCentred claim about robustness\n\\end{center}\n\nAs Section \\ref{sec:res} and "
         "Equation \\eqref{eq:loss} show, accuracy improves.\n\n\\subsection*{Limits}\nSee the appendix."),
    Item("got-sections", "got",
         "\\section*{Annual Report}\n\\subsection*{Chairman's Letter}\nDear shareholders, this year we grew "
         "revenue by \\(12 \\%\\) while keeping costs flat.\n\\begin{itemize}\n\\item New plant in Ohio opened "
         "in March.\n\\item Debt reduced by half.\n\\end{itemize}\n\\section*{Outlook}\nWe expect steady "
         "demand."),
    Item("dollar-at-paragraph-start", "olmocr",
         "$0.25$ 1000\n\nThe ratio $r = 0.25$ holds for all 1000 samples.\n\n$x$ is the input and 5"),
    Item("text-commands", "nougat",
         "Following Min\\'{a}\\v{c} and Gr\\\"{o}bner [1], we use \\emph{attention}, \\textit{softmax} and "
         "\\texttt{top-k} sampling~\\cite{vaswani2017}. See \\url{https://example.org/vary} or "
         "\\href{https://example.org}{the project page}. The constant is 3\\,km and costs 5\\,\\% more.\\\\ "
         "A new line starts here."),
    Item("html-table", "olmocr",
         "Table 2 lists the results.\n\n<table>\n<tr><th>Model</th><th>Accuracy</th></tr>\n<tr><td>Baseline"
         "</td><td>81.2</td></tr>\n<tr><td colspan=\"2\">Ours improves every split</td></tr>\n</table>\n\n"
         "The gain is consistent."),
    Item("plain-english", "nougat",
         "## 2 Related Work\n\nOptical character recognition has a long history. Early systems matched "
         "templates; modern ones use **deep networks** trained on millions of pages, as in [12].\n\n"
         "* Corresponding author: reader@example.org"),
    Item("cyrillic", "mathpix",
         "\\section*{Введение}\nРаспознавание документов остаётся трудной задачей, особенно для таблиц и "
         "формул \\(x^2\\).", scripts=("Cyrillic",)),
    Item("greek", "nougat",
         "Η αναγνώριση εγγράφων είναι δύσκολη. Οι πίνακες και οι τύποι \\(\\alpha + \\beta\\) απαιτούν "
         "προσοχή.", scripts=("Greek",)),
    Item("arabic", "olmocr",
         "التعرف على المستندات مهمة صعبة، خاصة الجداول والمعادلات.\n\nتبلغ الدقة 95 بالمئة في المتوسط.",
         scripts=("Arabic",)),
    Item("persian", "olmocr",
         "تشخیص اسناد کار دشواری است، به ویژه برای جدول‌ها و فرمول‌ها.", scripts=("Arabic",)),
    Item("hebrew", "olmocr", "זיהוי מסמכים הוא משימה קשה במיוחד עבור טבלאות.", scripts=("Hebrew",)),
    Item("devanagari", "got", "दस्तावेज़ पहचान एक कठिन कार्य है।", scripts=("Devanagari",)),
    Item("cjk", "got", "\\section*{摘要}\n文档识别是一项困难的任务。日本語の文書も読みます。한국어 문서도 읽습니다.",
         scripts=("CJK",)),
    Item("mixed-scripts", "mathpix",
         "The Greek letter name άλφα, the Russian word привет and the Arabic word مرحبا appear in one "
         "sentence, then Thai ภาษาไทย and Armenian Հայերեն.", scripts=("Greek", "Cyrillic", "Arabic", "Thai",
                                                                      "Armenian")),
    Item("cyrillic-table", "got",
         "\\begin{tabular}{|l|r|}\n\\hline Показатель & Значение \\\\\n\\hline Выручка & 1 250 \\\\\n\\hline "
         "Прибыль & 310 \\\\\n\\hline\n\\end{tabular}", scripts=("Cyrillic",)),
    Item("nougat-header-spans", "nougat",
         "\\begin{table}\n\\begin{tabular}{l c c c c}\n\\hline \\multirow{2}{*}{Model} & \\multicolumn{2}{c}{Text} & "
         "\\multicolumn{2}{c}{Formula} \\\\\n\\cline{2-5} & Edit distance & BLEU & Edit distance & BLEU \\\\\n\\hline "
         "Nougat small & 0.073 & 88.9 & 0.128 & 76.1 \\\\\nVary base & 0.052 & 91.2 & 0.104 & 80.3 \\\\\n\\hline\n"
         "\\end{tabular}\n\\end{table}\n\nTable 3: Results on the arXiv test split."),
    Item("aligned-equations", "mathpix",
         "The update rule reads\n\\begin{align*}\nm_t &= \\beta_1 m_{t-1} + (1-\\beta_1) g_t \\\\\nv_t &= \\beta_2 "
         "v_{t-1} + (1-\\beta_2) g_t^2\n\\end{align*}\nwhere \\(g_t\\) is the gradient at step \\(t\\), as in "
         "Equation (3)."),
    Item("got-centered-table", "got",
         "\\begin{center}\n\\begin{tabular}{|c|c|c|}\n\\hline Quarter & Sales & Growth \\\\\n\\hline Q1 & 1,020 & "
         "3.1\\% \\\\\n\\hline Q2 & 1,108 & 8.6\\% \\\\\n\\hline\n\\end{tabular}\n\\end{center}\n\nSource: company "
         "filings."),
    Item("olmocr-lists-math", "olmocr",
         "# Exercise 4\n\n1. Show that $f(x) = x^2$ is convex.\n2. Compute $\\int_0^1 f(x)\\,dx$.\n   - Hint: use "
         "the power rule.\n\nThe answer is \\( \\frac{1}{3} \\)."),
    Item("latin-accents", "nougat",
         "Résumé: la façade du château, naïve Œuvre. Zażółć gęślą jaźń. Straße und Größe. Ærøskøbing."),
    Item("vietnamese", "olmocr", "Tiếng Việt có nhiều dấu thanh: nhận dạng văn bản là một nhiệm vụ khó.",
         scripts=("Vietnamese",), note="pdflatex's T1 has no Vietnamese"),
    Item("long-hyphenated-paragraph", "nougat",
         "Characteristically, internationalization and telecommunications infrastructures necessitate "
         "comprehensive interoperability considerations, notwithstanding counterrevolutionary "
         "misunderstandings regarding electroencephalography and otorhinolaryngological "
         "instrumentation."),
    Item("symbols-in-text", "mathpix",
         "Arrows → and ⇒, relations ≤ ≥ ≠ ≈, a check ✓, a bullet •, a dagger †, ∞ and ∑ written as text."),
    Item("script-in-math", "mathpix",
         "The set \\(\\text{Привет} \\cup \\{\\beta\\}\\) is named in Russian.", scripts=("Cyrillic",)),
]

# Words are letters or digits; `_` and `-` split words, as most readers do. Han characters and kana are
# words of one character each: those scripts put no spaces between words, and a line may break anywhere.
_HAN_KANA = "\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff"
_WORD = re.compile(f"[{_HAN_KANA}]|(?:(?![{_HAN_KANA}])[^\\W_])+")
_MATH = re.compile(r"\$\$.*?\$\$|\\\[.*?\\\]|\\\(.*?\\\)|(?<![\\\w])\$(?=\S)[^$\n]*?(?<=\S)\$(?!\d)|"
                   r"\\begin\{(equation|align|gather|array|matrix|pmatrix)\*?\}.*?\\end\{\1\*?\}", re.S)
# Commands whose (first) argument is never printed, and how many arguments they have.
_SILENT = {"label": 1, "ref": 1, "eqref": 1, "cite": 1, "begin": 1, "end": 1, "multirow": 2, "multicolumn": 2,
           "includegraphics": 1, "href": 1, "cline": 1, "cmidrule": 1, "hspace": 1, "vspace": 1}
# Markup that must not show in a PDF's text: LaTeX commands and HTML tags.
_LEAKED = re.compile(r"\\[A-Za-z]{2,}|\\(?:begin|end)\{|</?(?:table|tr|td|th|br|div|span|sup|sub)\b[^<>]*>")


def expected_words(text: str) -> list[str]:
    """The words a reader sees in an item: no math, no command names, no arguments that are never printed."""
    # Math is not compared, except the text in it (`\\text{...}`).
    text = _MATH.sub(lambda m: " ".join(re.findall(r"\\text\{([^{}]*)\}", m.group())) or " ", _joined(text))
    spec = r"\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\}"  # a column spec: p{0.3\textwidth}, >{\raggedright}, @{}
    text = re.sub(r"\\begin\{(?:tabular\*?|array|tabularx\}\{[^{}]*)\}" + spec, " ", text)
    for name, count in _SILENT.items():
        text = re.sub(r"\\" + name + r"\*?(\[[^\]]*\])?" + r"\s*\{[^{}]*\}" * count, " ", text)
    text = re.sub(r"<[^<>]*>", " ", text)  # HTML tags
    text = re.sub(r"\]\([^()]*\)", " ", text)  # Markdown link targets
    text = re.sub(r"`--?([a-z-]+)`", r"\1", text)
    # \'{a}, \v{c} -> a, c (words are compared without accents)
    text = re.sub(r"\\(?:['\"^`~=.]|[vcuHkrdbt](?=\{))\{?([A-Za-z])\}?", r"\1", text)
    text = re.sub(r"\\[A-Za-z]+\*?", " ", text)
    return [_fold(word) for word in _WORD.findall(text)]


def pdf_text(pdf: Path, tool: str = "pdfium") -> str:
    """The text of a PDF, page after page: pypdfium2's text pages, or `pdftotext` (poppler)."""
    if tool == "pdftotext":
        return subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True,
                              check=True).stdout
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf))
    try:
        return "\n".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


def pdf_words(text: str) -> list[str]:
    """Words of extracted PDF text, with `hyphen-\\nated` words joined."""
    text = _joined(text.replace("\ufffe", ""))  # \ufffe: pdfium's mark for a hyphen TeX added at a line end
    text = re.sub(r"(\w)-\s*\n\s*(\w)", r"\1\2", unicodedata.normalize("NFKC", text))
    words = []
    for word in _WORD.findall(text):
        words.append(_fold(word))
        # A footnote mark is a digit glued to the word before it ("pages1") or after it ("1Code").
        glued = re.fullmatch(r"([^\W\d_]+)(\d+)|(\d+)([^\W\d_]+)", word)
        if glued:
            words += [_fold(part) for part in glued.groups() if part]
    return words


def _joined(text: str) -> str:
    """A zero-width non-joiner (Persian `جدول‌ها`) is part of its word; extractors drop it (pdftotext) or
    read it as a no-break space (pdfium)."""
    return re.sub("(?<=[\u0600-\u06ff])[\u200c\u00a0](?=[\u0600-\u06ff])", "", text)


def _fold(word: str) -> str:
    """Case and accents folded: `Ö` and `ö` and `o` compare equal (extractors differ on decomposed accents)."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))


def survival(expected: list[str], found: list[str]) -> tuple[float, list[str], float]:
    """(share of expected words present, the missing ones, share of expected words found in order).

    Presence counts each word as often as it is expected. The order share is the longest common
    subsequence of the two word lists over the expected count: a footnote printed at the foot of the
    page lowers it a little, a table read column by column a lot.
    """
    pool: dict[str, int] = {}
    for word in found:
        pool[word] = pool.get(word, 0) + 1
    missing = []
    for word in expected:
        if pool.get(word, 0) > 0:
            pool[word] -= 1
        else:
            missing.append(word)
    if not expected:
        return 1.0, [], 1.0
    return 1.0 - len(missing) / len(expected), missing, _common_subsequence(expected, found) / len(expected)


def leaked_markup(text: str) -> list[str]:
    """LaTeX commands and HTML tags that reached a PDF's text (a writer printed its input's markup)."""
    return _LEAKED.findall(text)


def _common_subsequence(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0  # row[j - 1] of the previous line
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], (previous + 1 if x == y else max(row[j], row[j - 1]))
    return row[-1]


def compile_tex(tex: str, folder: Path, engine: str, name: str = "doc") -> tuple[Path | None, str]:
    """Run `engine` once on `tex` in `folder`; (the PDF or None, the log)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.tex").write_text(tex, encoding="utf-8")
    run = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"], cwd=folder,
                         capture_output=True, text=True, errors="replace", timeout=600)
    log_path = folder / f"{name}.log"
    log = log_path.read_text(errors="replace") if log_path.exists() else run.stdout
    pdf = folder / f"{name}.pdf"
    return (pdf if run.returncode == 0 and pdf.exists() else None), log


def have(engine: str) -> bool:
    return shutil.which(engine) is not None
