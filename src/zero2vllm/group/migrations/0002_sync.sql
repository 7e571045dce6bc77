-- 2: sync. Every accepted change (the journal), the last-writer-wins row of every synced row,
-- and typed projections of the rows the dashboard reads, kept in the same transaction.
-- Only change_log references account: the other tables are derived from it by the push, and a
-- foreign key check per row made them most of a push's time.
CREATE TABLE change_log (
    seq BIGSERIAL PRIMARY KEY,
    change_id TEXT NOT NULL UNIQUE,
    learner_id BIGINT NOT NULL REFERENCES account (id),
    entity TEXT NOT NULL,
    key TEXT NOT NULL,
    version BIGINT NOT NULL,
    device TEXT NOT NULL,
    deleted BOOLEAN NOT NULL,
    row JSONB,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX change_log_learner_seq ON change_log (learner_id, seq);

CREATE TABLE learner_row (
    learner_id BIGINT NOT NULL,
    entity TEXT NOT NULL,
    key TEXT NOT NULL,
    version BIGINT NOT NULL,
    device TEXT NOT NULL,
    change_id TEXT NOT NULL,
    deleted BOOLEAN NOT NULL,                     -- tombstones are kept: an older change loses
    row JSONB,
    PRIMARY KEY (learner_id, entity, key)
);

CREATE TABLE g_time_entry (
    learner_id BIGINT NOT NULL,
    uid TEXT NOT NULL,
    item_id TEXT NOT NULL,
    day DATE NOT NULL,
    seconds INTEGER NOT NULL,
    note TEXT,
    source TEXT NOT NULL,
    PRIMARY KEY (learner_id, uid)
);
CREATE INDEX g_time_entry_day ON g_time_entry (learner_id, day);
CREATE INDEX g_time_entry_item ON g_time_entry (learner_id, item_id);

CREATE TABLE g_day_total (
    learner_id BIGINT NOT NULL,
    day DATE NOT NULL,
    seconds BIGINT NOT NULL,
    PRIMARY KEY (learner_id, day)
);
CREATE INDEX g_day_total_day ON g_day_total (day);

CREATE TABLE g_item_state (
    learner_id BIGINT NOT NULL,
    item_id TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (learner_id, item_id)
);

CREATE TABLE g_note (
    learner_id BIGINT NOT NULL,
    item_id TEXT NOT NULL,
    text TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (learner_id, item_id)
);

CREATE TABLE g_lab_run (
    learner_id BIGINT NOT NULL,
    uid TEXT NOT NULL,
    lab TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    passed BOOLEAN NOT NULL,
    criteria JSONB NOT NULL,
    metrics JSONB NOT NULL,
    PRIMARY KEY (learner_id, uid)
);
CREATE INDEX g_lab_run_lab ON g_lab_run (lab);
CREATE INDEX g_lab_run_learner_lab ON g_lab_run (learner_id, lab, at);

CREATE TABLE g_plan (
    learner_id BIGINT PRIMARY KEY,
    source_text TEXT NOT NULL,
    start_date TEXT
);

CREATE TABLE g_activity (
    learner_id BIGINT PRIMARY KEY,
    last_change_at TIMESTAMPTZ,                   -- the last push that brought a new change
    last_day DATE                                 -- the latest day of a live time entry
);
