"""`minillm rl`'s run: the SFT warm-up, then the GRPO run on Ray (actors/rl.py) or in this
process (`--local`, actors/rl_local.py), then the done line and the summary block."""

from __future__ import annotations

import json
from pathlib import Path

from actors.driver import ActorDied, with_resume
from actors.driver import summary as run_summary
from actors.rl import run
from actors.rl_local import run_local
from minillm.config.rl import RLConfig


def warmup(cfg: RLConfig) -> str:
    """SFT on the training solutions (annotations removed, ending in '#### n') for
    `sft_steps`; returns the checkpoint to start RL from. A finished warm-up is reused."""
    from minillm.config.job import DataConfig, TrainJob
    from minillm.data.gsm8k import load_gsm8k, sft_record
    from minillm.train.cli import run as run_train
    from minillm.train.config import TrainConfig
    from minillm.train.state import find_checkpoint, load_state

    wdir = Path(cfg.out_dir) / "warmup"
    done = find_checkpoint(wdir)
    if done is not None and load_state(done).step >= cfg.sft_steps:
        print(f"[rl] warm-up done already ({done})", flush=True)
        return str(done)
    wdir.mkdir(parents=True, exist_ok=True)
    data = wdir / "gsm8k_sft.jsonl"
    recs = load_gsm8k(
        cfg.data_path, data_dir=cfg.data_dir, hf_endpoint=cfg.hf_endpoint, limit=cfg.limit
    )
    with data.open("w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(sft_record(r, cfg.lang), ensure_ascii=False) + "\n")
    n, t = cfg.sft_steps, cfg.train
    job = TrainJob(
        data=DataConfig(data_path=str(data), task="sft", shuffle_buffer=1000),
        train=TrainConfig(
            out_dir=str(wdir), max_steps=n, warmup_steps=max(1, n // 20),
            learning_rate=cfg.sft_lr, seq_len=t.seq_len, batch_size=cfg.sft_batch_size,
            dtype=t.dtype, epochs=1000, save_interval=n, log_interval=t.log_interval,
        ),
        resume=str(wdir) if done is not None else None,
        init_from=None if done is not None else cfg.init_from,
    )  # fmt: skip
    print(f"[rl] warm-up: minillm train --config {wdir / 'train.json'}", flush=True)
    run_train(job)
    return str(find_checkpoint(wdir))


def launch(cfg: RLConfig, argv: list[str], prog: str = "minillm rl") -> int:
    """The SFT warm-up (`sft_steps`), then the GRPO run (Ray, or `local`), then the done line
    and the summary block; an actor's death becomes one line with the command to continue."""
    import dataclasses
    import os

    if cfg.cores:
        os.environ["MINILLM_CORES"] = cfg.cores  # read by the actors' runtime env
    if cfg.sft_steps:
        cfg = dataclasses.replace(cfg, init_from=warmup(cfg))
    if cfg.max_steps == 0:
        print(f"[rl] --max_steps 0: warm-up only; the policy is {cfg.init_from}", flush=True)
        return 0
    eval_before = cfg.run_eval and not cfg.resume
    if cfg.local:
        res = run_local(cfg, eval_before=eval_before)
    else:
        try:
            res = run(cfg, eval_before=eval_before)
        except ActorDied as e:
            raise with_resume(e, cfg.out_dir, prog, argv) from None
    done = {
        "step": res["learner"].get("step"),
        "before": res["before"],
        "evals": [
            {k: e[k] for k in ("step", "gsm8k_accuracy", "accuracy") if k in e}
            for e in res["evals"]
        ],
        "rollout_tok_s": round(res["rollout_tok_s"], 1),
        "seconds": round(res["seconds"], 1),
    }
    print("[rl] done " + json.dumps(done), flush=True)
    held = []
    for label, e in (("before", res["before"]), ("after", (res["evals"] or [None])[-1])):
        if e and "gsm8k_accuracy" in e:
            at = f" (step {e['step']})" if e.get("step") is not None else ""
            held.append(f"{label}{at}: {cfg.eval_data_path} accuracy {e['gsm8k_accuracy']:.3f}")
    print(run_summary("rl", cfg.out_dir, res, held), flush=True)
    return 0
