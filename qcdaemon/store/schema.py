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
    (
        "search psms",
        """
        CREATE TABLE IF NOT EXISTS psms (
            run_id INTEGER NOT NULL,
            scan INTEGER NOT NULL,
            rt DOUBLE,
            precursor_mz DOUBLE,
            charge SMALLINT,
            peptide VARCHAR,
            sequence VARCHAR,
            proteins VARCHAR,
            decoy BOOLEAN,
            hyperscore DOUBLE,
            calc_mass DOUBLE,
            precursor_error_ppm DOUBLE,
            isotope_error DOUBLE,
            missed_cleavages SMALLINT,
            length SMALLINT,
            matched_peaks SMALLINT,
            spectrum_q DOUBLE,
            peptide_q DOUBLE,
            protein_q DOUBLE
        );
        CREATE INDEX IF NOT EXISTS psms_run ON psms (run_id);
        ALTER TABLE pipelines ADD COLUMN IF NOT EXISTS search_params VARCHAR;
        """,
    ),
    (
        # a run whose file failed (truncated) and whose later, complete version became a new run:
        # kept for its history, hidden from qc-data (issue 11)
        "runs_superseded_by",
        "ALTER TABLE runs ADD COLUMN IF NOT EXISTS superseded_by INTEGER;",
    ),
    (
        # Protein groups without the per-row JSON blob of every proteinGroups.txt column (85 % of
        # the file, decoded row by row on each read): the original's standard columns (spec 4.1)
        # become real columns, each cell kept as its JSON text so an answer is assembled in SQL
        # without parsing or re-encoding; the other columns of the blob are dropped, as the
        # original drops them.  No index: rows arrive clustered by run, zone maps prune.
        "protein_groups_columnar",
        """
        CREATE TABLE protein_groups_v2 (
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
            n_proteins VARCHAR,
            peptides VARCHAR,
            razor_unique_peptides VARCHAR,
            unique_peptides VARCHAR,
            sequence_coverage VARCHAR,
            unique_razor_sequence_coverage VARCHAR,
            unique_sequence_coverage VARCHAR,
            mol_weight_kda VARCHAR,
            sequence_length VARCHAR,
            sequence_lengths VARCHAR,
            q_value VARCHAR,
            msms_count VARCHAR,
            mq_id VARCHAR,
            peptide_ids VARCHAR,
            peptide_is_razor VARCHAR,
            mod_peptide_ids VARCHAR,
            evidence_ids VARCHAR,
            msms_ids VARCHAR,
            best_msms VARCHAR,
            oxidation_m_site_ids VARCHAR,
            oxidation_m_site_positions VARCHAR
        );
        INSERT INTO protein_groups_v2
            SELECT run_id, idx, majority_ids, fasta_headers, score, intensity, contaminant, reverse, only_by_site,
                   reporter,
                   json_extract(extra, '$."Number of proteins"')::VARCHAR,
                   json_extract(extra, '$."Peptides"')::VARCHAR,
                   json_extract(extra, '$."Razor + unique peptides"')::VARCHAR,
                   json_extract(extra, '$."Unique peptides"')::VARCHAR,
                   json_extract(extra, '$."Sequence coverage [%]"')::VARCHAR,
                   json_extract(extra, '$."Unique + razor sequence coverage [%]"')::VARCHAR,
                   json_extract(extra, '$."Unique sequence coverage [%]"')::VARCHAR,
                   json_extract(extra, '$."Mol. weight [kDa]"')::VARCHAR,
                   json_extract(extra, '$."Sequence length"')::VARCHAR,
                   json_extract(extra, '$."Sequence lengths"')::VARCHAR,
                   json_extract(extra, '$."Q-value"')::VARCHAR,
                   json_extract(extra, '$."MS/MS count"')::VARCHAR,
                   json_extract(extra, '$."id"')::VARCHAR,
                   json_extract(extra, '$."Peptide IDs"')::VARCHAR,
                   json_extract(extra, '$."Peptide is razor"')::VARCHAR,
                   json_extract(extra, '$."Mod. peptide IDs"')::VARCHAR,
                   json_extract(extra, '$."Evidence IDs"')::VARCHAR,
                   json_extract(extra, '$."MS/MS IDs"')::VARCHAR,
                   json_extract(extra, '$."Best MS/MS"')::VARCHAR,
                   json_extract(extra, '$."Oxidation (M) site IDs"')::VARCHAR,
                   json_extract(extra, '$."Oxidation (M) site positions"')::VARCHAR
            FROM protein_groups ORDER BY run_id, idx;
        DROP INDEX protein_groups_run;
        DROP TABLE protein_groups;
        ALTER TABLE protein_groups_v2 RENAME TO protein_groups;
        """,
    ),
    (
        # qc_values is read by run through zone maps (rows arrive clustered by run); its ART index
        # lives in memory and costs every insert.  Idempotent, like any last step should be.
        "qc_values_without_index",
        """
        DROP INDEX IF EXISTS qc_values_run;
        """,
    ),
    (
        # Each run's QC values merged once, at ingest, as /api/qc-data shows them (qcdata.
        # merge_run_values: another source over the scan engines, the alphabetically later one
        # winning; a RawTools value unless null over native's), with the key that orders the
        # columns (first insertion: native, RawTools, then the other sources by name; file order).
        # Kept up to date by every write of qc_values.  Idempotent: rebuilt from qc_values.
        "qc_cells",
        """
        CREATE TABLE IF NOT EXISTS qc_cells (
            run_id INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            value VARCHAR NOT NULL,
            okey BIGINT NOT NULL
        );
        DELETE FROM qc_cells;
        INSERT INTO qc_cells
            SELECT run_id, name,
                   arg_max(value, (CASE source WHEN 'native' THEN 1
                                   WHEN 'rawtools' THEN CASE WHEN value <> 'null' THEN 2 ELSE 0 END
                                   ELSE 3 END, source)),
                   min(okey)
            FROM (SELECT run_id, name, source, coalesce(value, 'null') AS value,
                         CASE source WHEN 'native' THEN 0 WHEN 'rawtools' THEN 1
                         ELSE 2 + dense_rank() OVER (PARTITION BY run_id ORDER BY source) END * 10000000 + ord AS okey
                  FROM qc_values)
            GROUP BY run_id, name;
        """,
    ),
    (
        # Where a stage ran when it ran on a Dask cluster (issue 17): the remote job's key (the
        # Dask future's, published on the scheduler so a restarted daemon re-attaches to it) and
        # the worker's address.  NULL for stages that ran on this machine.
        "stages_remote",
        """
        ALTER TABLE stages ADD COLUMN IF NOT EXISTS remote_key VARCHAR;
        ALTER TABLE stages ADD COLUMN IF NOT EXISTS worker VARCHAR;
        """,
    ),
    (
        # Per-pipeline QC settings written from the config file's [[qc]] tables carry the file's path:
        # the daemon replaces them at each start, drops those the file no longer names, and the API
        # refuses to change them (qcdaemon.service.qcconfig).  NULL: set through the API or the CLI.
        "qc_settings_config_file",
        """
        ALTER TABLE qc_metric_settings ADD COLUMN IF NOT EXISTS config_file VARCHAR;
        ALTER TABLE qc_pipeline_settings ADD COLUMN IF NOT EXISTS config_file VARCHAR;
        """,
    ),
    (
        # The change cursor (issue 17, the lab-wide view): every write of a run or of its QC values
        # gives the run the next number of ``seq_changes``, in the writing transaction; one writer
        # thread commits in that order, so a reader never sees a number before a smaller one.  A
        # hub pulls by it (GET /api/changes) and keeps, per run it pulled, where it came from
        # (``origin``: the source's name, ``origin_key``: the run's key there) and, per source, the
        # cursor of the last batch it committed.
        "change cursor and hub origin",
        """
        CREATE SEQUENCE IF NOT EXISTS seq_changes START 1;
        ALTER TABLE runs ADD COLUMN IF NOT EXISTS change_seq BIGINT;
        ALTER TABLE runs ADD COLUMN IF NOT EXISTS origin VARCHAR;
        ALTER TABLE runs ADD COLUMN IF NOT EXISTS origin_key VARCHAR;
        UPDATE runs SET change_seq = nextval('seq_changes') WHERE change_seq IS NULL;
        CREATE TABLE IF NOT EXISTS hub_cursors (
            source VARCHAR PRIMARY KEY,
            cursor BIGINT NOT NULL,
            pulled_at TIMESTAMP NOT NULL
        );
        """,
    ),
    (
        # The hub's second half (issue 17): a run deleted here leaves a tombstone with the next change
        # number, so a hub pulling by the cursor deletes its copy (``deleted_runs``, scoped by the
        # project the run was in); per pulled run, the hub keeps the fingerprint of the per-run data
        # (protein groups, PSMs, chromatograms) it wants and the one it holds, and the judgement
        # (flag, accept/reject) last pulled from the origin apart from its own (NULL: follows the origin).
        "hub data, deletions and judgements",
        """
        CREATE TABLE IF NOT EXISTS deleted_runs (
            change_seq BIGINT NOT NULL,
            run_key VARCHAR NOT NULL,
            project_id INTEGER,
            deleted_at TIMESTAMP NOT NULL
        );
        CREATE TABLE IF NOT EXISTS hub_runs (
            run_id INTEGER PRIMARY KEY,
            data_wanted VARCHAR,
            data_applied VARCHAR,
            data_pending BOOLEAN NOT NULL DEFAULT false,
            origin_flagged BOOLEAN,
            origin_use_downstream BOOLEAN,
            hub_flagged BOOLEAN,
            hub_use_downstream BOOLEAN
        );
        """,
    ),
    (
        # The hub_unreachable alert's outage start (issue 17): since when each [[hub.source]] has
        # failed (the first alerts check that found it failing, on the alerts' clock), so the alert's
        # "since" and its timing survive a restart of the hub; the row goes when the source answers.
        # IF NOT EXISTS: this migration may be merged at another position of the list than written
        "hub source failures",
        """
        CREATE TABLE IF NOT EXISTS hub_source_failures (
            source VARCHAR PRIMARY KEY,
            failing_since TIMESTAMP NOT NULL
        );
        """,
    ),
    (
        # The protein dictionary (issue 13): each (Majority protein IDs, Fasta headers) pair once,
        # with an integer id, and each protein group's id in ``protein_groups.pid``, so the protein
        # routes group and filter on integers before touching the wide rows (the strings of
        # 1.27M rows at 1,000 runs are read once per name, not once per run).  ``con_prefix`` /
        # ``rev_prefix``: the IDs start CON__ / REV__ (the routes' contaminant/reverse filter on the
        # IDs).  Kept at ingest (ProteinQueries.insert_arrow); backfilled here.  Idempotent.
        "protein_dictionary",
        """
        CREATE SEQUENCE IF NOT EXISTS seq_proteins START 1;
        CREATE TABLE IF NOT EXISTS proteins (
            pid INTEGER NOT NULL,
            majority_ids VARCHAR NOT NULL,
            fasta_headers VARCHAR,
            con_prefix BOOLEAN NOT NULL,
            rev_prefix BOOLEAN NOT NULL
        );
        ALTER TABLE protein_groups ADD COLUMN IF NOT EXISTS pid INTEGER;
        INSERT INTO proteins
            SELECT nextval('seq_proteins'), majority_ids, fasta_headers,
                   majority_ids LIKE 'CON\\_\\_%' ESCAPE '\\', majority_ids LIKE 'REV\\_\\_%' ESCAPE '\\'
            FROM (SELECT DISTINCT g.majority_ids, g.fasta_headers FROM protein_groups g
                  WHERE g.pid IS NULL AND NOT EXISTS (
                      SELECT 1 FROM proteins p WHERE p.majority_ids = g.majority_ids
                      AND p.fasta_headers IS NOT DISTINCT FROM g.fasta_headers)
                  ORDER BY majority_ids, fasta_headers);
        UPDATE protein_groups g SET pid = p.pid FROM proteins p
            WHERE g.pid IS NULL AND p.majority_ids = g.majority_ids
            AND p.fasta_headers IS NOT DISTINCT FROM g.fasta_headers;
        """,
    ),
]
