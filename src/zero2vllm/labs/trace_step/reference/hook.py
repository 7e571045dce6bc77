"""Records what vLLM's scheduler decided in one step: tokens per request and each request's
KV blocks so far. The first time a request is scheduled its blocks come in full
(scheduled_new_reqs); after that only the new ones (scheduled_cached_reqs.new_block_ids), unless
it resumed from preemption, when the list is given again from scratch."""

blocks: dict[str, list[int]] = {}


def on_step(scheduler_output) -> dict:
    for req in scheduler_output.scheduled_new_reqs:
        blocks[req.req_id] = list(req.block_ids[0])
    cached = scheduler_output.scheduled_cached_reqs
    resumed = getattr(cached, "resumed_req_ids", set()) or set()
    for rid, new in zip(cached.req_ids, cached.new_block_ids):
        if rid in resumed:
            blocks[rid] = list(new[0]) if new else []
        elif new:
            blocks.setdefault(rid, []).extend(new[0])
    tokens = dict(scheduler_output.num_scheduled_tokens)
    return {"total": scheduler_output.total_num_scheduled_tokens, "tokens": tokens,
            "blocks": {rid: list(blocks.get(rid, [])) for rid in tokens}}
