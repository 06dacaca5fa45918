-- The table definition (a hash of the projection's DDL) each read-model schema was built with.
-- When a projection's DDL changes, its leader rebuilds it side by side before following the
-- log again; a schema with no row here predates this table and is rebuilt once.
CREATE TABLE projections.definitions (
    schema_name text        PRIMARY KEY,
    ddl_hash    text        NOT NULL,
    built_at    timestamptz NOT NULL DEFAULT now()
);
