"""Run inside vLLM's venv (stdlib + vllm only; zero2vllm is not importable there):
    python driver.py HOOK_FILE MODEL_DIR OUT_JSON PROMPTS_JSON
An offline vLLM run (the LLM class) of the prompts, with the engine core in this process so that
Scheduler.schedule can be wrapped: after each call the learner's hook gets the SchedulerOutput,
and this script records, independently, what the scheduler and its KV cache manager say."""

import importlib.util
import json
import os
import sys
import traceback


def main() -> None:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core in this process
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    hook_file, model_dir, out_file, prompts_json = sys.argv[1:5]
    spec = importlib.util.spec_from_file_location("learner_hook", hook_file)
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)

    from vllm import LLM, SamplingParams
    from vllm.v1.core.sched.scheduler import Scheduler

    steps = []
    original = Scheduler.schedule

    def schedule(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if not out.total_num_scheduled_tokens:
            return out
        truth = {"total": out.total_num_scheduled_tokens,
                 "tokens": dict(out.num_scheduled_tokens),
                 "blocks": {rid: list(self.kv_cache_manager.get_block_ids(rid)[0])
                            for rid in out.num_scheduled_tokens}}
        try:
            mine, error = hook.on_step(out), None
        except Exception as exc:  # the learner's hook: reported, the run goes on
            mine, error = None, "".join(traceback.format_exception_only(type(exc), exc)).strip()
            tb = traceback.extract_tb(exc.__traceback__)
            frames = [f for f in tb if f.filename == os.path.abspath(hook_file) or f.filename == hook_file]
            if frames:
                error += f" at {hook_file}:{frames[-1].lineno}"
        steps.append({"truth": truth, "hook": mine, "error": error})
        return out

    Scheduler.schedule = schedule
    prompts = json.loads(prompts_json)
    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=256, block_size=32,
              max_num_batched_tokens=16, max_num_seqs=4, seed=0, enable_prefix_caching=True)
    outputs = llm.generate(prompts, SamplingParams(max_tokens=8, temperature=0.0), use_tqdm=False)
    result = {"steps": steps, "block_size": 32, "budget_tokens": 16,
              "requests": [{"prompt_tokens": len(o.prompt_token_ids), "completion": o.outputs[0].text}
                           for o in outputs]}
    with open(out_file, "w") as f:
        json.dump(result, f, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o))


if __name__ == "__main__":
    main()
