"""`python -m minillm.eval.bench` / `minillm bench`: run the synthetic suites against MiniLLM
checkpoints, an Ollama model and/or an OpenAI-compatible server on the same seeded items, then
report accuracy, invalid rate and tokens/s per suite and category (table, JSON, PNG).

    minillm bench --checkpoint out/sft --ollama_model qwen3:0.6b --n_knowledge 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

from minillm.eval.bench.score import score
from minillm.eval.bench.suites import SUITES, build


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minillm bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out_dir", default="out/bench", help="where bench.json and bench.png go")
    p.add_argument("--checkpoint", nargs="+", action="extend", default=[], help="MiniLLM checkpoint or run folder(s)")  # fmt: skip
    p.add_argument("--tokenizer_path", default=None)
    p.add_argument("--batch_size", type=int, default=16, help="MiniLLM prompts decoded together")
    p.add_argument("--ollama_url", default="http://127.0.0.1:11434")
    p.add_argument("--ollama_model", default="qwen3:0.6b")
    p.add_argument("--ollama_think", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--think_budget", type=int, default=2048, help="extra num_predict when thinking")  # fmt: skip
    p.add_argument("--num_ctx", type=int, default=4096)
    p.add_argument("--openai_url", default=None, help="OpenAI-compatible base URL (enables it)")
    p.add_argument("--openai_model", default=None)
    p.add_argument("--openai_key", default=os.environ.get("OPENAI_API_KEY"))
    p.add_argument("--parallel", type=int, default=4, help="concurrent HTTP requests")
    p.add_argument("--timeout", type=float, default=300.0, help="per-request timeout (s)")
    p.add_argument("--retries", type=int, default=3, help="retries on connect errors/5xx/timeouts")  # fmt: skip
    p.add_argument("--no_ollama", action="store_true")
    p.add_argument("--no_mlx", action="store_true", help="skip the MiniLLM checkpoints")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--max_new_tokens", type=int, default=None, help="override the per-type budgets")  # fmt: skip
    p.add_argument("--suite", default="all", help=f"all or a comma list of {','.join(SUITES)}")
    p.add_argument("--lang", default="both", choices=["zh", "en", "both"])
    for s in SUITES:
        p.add_argument(f"--n_{s}", type=int, default=50, help=f"{s} items per language")
    p.add_argument("--sort_list_len", type=int, default=8)
    p.add_argument("--copy_length", type=int, default=24)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--no_progress", dest="progress", action="store_false", help=argparse.SUPPRESS)
    return p


def make_items(ns: argparse.Namespace) -> list[dict]:
    suites = list(SUITES) if ns.suite == "all" else [s.strip() for s in ns.suite.split(",") if s.strip()]  # fmt: skip
    counts = {s: getattr(ns, f"n_{s}") for s in SUITES}
    if any(n < 0 for n in counts.values()):
        raise ValueError("--n_<suite> counts must be >= 0")
    items = build(ns.seed, ns.lang, counts, suites, ns.sort_list_len, ns.copy_length)
    if ns.max_new_tokens is not None:
        if ns.max_new_tokens < 1:
            raise ValueError(f"--max_new_tokens={ns.max_new_tokens} must be >= 1")
        for it in items:
            it["max_new_tokens"] = ns.max_new_tokens
    return items


def make_runners(ns: argparse.Namespace) -> list:
    from minillm.eval.bench.run import MLXRunner, OllamaRunner, OpenAIRunner

    http = dict(parallel=ns.parallel, timeout=ns.timeout, retries=ns.retries, seed=ns.seed)
    runners = []
    if not ns.no_mlx:
        if not ns.checkpoint:
            raise ValueError("pass --checkpoint (one or more folders) or --no_mlx")
        runners += [MLXRunner(c, ns.batch_size, ns.tokenizer_path) for c in ns.checkpoint]
    if not ns.no_ollama:
        r = OllamaRunner(ns.ollama_url, ns.ollama_model, think=ns.ollama_think, think_budget=ns.think_budget, num_ctx=ns.num_ctx, **http)  # fmt: skip
        r.check()
        runners.append(r)
    if ns.openai_url:
        if not ns.openai_model:
            raise ValueError("--openai_url needs --openai_model")
        runners.append(OpenAIRunner(ns.openai_url, ns.openai_model, api_key=ns.openai_key, **http))
    if not runners:
        raise ValueError("nothing to run: give --checkpoint, drop --no_ollama or set --openai_url")
    return runners


def _stats(rows: list[dict], seconds: float | None = None) -> dict:
    n = len(rows)
    toks = sum(r["tokens"] for r in rows)
    secs = seconds if seconds is not None else sum(r["seconds"] for r in rows)
    return dict(
        n=n,
        correct=sum(r["correct"] for r in rows),
        acc=sum(r["correct"] for r in rows) / max(n, 1),
        invalid=sum(not r["valid"] for r in rows) / max(n, 1),
        errors=sum(bool(r.get("error")) for r in rows),
        tokens=toks,
        tok_s=toks / secs if secs > 0 else 0.0,
    )


def summarize(records: list[dict], wall: float) -> dict:
    """Overall (tokens/s over the wall time), per suite, per suite/category and per language."""
    groups: dict[str, dict[str, list]] = {"suite": defaultdict(list), "category": defaultdict(list), "lang": defaultdict(list)}  # fmt: skip
    for r in records:
        groups["suite"][r["suite"]].append(r)
        groups["category"][f"{r['suite']}/{r['category']}"].append(r)
        groups["lang"][r["lang"]].append(r)
    out = {"overall": {**_stats(records, wall), "wall_s": wall}}
    for k, g in groups.items():
        out[k] = {name: _stats(rows) for name, rows in sorted(g.items())}
    return out


def format_table(summaries: dict[str, dict]) -> str:
    """Rows: overall, tok/s, then per language, suite and category; one column per run."""
    names = list(summaries)
    first = next(iter(summaries.values()))
    rows = [("overall", [s["overall"] for s in summaries.values()])]
    for k in ("lang", "suite", "category"):
        label = "" if k == "category" else f"{k} "
        rows += [(f"{label}{g}", [s[k].get(g) for s in summaries.values()]) for g in first[k]]
    w0 = max(len(r[0]) for r in rows)
    w = max(26, *(len(n) for n in names))

    def cell(st: dict | None) -> str:
        return (
            "-"
            if st is None
            else f"{100 * st['acc']:.1f}% inv {100 * st['invalid']:.1f}% n={st['n']}"
        )

    lines = [f"{'':<{w0}}  " + "  ".join(f"{n:<{w}}" for n in names)]
    lines.append(f"{'tok/s':<{w0}}  " + "  ".join(f"{s['overall']['tok_s']:<{w}.1f}" for s in summaries.values()))  # fmt: skip
    lines += [
        f"{name:<{w0}}  " + "  ".join(f"{cell(c):<{w}}" for c in cells) for name, cells in rows
    ]
    return "\n".join(ln.rstrip() for ln in lines)


def plot(summaries: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = ["overall", *next(iter(summaries.values()))["suite"]]
    fig, axes = plt.subplots(2, 1, figsize=(min(16, max(8, 0.5 * len(groups) * len(summaries))), 7), sharex=True)  # fmt: skip
    width = 0.8 / len(summaries)
    for j, (name, s) in enumerate(summaries.items()):
        stats = [s["overall"] if g == "overall" else s["suite"][g] for g in groups]
        xs = [i + (j - (len(summaries) - 1) / 2) * width for i in range(len(groups))]
        axes[0].bar(xs, [100 * st["acc"] for st in stats], width, label=name)
        axes[1].bar(xs, [100 * st["invalid"] for st in stats], width, label=name)
    axes[0].axhline(25, color="grey", lw=0.8, ls="--")
    axes[0].set_ylabel("accuracy %")
    axes[1].set_ylabel("invalid %")
    axes[0].set_ylim(0, 100)
    axes[1].set_ylim(0, 100)
    axes[1].set_xticks(range(len(groups)), groups, rotation=20)
    axes[0].legend(fontsize=8)
    axes[0].set_title("minillm bench")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench(items: list[dict], runner, progress: bool = True) -> tuple[list[dict], float]:
    """Run and score `items` with one runner; returns the per-item records and the wall time."""
    from tqdm import tqdm

    from minillm.eval.bench.run import run_items

    bar = tqdm(total=len(items), desc=runner.name, disable=not progress, file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    tally = [0, 0, 0]

    def on_item(i: int, out: dict) -> None:
        valid, correct = score(items[i], out.get("text", ""))
        out.update(valid=valid, correct=correct)
        tally[0] += 1
        tally[1] += correct
        tally[2] += not valid
        bar.set_postfix(acc=f"{tally[1] / tally[0]:.1%}", inv=f"{tally[2] / tally[0]:.1%}", refresh=False)  # fmt: skip
        bar.update()

    outs, wall = run_items(runner, items, on_item)
    bar.close()
    keys = ("id", "suite", "category", "lang", "answer_type", "answer")
    return [{**{k: it[k] for k in keys}, **o} for it, o in zip(items, outs, strict=True)], wall


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    if ns.parallel < 1 or ns.batch_size < 1 or ns.retries < 0 or ns.timeout <= 0:
        raise ValueError("--parallel and --batch_size must be >= 1, --retries >= 0, --timeout > 0")
    items = make_items(ns)
    if not items:
        raise ValueError("no items: check --suite and the --n_<suite> counts")
    runners = make_runners(ns)
    counts = defaultdict(int)
    for it in items:
        counts[it["suite"]] += 1
    print(f"[bench] {len(items)} items ({', '.join(f'{k}={v}' for k, v in counts.items())}), seed={ns.seed}, lang={ns.lang}", file=sys.stderr)  # fmt: skip
    runs = {}
    for r in runners:
        records, wall = bench(items, r, ns.progress)
        runs[r.name] = dict(summary=summarize(records, wall), records=records)
        errors = [x["error"] for x in records if x.get("error")]
        if errors:
            print(f"[bench] {r.name}: {len(errors)} requests failed, e.g. {errors[0]}", file=sys.stderr)  # fmt: skip
    summaries = {k: v["summary"] for k, v in runs.items()}
    print(format_table(summaries))
    out = Path(ns.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(ns).items() if k != "openai_key"}
    (out / "bench.json").write_text(json.dumps(dict(config=config, runs=runs), ensure_ascii=False, indent=1))  # fmt: skip
    plot(summaries, out / "bench.png")
    print(f"[bench] wrote {out / 'bench.json'} and {out / 'bench.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from minillm.cli import run

    run(main, prog="minillm bench")
