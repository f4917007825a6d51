"""``kubectl threadweaver``: inspect and operate ThreadWeaverClusters through the API server.

The console script ``kubectl-threadweaver`` (installed with the package, so kubectl finds it as
a plugin) reads and writes only through the API server, with the user's kubeconfig and RBAC; it
never calls pods. It lives in the operator package because it plans with the operator's own
modules (``rebalance --dry-run`` calls :func:`..cluster_view.review_cluster`, the function the
operator's pass calls) and speaks to the API with the operator's client; it needs no Kopf.

Modules: :mod:`.main` (the command line), :mod:`.reading` (what a command reads),
:mod:`.status_view`, :mod:`.shards_view`, :mod:`.rebalance_view` (the read-only commands),
:mod:`.actions` (``approve``, ``restart-rmu``), :mod:`.tables` (plain-text tables).
"""
