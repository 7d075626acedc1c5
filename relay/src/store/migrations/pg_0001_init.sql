-- cohort schema version 1 (PostgreSQL). Same meaning as the SQLite schema: public data only
-- (study specifications, round metadata, revealed aggregates); never a value, share or key.
CREATE TABLE studies (
    seq           BIGSERIAL NOT NULL UNIQUE,
    id            TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE rounds (
    study          TEXT NOT NULL REFERENCES studies(id),
    round          BIGINT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'completed', 'abandoned')),
    reason         TEXT,
    message        TEXT,
    roster_size    BIGINT NOT NULL,
    threshold      BIGINT NOT NULL,
    safety_code    TEXT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT,
    count          BIGINT,
    sum            DOUBLE PRECISION,
    mean           DOUBLE PRECISION,
    stddev         DOUBLE PRECISION,
    histogram      TEXT,
    contributors   TEXT,
    partial_sums   BIGINT,
    PRIMARY KEY (study, round)
);
-- Which relay runs a study: a lease renewed by its owner, expiring on the database clock.
CREATE TABLE study_owner (
    study      TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
