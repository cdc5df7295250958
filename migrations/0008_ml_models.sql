-- 0008: ML model versions (issue #6).
-- Why: `sharehub train` stores every model it trains - with the metrics it scored on a time-based
-- holdout, beside the baselines and the model it was measured against - and promotes it only if
-- it beats the current one. Serving replicas load the promoted version and reload when it
-- changes, so "which model answers now, and why that one" is one query, and a rollback is an
-- UPDATE. The artifact itself lives in the model store (disk or object store), named by URI and
-- checked by its SHA-256 when loaded.

CREATE TABLE ml_models (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('pricing', 'similar')),
    version         integer NOT NULL CHECK (version >= 1),
    status          text NOT NULL CHECK (status IN ('promoted', 'rejected', 'retired')),
    artifact_uri    text NOT NULL,
    artifact_sha256 text NOT NULL CHECK (artifact_sha256 ~ '^[0-9a-f]{64}$'),
    artifact_bytes  bigint NOT NULL CHECK (artifact_bytes > 0),
    -- The holdout's scores: this model's, the baselines', and the promoted model's on the same rows.
    metrics         jsonb NOT NULL,
    -- What it was trained on: row counts, the holdout's dates, parameters.
    training        jsonb NOT NULL DEFAULT '{}',
    -- Why it was promoted or not, in words.
    decision        text NOT NULL,
    trained_at      timestamptz NOT NULL DEFAULT now(),
    promoted_at     timestamptz,
    UNIQUE (kind, version)
);
-- At most one model of each kind answers.
CREATE UNIQUE INDEX ml_models_promoted ON ml_models (kind) WHERE status = 'promoted';
