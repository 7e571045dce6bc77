"""The dashboard's Engine trace page: `z2v engine trace` drawn as a picture, to SEE paged attention
and continuous batching.

GET  /engine/trace          the newest saved trace (zero2vllm.engine.traces), the list of saved ones
GET  /engine/trace/NAME     an older one; ?step=N picks the step whose block tables are shown
POST /engine/trace          run a new trace from the form (the CLI's own `run_trace`), save, redirect

The picture is server-rendered SVG built here in plain Python (no JavaScript; every <title> is a
hover tooltip). Four parts, all read from the saved record:
  - a timeline: one row per sequence, one column per step, coloured by what the sequence did,
    with the tokens computed per step (against the token budget) above;
  - the block pool over time: one row per step, one column per physical block, coloured by the
    sequence holding it (striped: shared; dotted: free but still prefix-cached);
  - for the selected step, each sequence's block table (logical -> physical, slots filled) and
    the text sampled so far;
  - a summary per request.
Runs of cells that do not change (a block held by the same sequence for 40 steps, a sequence
waiting for 10 steps) are one rectangle, and at most MAX_DRAWN_STEPS steps are drawn at once, so
a 36-sequence, 100-block, 300-step trace stays a page of a few hundred kilobytes.

Only the POST handler imports torch (through zero2vllm.engine); showing traces never does."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from flask import Flask, redirect, render_template, request, url_for

from zero2vllm.engine import traces
from zero2vllm.web.trace_view import build_view


ENV_MODEL = "ZERO2VLLM_TRACE_MODEL"  # the model the form runs (default: the bundled smollm2)


MAX_PROMPTS = 36


MAX_PROMPT_CHARS = 2000


FORM_FIELDS = {  # name: (label, lowest, highest)
    "max_tokens": ("Max tokens", 1, 512),
    "block_size": ("Block size", 1, 256),
    "num_kv_blocks": ("Pool blocks", 1, 1024),
    "max_num_batched_tokens": ("Token budget", 1, 8192),
    "max_num_seqs": ("Max sequences", 1, 64),
    "repeat": ("Repeat", 1, 4),
}


EXAMPLE_PROMPTS = ["The capital of France is", "Once upon a time, in a small village by the sea,"]

# What a sequence did in a step: colour and the legend's words.


_run_lock = threading.Lock()  # one trace at a time: each loads a model


class FormError(ValueError):
    """A bad field in the Run form; the message names it and says what is allowed."""


# -- routes ---------------------------------------------------------------------------------------


def register(app: Flask) -> None:
    app.config.setdefault("Z2V_TRACE_MODEL", os.environ.get(ENV_MODEL) or "smollm2")

    def root() -> Path:
        return app.config["Z2V_DATA_ROOT"]

    @app.get("/engine/trace")
    @app.get("/engine/trace/<name>")
    def engine_trace(name: str | None = None):
        return trace_page(root(), name, request.args.get("step", type=int))

    @app.post("/engine/trace")
    def engine_trace_run():
        form = request.form
        try:
            settings = parse_form(form)
        except FormError as exc:
            return trace_page(root(), None, None, form_error=str(exc), form=form, status=422)
        if not _run_lock.acquire(blocking=False):
            return trace_page(root(), None, None, form=form, status=429,
                              form_error="another trace is running; try again when it has finished")
        try:
            try:
                from zero2vllm.engine.trace import run_trace
                from zero2vllm.models import ModelError
            except ImportError as exc:
                return trace_page(root(), None, None, form=form, status=500,
                                  form_error=f"running a trace needs the ml extra ({exc.name} is missing): "
                                             "pip install 'zero2vllm[ml]'")
            settings["model"] = app.config["Z2V_TRACE_MODEL"]
            try:
                _, path = run_trace(settings, source="dashboard", root=root())
            except (ModelError, ValueError, FileNotFoundError, RuntimeError) as exc:
                return trace_page(root(), None, None, form_error=str(exc), form=form, status=422)
            except OSError as exc:
                return trace_page(root(), None, None, form=form, status=500,
                                  form_error=f"the trace ran but could not be saved: {exc}")
        finally:
            _run_lock.release()
        return redirect(url_for("engine_trace", name=path.stem), code=303)


def parse_form(form) -> dict:
    """The Run form's fields as run_trace settings; FormError (one line) for the first bad one."""
    prompts = [line.strip() for line in (form.get("prompts") or "").splitlines() if line.strip()]
    if not prompts:
        raise FormError("Prompts: give at least one prompt, one per line")
    if len(prompts) > MAX_PROMPTS:
        raise FormError(f"Prompts: {len(prompts)} lines; the picture stays readable up to {MAX_PROMPTS}")
    long = next((i for i, p in enumerate(prompts, 1) if len(p) > MAX_PROMPT_CHARS), None)
    if long:
        raise FormError(f"Prompts: line {long} is over {MAX_PROMPT_CHARS} characters; shorten it")
    settings: dict = {"prompts": prompts}
    for key, (label, lo, hi) in FORM_FIELDS.items():
        raw = (form.get(key) or "").strip()
        if not raw:
            settings[key] = traces.DEFAULTS[key]
            continue
        try:
            value = int(raw)
        except ValueError:
            raise FormError(f"{label}: {raw[:20]!r} is not a whole number; use {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise FormError(f"{label}: {value} is out of range; use {lo} to {hi}")
        settings[key] = value
    settings["prefix_caching"] = form.get("prefix_caching") in ("on", "1", "true", "yes")
    return settings


def trace_page(root: Path, name: str | None, step: int | None, *, form_error: str | None = None,
               form=None, status: int = 200):
    saved = traces.list_saved(root)
    record, load_error, view = None, None, None
    if name is None and saved:
        name = saved[0]["name"]
    if name is not None:
        try:
            record = traces.load(name, root)
            view = build_view(record, step, url_for("engine_trace", name=name))
        except traces.TraceFileError as exc:
            load_error, status = str(exc), (404 if status == 200 else status)
        except (KeyError, TypeError, ValueError, IndexError) as exc:  # a file edited by hand
            load_error = f"{name}: this file is not a trace the page can draw ({type(exc).__name__}: {exc})"
            record = None
    values = form_values(form, record)
    return render_template("engine_trace.html", saved=saved, name=name, record=record, view=view,
                           load_error=load_error, form_error=form_error, values=values,
                           fields=FORM_FIELDS, example=traces.EXAMPLE_COMMAND, keep=traces.KEEP), status


def form_values(form, record: dict | None) -> dict:
    """What the form shows: what was just sent (after an error), else the shown trace's settings."""
    if form is not None:
        values = {k: form.get(k, "") for k in FORM_FIELDS}
        values["prompts"] = form.get("prompts", "")
        values["prefix_caching"] = form.get("prefix_caching") in ("on", "1", "true", "yes")
        return values
    s = (record or {}).get("settings") or {}
    values = {k: s.get(k, traces.DEFAULTS[k]) for k in FORM_FIELDS}
    values["prompts"] = "\n".join(s.get("prompts") or EXAMPLE_PROMPTS)
    values["prefix_caching"] = s.get("prefix_caching", True)
    return values


# -- from the record to what is drawn -------------------------------------------------------------
