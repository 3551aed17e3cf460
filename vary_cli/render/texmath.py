"""Repair one LaTeX math span from the model so that a TeX engine (and KaTeX/MathJax) accepts it.

`mathpix.repair_page` calls `repair_math` for every `\\(...\\)`, `\\[...\\]`, `$...$` and math
environment of a page; both the Markdown and the LaTeX writer use the result. The math is tokenized,
parsed into brace groups and environments (closing what the model left open, dropping closers it
never opened), and each list of tokens is fixed where TeX would stop with an error:

- `\\left`/`\\right` balanced per group and alignment cell (`\\left.`/`\\right.` added), a missing
  delimiter after `\\left`, `\\right`, `\\middle` or `\\big` becomes `.` or the size command is dropped;
- double super/subscripts get `{}` between them, a script or `\\frac`-like command with a missing
  argument gets `{}`;
- `&` and `\\\\` outside an alignment are dropped (a display with them is wrapped in `aligned` or
  `gathered`), surplus `&` in `cases`-like environments become `\\quad`, `array` gets a column spec
  wide enough for its widest row;
- display environments (`equation`, `align`, `gather`, ...) become their inner forms (`aligned`,
  `gathered`), which are valid anywhere in math; equation numbers become one `\\tag` at the top level;
- `#`, `%`, `$` are escaped; text accents and commands that are illegal in math show as `\\backslash name`;
- `\\text{...}` whose content needs math mode is set with `\\mathrm` instead, and `_ ^ &` in text are escaped;
- nougat's Markdown fixes: `\\bm` -> `\\mathbf`, `\\mathscr` -> `\\mathcal`.

A command we do not know is kept: `MathRepair.commands` lists every control word used, and the LaTeX
writer declares each with `\\providecommand` (a no-op for defined ones), so an unknown command prints
its name instead of stopping the run. What cannot be repaired (an unknown environment, absurd nesting)
raises `UnrepairableMath`; the caller replaces the span with a visible `[UNREPAIRABLE_MATH:N]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .texcommands import (ACCENTS, ALIASES, ARGS, BIG, COLUMN_LIMIT, CONTROL_SYMBOLS, COUNTED, DELIMITERS, DIMENSION,
                           DROPPED, MATH_ENVS, MATH_FONT_FOR_TEXT, MAX_DEPTH, OPERATORS, RENAMED, RULED_ENVS,
                           REFERENCES, SPEC_ENVS, TEXT_ARGS, TEXT_SAFE, TEXT_SYMBOLS, UNSAFE)

_TOKEN = re.compile(r"\\[A-Za-z]+|\\[^A-Za-z]|\\$|\s+|.", re.S)


class UnrepairableMath(ValueError):
    """Math that no repair here makes safe to compile; the message says why."""


@dataclass
class Group:
    children: list


@dataclass
class Env:
    name: str
    spec: str | None
    children: list


@dataclass
class MathRepair:
    """A repaired span: `tex` is safe between `$...$` or in a display; `commands` are its control words."""

    tex: str
    display: bool
    commands: set[str] = field(default_factory=set)


def repair_math(source: str, display: bool) -> MathRepair:
    """Repair the body of one math span (without its delimiters); see the module docstring.

    Raises:
        UnrepairableMath: an unknown environment, or nesting deeper than MAX_DEPTH.
    """
    tree = _parse(_tokenize(source))
    tags: list[str] = []
    tree = _pull_tags(tree, tags)
    if _has_top_level(tree, ("&", "\\\\")):
        if display:
            tree = [Env("aligned" if _has_top_level(tree, ("&",)) else "gathered", None, tree)]
        else:
            tree = [" " if node in ("&", "\\\\") else node for node in tree]
    fixed = _fix_seq(tree, text_mode=False)
    if display and tags:
        fixed += [" ", "\\tag", Group(list(tags[0]))]
    tex = re.sub(r" {2,}", " ", _serialize(fixed)).strip()  # dropped tokens leave runs of spaces
    if re.search(r"(?<!\\)(\\\\)*\\$", tex):  # a trailing lone backslash would escape the closing $
        tex += "{}"
    # `\relax` counts as undefined for \providecommand (which then fails), and `\end...` names cannot be defined.
    words = {w for w in re.findall(r"\\([A-Za-z]+)", tex) if w not in ("begin", "relax") and not w.startswith("end")}
    return MathRepair(tex=tex, display=display, commands=words)


def _tokenize(source: str) -> list[str]:
    tokens = []
    for match in _TOKEN.finditer(source):
        token = match.group()
        if token.isspace():
            token = " "
        elif token in ("#", "%", "$"):
            token = "\\" + token
        elif token == "\\":  # a lone backslash at the very end
            continue
        elif token == "\\\n" or token == "\\\t":
            token = " "
        tokens.append(RENAMED.get(token, token))
    return tokens


def _parse(tokens: list[str]) -> list:
    """Brace groups and environments as a tree; opened ones are closed at the end, stray closers dropped."""
    root: list = []
    stack: list[tuple[str, object, list]] = [("root", None, root)]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "{":
            group = Group([])
            stack[-1][2].append(group)
            stack.append(("group", group, group.children))
        elif token == "}":
            if stack[-1][0] == "group":
                stack.pop()
        elif token in ("\\begin", "\\end"):
            name, i = _read_name(tokens, i)
            if name is None:
                continue  # `\begin` without a name: drop the command
            if token == "\\begin" and name in COUNTED:
                _, i = _read_group_text(tokens, i)
            name = ALIASES.get(name, name)
            if token == "\\end":
                depth = next((d for d in range(len(stack) - 1, 0, -1)
                              if stack[d][0] == "env" and stack[d][1].name == name), None)
                if depth is not None:
                    del stack[depth:]
                continue
            if name not in MATH_ENVS:
                raise UnrepairableMath(f"unknown environment {name!r}")
            spec = None
            if name in SPEC_ENVS:
                i = _skip_optional(tokens, i)
                spec, i = _read_group_text(tokens, i)
            env = Env(name, spec, [])
            stack[-1][2].append(env)
            stack.append(("env", env, env.children))
        else:
            stack[-1][2].append(token)
        if len(stack) > MAX_DEPTH:
            raise UnrepairableMath(f"nested more than {MAX_DEPTH} levels deep")
    return root


def _read_name(tokens: list[str], i: int) -> tuple[str | None, int]:
    j = _skip_spaces(tokens, i)
    if j >= len(tokens) or tokens[j] != "{":
        return None, i
    end = j + 1
    while end < len(tokens) and tokens[end] != "}" and end - j < 30:
        end += 1
    name = "".join(tokens[j + 1:end]).strip()
    if end >= len(tokens) or tokens[end] != "}" or not re.fullmatch(r"[A-Za-z]+\*?", name):
        return None, i
    return name, end + 1


def _skip_spaces(tokens: list[str], i: int) -> int:
    while i < len(tokens) and tokens[i] == " ":
        i += 1
    return i


def _skip_optional(tokens: list[str], i: int) -> int:
    j = _skip_spaces(tokens, i)
    if j < len(tokens) and tokens[j] == "[":
        end = next((k for k in range(j, min(len(tokens), j + 10)) if tokens[k] == "]"), None)
        if end is not None:
            return end + 1
    return i


def _read_group_text(tokens: list[str], i: int) -> tuple[str | None, int]:
    """The raw text of a braced argument (nested braces kept), or None when there is none."""
    j = _skip_spaces(tokens, i)
    if j >= len(tokens) or tokens[j] != "{":
        return None, i
    depth, k = 0, j
    while k < len(tokens):
        depth += {"{": 1, "}": -1}.get(tokens[k], 0)
        if depth == 0:
            return "".join(tokens[j + 1:k]), k + 1
        k += 1
    return None, i


def _pull_tags(nodes: list, tags: list[str]) -> list:
    """Remove every `\\tag{..}` (anywhere: it is an error inside `aligned`), keeping plain tag texts, and `\\label`s."""
    out: list = []
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if node == "\\label":  # invisible, and two in one display are an error; nothing refers to them
            j = _skip_spaces(nodes, i + 1)
            i = j + 1 if j < len(nodes) and isinstance(nodes[j], Group) else i + 1
            continue
        if node == "\\tag":
            j = _skip_spaces(nodes, i + 1)
            j = j + 1 if j < len(nodes) and nodes[j] == "*" else j
            j = _skip_spaces(nodes, j)
            if j < len(nodes) and isinstance(nodes[j], Group):
                text = _serialize(nodes[j].children).strip()
                if re.fullmatch(r"[\w.\-*()' ]{1,20}", text):
                    tags.append(text)
                i = j + 1
                continue
        if isinstance(node, Group):
            node = Group(_pull_tags(node.children, tags))
        elif isinstance(node, Env):
            node = Env(node.name, node.spec, _pull_tags(node.children, tags))
        out.append(node)
        i += 1
    return out


def _has_top_level(nodes: list, tokens: tuple[str, ...]) -> bool:
    return any(isinstance(node, str) and node in tokens for node in nodes)


def _fix_env(env: Env) -> Env:
    rows = _split_rows(env.children)
    limit = COLUMN_LIMIT.get(env.name)
    fixed_rows = []
    for cells, separator in rows:
        cells = [_fix_cell(cell, rules=(k == 0 and env.name in RULED_ENVS)) for k, cell in enumerate(cells)]
        if limit and len(cells) > limit:
            extra = [node for cell in cells[limit - 1:] for node in (cell + [" ", "\\quad", " "])]
            cells = cells[:limit - 1] + [extra[:-3]]
        fixed_rows.append((cells, separator))
    children: list = []
    for cells, separator in fixed_rows:
        for k, cell in enumerate(cells):
            children += (["&"] if k else []) + cell
        children += separator
    spec = env.spec
    if env.name in SPEC_ENVS:
        spec = _column_spec(spec, max((len(cells) for cells, _ in fixed_rows), default=1))
    if env.name in ("aligned", "gathered") and next((n for n in children if n != " "), None) == "[":
        children.insert(0, "\\relax")  # or `[` is read as the environment's position argument
    if env.name == "group" and len(fixed_rows) > 1:
        return Env("gathered", None, children)
    if env.name == "group":
        return Group(children)  # type: ignore[return-value]  (equation & co. become a plain group)
    return Env(env.name, spec, children)


def _split_rows(nodes: list) -> list[tuple[list[list], list]]:
    """Rows of an alignment: (cells, row separator tokens), the separator with a checked `[dim]`."""
    rows: list[tuple[list[list], list]] = []
    cells: list[list] = [[]]
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if node == "&":
            cells.append([])
        elif node == "\\\\":
            separator = ["\\\\"]
            j = _skip_spaces(nodes, i + 1)
            if j < len(nodes) and nodes[j] == "*":
                j = _skip_spaces(nodes, j + 1)
            if j < len(nodes) and nodes[j] == "[":
                end = next((k for k in range(j, min(len(nodes), j + 12)) if nodes[k] == "]"), None)
                body = "".join(n for n in nodes[j + 1:end] if isinstance(n, str)) if end else ""
                if end is not None and DIMENSION.fullmatch(body):
                    separator.append(f"[{body.strip()}]")
                    j = end + 1
                else:
                    separator.append("\\relax")  # `[` right after `\\` would be read as a length
            rows.append((cells, separator + [" "]))
            cells = [[]]
            i = j
            continue
        else:
            cells[-1].append(node)
        i += 1
    rows.append((cells, []))
    return rows


def _fix_cell(cell: list, rules: bool) -> list:
    lead: list = []
    if rules:  # `\hline` is only allowed before the first cell of a row of an array
        while cell and (cell[0] == " " or cell[0] == "\\hline"):
            lead.append(cell.pop(0))
    return lead + _fix_seq(cell, text_mode=False)


def _column_spec(spec: str | None, columns: int) -> str:
    kept = re.findall(r"[lcr|]|[pmb]\{[^{}]*\}", spec or "")
    kept = [part for part in kept if len(part) == 1 or DIMENSION.fullmatch(part[2:-1])]
    have = sum(part != "|" for part in kept)
    return "".join(kept) + "c" * max(0, columns - have)


def _next(nodes: list, i: int) -> int | None:
    j = _skip_spaces(nodes, i)
    return j if j < len(nodes) else None


def _fix_seq(nodes: list, text_mode: bool) -> list:
    """Fix one list of nodes (a group, a cell, or the whole span); see the module docstring."""
    out: list = []
    open_lefts = 0
    missing_lefts = 0
    scripts: set[str] = set()
    i = 0
    while i < len(nodes):
        node = nodes[i]
        i += 1
        if isinstance(node, Group):
            out.append(Group(_fix_seq(node.children, text_mode)))
            scripts.clear()
            continue
        if isinstance(node, Env):
            if text_mode:
                out.append("\\ensuremath")
                out.append(Group([_fix_env(node)]))
            else:
                out.append(_fix_env(node))
            scripts.clear()
            continue
        token = node
        if token == " ":
            if not (out and out[-1] == "'" and not text_mode):  # `' ^2` would be a double superscript
                out.append(token)
            continue
        if text_mode:
            out += _fix_text_token(token)
            if token in ACCENTS:
                i = _take_argument(nodes, i, out, text_mode=True)
            continue
        if token in DROPPED:
            continue
        if token in ("&", "\\\\"):  # outside an alignment: a space (which does not end a script base)
            out.append(" ")
            continue
        if token in ("^", "_"):
            if token in scripts and not (token == "^" and out and out[-1] == "'"):  # `x'^2` is fine
                out.append(Group([]))
                scripts.clear()
            scripts.add(token)
            out.append(token)
            i = _take_argument(nodes, i, out, text_mode=False)
            continue
        if token == "'":
            if "^" in scripts and out and out[-1] != "'":
                out.append(Group([]))
                scripts.clear()
            scripts.add("^")  # on the same base: `x_a'_b` is a double subscript  # a prime is a superscript: `x'_1^2` would be a double one
            out.append(token)
            continue
        saved, before = set(scripts), len(out)
        scripts.clear()
        if token in ("\\left", "\\right", "\\middle"):
            if token == "\\left":
                open_lefts += 1
            elif token == "\\right":
                if open_lefts:
                    open_lefts -= 1
                else:
                    missing_lefts += 1
            elif not open_lefts:
                scripts = saved
                continue  # `\middle` outside `\left...\right`: keep the delimiter alone
            out.append(token)
            j = _next(nodes, i)
            if j is not None and isinstance(nodes[j], str) and nodes[j] in DELIMITERS:
                out.append(nodes[j])
                i = j + 1
            else:
                out.append(".")
        elif token in BIG:
            j = _next(nodes, i)
            if j is not None and isinstance(nodes[j], str) and nodes[j] in DELIMITERS:
                out += [token, nodes[j]]
                i = j + 1
        elif token in ("\\limits", "\\nolimits"):
            if _follows_operator(out):
                out.append(token)
        elif token == "\\dots":  # amsmath's \dots looks ahead, and breaks on \boldsymbol{\left..}
            out += [token, Group([])]
        elif token in ACCENTS:
            out.append(ACCENTS[token])
            i = _take_argument(nodes, i, out, text_mode=False)
        elif token == "\\hspace":
            j = _next(nodes, i)
            if j is not None and nodes[j] == "*":
                j = _next(nodes, j + 1)
            if j is not None and isinstance(nodes[j], Group) and DIMENSION.fullmatch(_serialize(nodes[j].children)):
                out += [token, nodes[j]]
                i = j + 1
            elif j is not None and isinstance(nodes[j], Group):
                i = j + 1  # `\hspace{abc}`: TeX stops at "Missing number"; drop it
        elif token.startswith("\\") and not _is_word(token):
            out += [token] if token[1:] in CONTROL_SYMBOLS else _visible(token)
        elif token.startswith("\\") and (token[1:] in UNSAFE or token.startswith("\\end")):
            out += _visible(token)
        elif token[1:] in REFERENCES:  # `\ref{eq:1}` -> `\text{[eq:1]}`: its label is gone, and a key may hold anything
            j = _next(nodes, i)
            key = _serialize(nodes[j].children) if j is not None and isinstance(nodes[j], Group) else ""
            i = j + 1 if key else i
            key = [{"_": "\\_"}.get(ch, ch) for ch in re.sub(r"[^A-Za-z0-9:.,_\- ]", "", key)]
            brackets = REFERENCES[token[1:]]
            out += ["\\text", Group([brackets[0]] + key + [brackets[1]])]
        elif token in ("\\multicolumn",):
            out += _visible(token)
        elif token[1:] in TEXT_ARGS:
            i = _fix_text_command(token, nodes, i, out)
        elif token[1:] in ARGS:
            out.append(token)
            if token == "\\sqrt":
                i = _take_optional(nodes, i, out)
            if token == "\\operatorname" and _next(nodes, i) is not None and nodes[_next(nodes, i)] == "*":
                out.append("*")
                i = _next(nodes, i) + 1
            for _ in range(ARGS[token[1:]]):
                i = _take_argument(nodes, i, out, text_mode=False)
        else:
            out.append(token)
        if len(out) == before:  # a dropped command is not a new base: `x^a \limits ^b` is still a double script
            scripts = saved
    if missing_lefts:
        out = ["\\left", "."] * missing_lefts + [" "] + out
    out += ["\\right", "."] * open_lefts
    return out


def _fix_text_token(token: str) -> list:
    if token in ("_", "^", "&"):
        return ["\\_"] if token == "_" else ["\\^{}"] if token == "^" else ["\\&"]
    if token == "\\\\":
        return [" "]
    if token.startswith("\\") and not _is_word(token) and token[1:] not in CONTROL_SYMBOLS | set("'\"^~=.`"):
        return []  # `\(` and the like inside \text{}: unbalanced math delimiters
    return [token]


def _follows_operator(out: list) -> bool:
    """`\\limits` is only allowed after an operator (`\\sum`, `\\mathop{..}`, `\\operatorname*{..}`)."""
    seen = [n for n in out if n != " "]
    if seen and isinstance(seen[-1], str):
        return seen[-1][1:] in OPERATORS
    return len(seen) >= 2 and isinstance(seen[-1], Group) and seen[-2] in ("\\mathop", "\\operatorname", "*")


def _fix_text_command(token: str, nodes: list, i: int, out: list) -> int:
    """`\\text{...}` and friends: the argument stays text unless it uses math-only commands."""
    j = _next(nodes, i)
    if j is None or not isinstance(nodes[j], Group):
        out.append(token)
        return _take_argument(nodes, i, out, text_mode=True)
    body = _serialize(nodes[j].children)
    words = set(re.findall(r"\\([A-Za-z]+)", body))
    symbols = set(re.findall(r"\\([^A-Za-z])", body))
    if words <= TEXT_SAFE and symbols <= TEXT_SYMBOLS and not any(isinstance(n, Env) for n in _walk(nodes[j].children)):
        out += [token, Group(_fix_seq(nodes[j].children, text_mode=True))]
    else:
        out += [MATH_FONT_FOR_TEXT.get(token[1:], "\\mathrm"), Group(_fix_seq(nodes[j].children, text_mode=False))]
    return j + 1


def _walk(nodes: list):
    for node in nodes:
        yield node
        if isinstance(node, (Group, Env)):
            yield from _walk(node.children)


def _take_argument(nodes: list, i: int, out: list, text_mode: bool) -> int:
    """Copy the argument that starts at nodes[i] (after spaces) to `out`; `{}` when there is none."""
    j = _next(nodes, i)
    if j is None:
        out.append(Group([]))
        return len(nodes)
    node = nodes[j]
    if isinstance(node, Group):
        out.append(Group(_fix_seq(node.children, text_mode)))
        return j + 1
    if isinstance(node, Env) or node in ("^", "_", "&", "\\\\", "'", "\\left", "\\right", "\\middle",
                                         "\\limits", "\\nolimits") \
            or node.startswith("\\") and (_arg_count(node) or node[1:] in UNSAFE or node.startswith("\\end")):
        # A command that needs arguments of its own, or a token that cannot be an argument: give it braces.
        if isinstance(node, Env) or _arg_count(node):
            span_end = _argument_span(nodes, j)
            out.append(Group(_fix_seq(nodes[j:span_end], text_mode)))
            return span_end
        out.append(Group([]))
        return i
    if node.startswith("\\") and not _is_word(node) and node[1:] not in CONTROL_SYMBOLS:
        out.append(Group(_visible(node)))
        return j + 1
    if node.startswith("\\"):  # `\sqrt\ddots`: a macro that expands to several tokens needs braces
        out.append(Group([node] if text_mode or node not in DROPPED else []))
        return j + 1
    # `^~`: an active character needs braces, and so does `\frac é`: pdflatex reads é as two bytes.
    out.append(node if node.isascii() and node.isalnum() else Group([node]))
    return j + 1


def _argument_span(nodes: list, j: int) -> int:
    """End of a command starting at nodes[j] together with its arguments, for wrapping it in braces."""
    node = nodes[j]
    if isinstance(node, Env):
        return j + 1
    count = _arg_count(node)
    k = j + 1
    for _ in range(count):
        k2 = _next(nodes, k)
        if k2 is None:
            return len(nodes)
        k = k2 + 1
    return k


def _arg_count(token: str) -> int:
    if token in BIG or token in ACCENTS or token == "\\hspace":
        return 1
    return ARGS.get(token[1:], 0) if token.startswith("\\") else 0


def _take_optional(nodes: list, i: int, out: list) -> int:
    j = _next(nodes, i)
    if j is None or nodes[j] != "[":
        return i
    end = next((k for k in range(j + 1, len(nodes)) if nodes[k] == "]"), None)
    if end is None:
        return j + 1  # an unclosed `[`: drop it, or TeX reads to the end of the file for `]`
    out.append("[")
    out += _fix_seq(nodes[j + 1:end], text_mode=False)
    out.append("]")
    return end + 1


def _is_word(token: str) -> bool:
    """A control word (`\\alpha`); `\\中` is a control symbol here, as in pdflatex."""
    return token[1:].isascii() and token[1:].isalpha()


def _visible(token: str) -> list:
    """A command shown as its name: `\\backslash\\mathrm{name}`."""
    name = token[1:]
    if name.isascii() and name.isalpha():
        return ["\\backslash", "\\mathrm", Group(list(name))]
    return ["\\backslash", "\\" + name if name in CONTROL_SYMBOLS else name]


def _serialize(nodes: list) -> str:
    parts: list[str] = []
    for node in nodes:
        if isinstance(node, Group):
            text = "{" + _serialize(node.children) + "}"
        elif isinstance(node, Env):
            spec = "{" + node.spec + "}" if node.spec is not None else ""
            text = f"\\begin{{{node.name}}}{spec}" + _serialize(node.children) + f"\\end{{{node.name}}}"
        else:
            text = node
        if parts and re.search(r"\\[A-Za-z]+$", parts[-1]) and (text[:1].isalpha() or not text[:1].isascii()):
            parts.append(" ")  # `\alpha` then `x` must not become `\alphax` (nor `\alpha中`: xelatex reads 中 as a letter)
        parts.append(text)
    return "".join(parts)
