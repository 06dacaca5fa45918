"""The Admin API (protos/crm/admin/v1/admin.proto): every service's project role serves it about
the projections it runs (runtime.project), so operators need no database credentials."""
