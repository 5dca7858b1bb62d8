"""Versioned schema migrations, applied in order and recorded in ``schema_version``.

A migration is never edited once released: add a new one at the end of ``MIGRATIONS``.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "initial",
        """
        CREATE SEQUENCE seq_users START 1;
        CREATE SEQUENCE seq_projects START 1;
        CREATE SEQUENCE seq_pipelines START 1;
        CREATE SEQUENCE seq_runs START 1;
        CREATE SEQUENCE seq_files START 1;

        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            email VARCHAR NOT NULL UNIQUE,
            password_hash VARCHAR,
            is_admin BOOLEAN NOT NULL DEFAULT false,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE projects (
            id INTEGER PRIMARY KEY,
            name VARCHAR NOT NULL UNIQUE,
            slug VARCHAR NOT NULL UNIQUE,
            description VARCHAR NOT NULL DEFAULT '',
            created_by INTEGER,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE project_members (
            project_id INTEGER NOT NULL,
            user_id INTEGER NOT NULL,
            PRIMARY KEY (project_id, user_id)
        );
        CREATE TABLE pipelines (
            id INTEGER PRIMARY KEY,
            uuid VARCHAR NOT NULL UNIQUE,
            project_id INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            slug VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            fasta_path VARCHAR,
            mqpar_path VARCHAR,
            rawtools_args VARCHAR NOT NULL,
            read_only BOOLEAN NOT NULL DEFAULT false,
            created_by INTEGER,
            created_at TIMESTAMP NOT NULL,
            UNIQUE (project_id, slug)
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            pipeline_id INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            stored_path VARCHAR,
            source VARCHAR NOT NULL,
            size BIGINT,
            sha256 VARCHAR,
            owner_id INTEGER,
            created_at TIMESTAMP NOT NULL,
            acquired_at TIMESTAMP,
            flagged BOOLEAN NOT NULL DEFAULT false,
            use_downstream BOOLEAN,
            state VARCHAR NOT NULL,
            error VARCHAR,
            metrics_engine VARCHAR
        );
        CREATE INDEX runs_pipeline ON runs (pipeline_id);
        CREATE TABLE stages (
            run_id INTEGER NOT NULL,
            stage VARCHAR NOT NULL,
            seq INTEGER NOT NULL,
            state VARCHAR NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            queued_at TIMESTAMP,
            started_at TIMESTAMP,
            ended_at TIMESTAMP,
            exit_code INTEGER,
            log_dir VARCHAR,
            error VARCHAR,
            PRIMARY KEY (run_id, stage)
        );
        CREATE TABLE qc_values (
            run_id INTEGER NOT NULL,
            source VARCHAR NOT NULL,
            ord INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            value VARCHAR
        );
        CREATE INDEX qc_values_run ON qc_values (run_id);
        CREATE TABLE protein_groups (
            run_id INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            majority_ids VARCHAR NOT NULL,
            fasta_headers VARCHAR,
            score DOUBLE,
            intensity DOUBLE,
            contaminant BOOLEAN NOT NULL,
            reverse BOOLEAN NOT NULL,
            only_by_site BOOLEAN NOT NULL,
            reporter DOUBLE[],
            extra VARCHAR
        );
        CREATE INDEX protein_groups_run ON protein_groups (run_id);
        CREATE TABLE chromatograms (
            run_id INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            rt DOUBLE[],
            intensity DOUBLE[]
        );
        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            watch_path VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            size BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            sha256 VARCHAR NOT NULL,
            state VARCHAR NOT NULL,
            reason VARCHAR,
            run_id INTEGER,
            first_seen TIMESTAMP NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            UNIQUE (path, size, mtime_ns, sha256)
        );
        CREATE TABLE tokens (
            user_id INTEGER PRIMARY KEY,
            digest VARCHAR NOT NULL UNIQUE,
            sealed VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE sessions (
            digest VARCHAR PRIMARY KEY,
            user_id INTEGER,
            csrf VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            expires_at TIMESTAMP NOT NULL
        );
        """,
    ),
    (
        "quality control: guide sets, annotations, exclusions, metric rules, verdicts",
        """
        CREATE SEQUENCE IF NOT EXISTS seq_qc_guide_sets START 1;
        CREATE SEQUENCE IF NOT EXISTS seq_qc_annotations START 1;
        CREATE TABLE IF NOT EXISTS qc_guide_sets (
            id INTEGER PRIMARY KEY,
            pipeline_id INTEGER NOT NULL,
            label VARCHAR NOT NULL DEFAULT '',
            start_at TIMESTAMP,
            end_at TIMESTAMP,
            run_keys VARCHAR,
            created_by INTEGER,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE IF NOT EXISTS qc_annotation_kinds (
            name VARCHAR PRIMARY KEY,
            label VARCHAR NOT NULL,
            resets_baseline BOOLEAN NOT NULL DEFAULT false
        );
        INSERT OR IGNORE INTO qc_annotation_kinds VALUES
            ('column_change', 'Column change', true),
            ('source_cleaned', 'Source cleaned', false),
            ('calibration', 'Calibration', false),
            ('maintenance', 'Maintenance', false),
            ('instrument_offline', 'Instrument offline', false),
            ('other', 'Other', false);
        CREATE TABLE IF NOT EXISTS qc_annotations (
            id INTEGER PRIMARY KEY,
            pipeline_id INTEGER NOT NULL,
            kind VARCHAR NOT NULL,
            happened_at TIMESTAMP NOT NULL,
            text VARCHAR NOT NULL DEFAULT '',
            author_id INTEGER,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE IF NOT EXISTS qc_exclusions (
            run_id INTEGER NOT NULL,
            metric VARCHAR NOT NULL,
            pipeline_id INTEGER NOT NULL,
            reason VARCHAR NOT NULL DEFAULT '',
            created_by INTEGER,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE IF NOT EXISTS qc_metric_settings (
            pipeline_id INTEGER NOT NULL,
            metric VARCHAR NOT NULL,
            rules VARCHAR,
            overrides VARCHAR,
            updated_by INTEGER,
            updated_at TIMESTAMP NOT NULL
        );
        CREATE TABLE IF NOT EXISTS qc_pipeline_settings (
            pipeline_id INTEGER NOT NULL,
            auto_guide_runs INTEGER NOT NULL,
            offline_hours DOUBLE,
            updated_by INTEGER,
            updated_at TIMESTAMP NOT NULL
        );
        CREATE TABLE IF NOT EXISTS qc_verdicts (
            run_id INTEGER NOT NULL,
            pipeline_id INTEGER NOT NULL,
            verdict VARCHAR NOT NULL,
            summary VARCHAR NOT NULL,
            detail VARCHAR NOT NULL,
            guide_set VARCHAR,
            computed_at TIMESTAMP NOT NULL
        );
        """,
    ),
    (
        "alerts: alerts, their deliveries (the outbox) and every delivery attempt",
        # IF NOT EXISTS: this migration may be merged at another position of the list than written
        """
        CREATE SEQUENCE IF NOT EXISTS seq_alerts START 1;
        CREATE SEQUENCE IF NOT EXISTS seq_alert_deliveries START 1;
        CREATE TABLE IF NOT EXISTS alerts (
            id INTEGER PRIMARY KEY,
            rule VARCHAR NOT NULL,
            condition VARCHAR NOT NULL,
            subject VARCHAR NOT NULL,
            scope VARCHAR NOT NULL,
            project_id INTEGER,
            state VARCHAR NOT NULL,
            opened_at TIMESTAMP NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            resolved_at TIMESTAMP,
            acknowledged_at TIMESTAMP,
            acknowledged_by VARCHAR,
            events INTEGER NOT NULL DEFAULT 1,
            notified_events INTEGER NOT NULL DEFAULT 0,
            last_notified_at TIMESTAMP,
            title VARCHAR NOT NULL,
            message VARCHAR NOT NULL,
            detail VARCHAR
        );
        CREATE INDEX IF NOT EXISTS alerts_rule_subject ON alerts (rule, subject);
        CREATE TABLE IF NOT EXISTS alert_events (
            alert_id INTEGER NOT NULL,
            rule VARCHAR NOT NULL,
            event_key VARCHAR NOT NULL,
            occurred_at TIMESTAMP NOT NULL,
            text VARCHAR NOT NULL,
            PRIMARY KEY (rule, event_key)
        );
        CREATE TABLE IF NOT EXISTS alert_deliveries (
            id INTEGER PRIMARY KEY,
            alert_id INTEGER,
            channel VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            title VARCHAR NOT NULL,
            body VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            state VARCHAR NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMP,
            last_attempt_at TIMESTAMP,
            last_error VARCHAR,
            sent_at TIMESTAMP,
            digest_id INTEGER
        );
        CREATE TABLE IF NOT EXISTS alert_attempts (
            delivery_id INTEGER NOT NULL,
            channel VARCHAR NOT NULL,
            attempted_at TIMESTAMP NOT NULL,
            ok BOOLEAN NOT NULL,
            error VARCHAR
        );
        CREATE TABLE IF NOT EXISTS alert_cursors (
            name VARCHAR PRIMARY KEY,
            value_at TIMESTAMP NOT NULL
        );
        """,
    ),
]
