"""Writes the PR timeline fixtures: GitHub REST responses (the fields zero2vllm reads, in
GitHub's shapes) for one PR at each stage. Written by hand from GitHub's API docs, since the
tests have no network; rerun after editing: python tests/data/github/make_fixtures.py"""

import json
from pathlib import Path

HERE = Path(__file__).parent
REPO = "/repos/vllm-project/vllm"
N, SHA = 31234, "3f2c1a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39"
ME, REVIEWER = "ada-learner", "maintainer-1"


def user(login):
    return {"login": login, "type": "User"}


def pr(**kw):
    base = {"number": N, "title": "[Bugfix] cdiv rounds up, so a 17-token prompt gets 2 blocks",
            "state": "open", "draft": False, "user": user(ME), "created_at": "2026-11-20T09:00:00Z",
            "merged": False, "merged_at": None, "labels": [], "head": {"sha": SHA, "ref": "fix-cdiv"},
            "html_url": f"https://github.com/vllm-project/vllm/pull/{N}"}
    return {**base, **kw}


def checks(*runs):
    return {"total_count": len(runs), "check_runs": [
        {"name": name, "status": status, "conclusion": conclusion, "app": {"slug": slug}}
        for name, status, conclusion, slug in runs]}


DCO_OK = ("DCO", "completed", "success", "dco")
PRE_COMMIT_OK = ("pre-commit", "completed", "success", "github-actions")
COMMENT = {"id": 901, "user": user(REVIEWER), "path": "vllm/utils.py", "in_reply_to_id": None,
           "body": "Could you add a test for cdiv(0, 16) too?", "created_at": "2026-11-23T10:00:00Z"}
REPLY = {"id": 902, "user": user(ME), "path": "vllm/utils.py", "in_reply_to_id": 901,
         "body": "Added in the last commit, thanks!", "created_at": "2026-11-23T12:00:00Z"}
REVIEW = [{"id": 77, "user": user(REVIEWER), "state": "COMMENTED", "submitted_at": "2026-11-23T10:00:00Z"}]
APPROVED = REVIEW + [{"id": 78, "user": user(REVIEWER), "state": "APPROVED", "submitted_at": "2026-11-24T09:00:00Z"}]
BUILDKITE = {"state": "success", "statuses": [{"context": "buildkite/ci/pr", "state": "success"}]}

STATES = {
    # Opened 2026-11-20, DCO failing, nobody has looked: the lab explains DCO; status suggests a ping.
    "opened": {"pulls": pr(), "checks": checks(("DCO", "completed", "failure", "dco"), PRE_COMMIT_OK),
               "status": {"state": "pending", "statuses": []}, "reviews": [], "comments": []},
    "reviewed": {"pulls": pr(), "checks": checks(DCO_OK, PRE_COMMIT_OK),
                 "status": {"state": "pending", "statuses": []}, "reviews": REVIEW, "comments": [COMMENT]},
    "answered": {"pulls": pr(), "checks": checks(DCO_OK, PRE_COMMIT_OK),
                 "status": {"state": "pending", "statuses": []}, "reviews": REVIEW,
                 "comments": [COMMENT, REPLY]},
    "ready": {"pulls": pr(labels=[{"name": "ready"}]), "checks": checks(DCO_OK, PRE_COMMIT_OK),
              "status": BUILDKITE, "reviews": APPROVED, "comments": [COMMENT, REPLY]},
    "merged": {"pulls": pr(state="closed", merged=True, merged_at="2026-11-26T15:00:00Z",
                           labels=[{"name": "ready"}]),
               "checks": checks(DCO_OK, PRE_COMMIT_OK), "status": BUILDKITE, "reviews": APPROVED,
               "comments": [COMMENT, REPLY]},
}

for state, data in STATES.items():
    d = HERE / state
    d.mkdir(exist_ok=True)
    files = {f"{REPO}/pulls/{N}": data["pulls"], f"{REPO}/commits/{SHA}/check-runs": data["checks"],
             f"{REPO}/commits/{SHA}/status": data["status"], f"{REPO}/pulls/{N}/reviews": data["reviews"],
             f"{REPO}/pulls/{N}/comments": data["comments"]}
    for path, body in files.items():
        name = path.strip("/").replace("/", "__") + ".json"
        (d / name).write_text(json.dumps(body, indent=1) + "\n")
