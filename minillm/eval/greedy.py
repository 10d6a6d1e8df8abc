"""Greedy replies of a MiniLLM model to chat conversations, batched: the one decoding path of
every scorer (the distillation evaluator, the GSM8K evaluator, `minillm bench`)."""

from __future__ import annotations

from collections.abc import Callable

from minillm.generate import Generation, generate

Done = Callable[[int, Generation, int], None]  # (conversation index, reply, rows in its batch)


def greedy_replies(
    model,
    tokenizer,
    conversations: list[list[dict]],
    max_new_tokens: int | list[int] = 256,
    batch_size: int = 16,
    done: Done | None = None,
) -> list[Generation]:
    """The greedy reply to each conversation (chat messages, the generation prompt added), in
    order. Conversations are batched by token budget (`max_new_tokens`, one for all or one
    each) and prompt length, so a batch pads little; a prompt longer than the model's
    context keeps its last tokens. `done(i, reply, rows)` is called as each batch ends."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    n = len(conversations)
    budgets = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * n
    if len(budgets) != n:
        raise ValueError(f"{len(budgets)} token budgets for {n} conversations")
    limit = model.args.max_position_embeddings
    ids = [
        tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True)[-(limit - 1) :]
        for c in conversations
    ]
    order = sorted(range(n), key=lambda i: (budgets[i], len(ids[i])))
    out: list[Generation | None] = [None] * n
    start = 0
    while start < n:
        budget = budgets[order[start]]
        end = start
        while end < n and end - start < batch_size and budgets[order[end]] == budget:
            end += 1
        batch = order[start:end]
        gens = generate(model, tokenizer, [ids[i] for i in batch], max_new_tokens=budget)
        for i, g in zip(batch, gens, strict=True):
            out[i] = g
            if done is not None:
                done(i, g, len(batch))
        start = end
    return out  # type: ignore[return-value]
