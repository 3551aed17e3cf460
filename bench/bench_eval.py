"""Scoring speed of `vary eval score`: pages/s on synthetic pages, every metric (edit distance, F1, BLEU, METEOR).

    python bench/bench_eval.py                     # 1,000 pages of ~3,000 characters, one process per CPU
    python bench/bench_eval.py --pages 200 --workers 1 --chinese

Ground-truth pages are English words drawn (seeded) from WordNet's own index, so METEOR's stem and synonym
lookups see real vocabulary; each prediction replaces, drops or inserts ~8% of its page's words, as an OCR
model's errors would. Both sides are written as .md files to a temporary directory and scored twice: through
`eval.score.score_files` in this process (reading included), and through the `vary eval score` command in a
fresh process (interpreter start, imports and WordNet loading included). Results print as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vary_cli.eval.score import score_files  # noqa: E402
from vary_cli.eval.wordnet import ensure_wordnet  # noqa: E402

CHINESE = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"


def english_words(count: int) -> list[str]:
    """Lemmas from WordNet's index files (underscores are multi-word lemmas: skipped)."""
    root, reason = ensure_wordnet()
    if reason:
        sys.exit(reason)
    words = []
    for pos in ("noun", "verb", "adj", "adv"):
        with open(root / "corpora" / "wordnet" / f"index.{pos}", encoding="utf-8") as handle:
            words += [line.split(" ", 1)[0] for line in handle if not line.startswith(" ") and "_" not in line[:40]]
    return random.Random(0).sample(words, count)


def make_pages(n: int, chars: int, chinese: bool, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    vocab = english_words(5000)
    pages = []
    for _ in range(n):
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < chars:
            if chinese:
                words.append("".join(rng.choice(CHINESE) for _ in range(rng.randint(2, 12))))
            else:
                words.append(rng.choice(vocab).capitalize() if rng.random() < 0.05 else rng.choice(vocab))
        gt = " ".join(words)
        pred = []
        for word in words:
            r = rng.random()
            if r < 0.03:
                continue  # dropped
            pred.append(rng.choice(vocab) if r < 0.06 else word)
            if r > 0.98:
                pred.append(rng.choice(vocab))  # inserted
        pages.append((" ".join(pred), gt))
    return pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--chars", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--chinese", action="store_true", help="Chinese pages (jieba tokenization)")
    args = parser.parse_args()
    pages = make_pages(args.pages, args.chars, args.chinese)
    with tempfile.TemporaryDirectory() as tmp:
        pred_dir, gt_dir = Path(tmp) / "pred", Path(tmp) / "gt"
        pred_dir.mkdir(), gt_dir.mkdir()
        for i, (pred, gt) in enumerate(pages):
            (pred_dir / f"{i:05d}.md").write_text(pred + "\n", encoding="utf-8")
            (gt_dir / f"{i:05d}.mmd").write_text(gt + "\n", encoding="utf-8")
        mean_chars = sum(len(gt) for _, gt in pages) / len(pages)
        common = {"pages": args.pages, "mean_chars": round(mean_chars), "workers": args.workers,
                  "cpus": os.cpu_count(), "chinese": args.chinese}
        for meteor in (True, False):
            started = time.perf_counter()
            report = score_files(pred_dir, gt_dir, workers=args.workers, with_meteor=meteor)
            seconds = time.perf_counter() - started
            print(json.dumps({**common, "mode": "in-process", "meteor": meteor, "seconds": round(seconds, 2),
                              "pages_per_s": round(args.pages / seconds, 1),
                              "means": {k: round(v, 4) for k, v in report.means().items() if v is not None}}))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vary_cli", "eval", "score", str(pred_dir), str(gt_dir), "--json",
                        "--workers", str(args.workers)], check=True, capture_output=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        seconds = time.perf_counter() - started
        print(json.dumps({**common, "mode": "vary eval score (fresh process)", "meteor": True,
                          "seconds": round(seconds, 2), "pages_per_s": round(args.pages / seconds, 1)}))


if __name__ == "__main__":
    main()
