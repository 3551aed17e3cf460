"""WordNet 3.0 for METEOR without a download: nltk's reader pointed at Debian's wordnet-base files.

nltk's `meteor_score` looks synonyms up in WordNet, which nltk normally downloads at run time. Debian's
`wordnet-base` + `wordnet-sense-index` packages install WordNet 3.0 under /usr/share/wordnet, but nltk
3.10 reads a corpus only from `corpora/wordnet/` under one of its data paths, refuses files that resolve
outside that folder (so symlinks fail its path check), and needs a `lexnames` file Debian does not ship.
`ensure_wordnet` copies the files nltk opens into `VARY_HOME/nltk_data/corpora/wordnet/` once, writes
`lexnames` (WordNet's fixed lexnames(5WN) list), and appends that data path to `nltk.data.path`. Where no
WordNet can be found it returns a one-line reason instead, and METEOR is reported unavailable.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import OutputError
from ..files import atomic_write_text

# Where distributions install WordNet 3.0's database files (Debian/Ubuntu wordnet-base, Homebrew, Fedora).
SYSTEM_DIRS = (Path("/usr/share/wordnet"), Path("/usr/local/share/wordnet"), Path("/opt/homebrew/share/wordnet"),
               Path("/usr/share/wordnet-3.0/dict"), Path("/usr/lib/wnres/dict"))
# The files nltk's WordNetCorpusReader opens (its _FILES), less `lexnames`, which we write.
NEEDED = ("cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb", "data.adj",
          "data.adv", "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc")
# WordNet's lexicographer files (lexnames(5WN)): number, name, syntactic category. Fixed since WordNet 1.5.
LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
            "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
            "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
            "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
            "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
            "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
            "adj.ppl").split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def lexnames_text() -> str:
    """The 45-line `lexnames` file: `00 adj.all 3` ... `44 adj.ppl 3`."""
    return "".join(f"{i:02d} {name} {_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def find_system_wordnet() -> Path | None:
    """A directory holding WordNet's database files ($WNSEARCHDIR first, as WordNet's own tools do)."""
    candidates = ([Path(os.environ["WNSEARCHDIR"])] if os.environ.get("WNSEARCHDIR") else []) + list(SYSTEM_DIRS)
    return next((d for d in candidates if all((d / name).is_file() for name in NEEDED)), None)


def ensure_wordnet(data_root: Path | None = None) -> tuple[Path | None, str | None]:
    """Make nltk's `wordnet` corpus loadable offline; returns (nltk data dir, None) or (None, reason).

    An nltk data path that already holds `corpora/wordnet` (a user's `nltk.download`) is used as it is.
    Otherwise the system's WordNet is copied under `data_root` (default VARY_HOME/nltk_data) once.
    """
    import nltk

    for path in nltk.data.path:
        if (Path(path) / "corpora" / "wordnet" / "lexnames").is_file():
            return Path(path), None
    if data_root is None:
        from ..weights.hub import vary_home

        data_root = vary_home() / "nltk_data"
    target = data_root / "corpora" / "wordnet"
    if not all((target / name).is_file() for name in NEEDED + ("lexnames",)):
        source = find_system_wordnet()
        if source is None:
            return None, ("METEOR unavailable: WordNet 3.0 not found (install Debian's wordnet-base and "
                          "wordnet-sense-index, or set WNSEARCHDIR to a WordNet dict directory)")
        try:
            target.mkdir(parents=True, exist_ok=True)
            for name in NEEDED:
                if not (target / name).is_file():
                    tmp = target / f".{name}.tmp"
                    shutil.copyfile(source / name, tmp)  # copies, not links: nltk rejects links that leave the folder
                    os.replace(tmp, target / name)
            atomic_write_text(target / "lexnames", lexnames_text())
        except (OSError, OutputError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            return None, f"METEOR unavailable: cannot prepare WordNet in {target} ({reason})"
    if str(data_root) not in nltk.data.path:
        nltk.data.path.append(str(data_root))
    return data_root, None
