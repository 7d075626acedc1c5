CREATE TABLE IF NOT EXISTS studies (
    id            TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    study          TEXT NOT NULL REFERENCES studies(id),
    round          INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'completed', 'abandoned')),
    reason         TEXT,
    message        TEXT,
    roster_size    INTEGER NOT NULL,
    threshold      INTEGER NOT NULL,
    safety_code    TEXT NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    count          INTEGER,
    sum            REAL,
    mean           REAL,
    stddev         REAL,
    histogram      TEXT,
    contributors   TEXT,
    partial_sums   INTEGER,
    PRIMARY KEY (study, round)
);
PRAGMA user_version = 1;
