"""The sync endpoints (docs/group.md, "Endpoints"): POST /api/v1/sync/push and GET
/api/v1/sync/pull, for the learner whose API token comes with the request."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from zero2vllm.group import auth, sync
from zero2vllm.group.sync_check import MAX_BODY_BYTES, SyncError

bp = Blueprint("sync_api", __name__)


def _error(exc: SyncError):
    return jsonify(error={"code": exc.status, "message": exc.message}), exc.status


@bp.post("/api/v1/sync/push")
@auth.require_token
def push():
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _error(SyncError(413, f"the push is over {MAX_BODY_BYTES >> 20} MiB: send fewer changes at once"))
    try:
        return jsonify(sync.push(g.db, g.account["id"], request.get_data(cache=False)))
    except SyncError as exc:
        return _error(exc)


@bp.get("/api/v1/sync/pull")
@auth.require_token
def pull():
    try:
        return jsonify(sync.pull(g.db, g.account["id"], request.args.get("after"), request.args.get("limit")))
    except SyncError as exc:
        return _error(exc)
