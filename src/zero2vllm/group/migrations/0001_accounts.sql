-- 1: people, their roles, invites, API tokens for the CLI, web sessions, login attempts.
CREATE TABLE account (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL UNIQUE CHECK (email = lower(email)),
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'mentor', 'learner')),
    password_hash TEXT NOT NULL,
    share_notes BOOLEAN NOT NULL DEFAULT false,   -- mentors may read this learner's notes
    on_board BOOLEAN NOT NULL DEFAULT false,      -- this learner's lab metrics show on the board
    disabled BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE invite (
    id BIGSERIAL PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,              -- sha256 of the token; the token is shown once
    role TEXT NOT NULL CHECK (role IN ('admin', 'mentor', 'learner')),
    email TEXT,                                   -- when set, only this address may use it
    created_by BIGINT REFERENCES account (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    used_by BIGINT REFERENCES account (id)
);
CREATE TABLE api_token (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES account (id),
    token_hash TEXT NOT NULL UNIQUE,              -- sha256 of the token; the token is shown once
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX api_token_account ON api_token (account_id);
CREATE TABLE web_session (
    id_hash TEXT PRIMARY KEY,                     -- sha256 of the cookie value
    account_id BIGINT NOT NULL REFERENCES account (id),
    csrf TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE login_attempt (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL,
    remote TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ok BOOLEAN NOT NULL
);
CREATE INDEX login_attempt_recent ON login_attempt (email, at);
CREATE INDEX login_attempt_remote ON login_attempt (remote, at);
