# Rebuilds each request's block list from the scheduler output alone, in one dict of lists.
state = {}


def on_step(out):
    for new in out.scheduled_new_reqs:
        state[new.req_id] = [b for b in new.block_ids[0]]
    c = out.scheduled_cached_reqs
    for i, rid in enumerate(c.req_ids):
        added = c.new_block_ids[i]
        if rid in c.resumed_req_ids:
            state[rid] = list(added[0]) if added else []
        elif added is not None:
            state[rid] = state.get(rid, []) + list(added[0])
    n = {rid: int(k) for rid, k in out.num_scheduled_tokens.items()}
    return {"total": sum(n.values()), "tokens": n, "blocks": {rid: state.get(rid, []) for rid in n}}
