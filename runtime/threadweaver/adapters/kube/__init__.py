"""Kubernetes adapters of the runtime: the shard-map watch and the member Lease.

Least privilege: a member reads one ConfigMap (`<cluster>-shardmap`) and writes one Lease (its
own pod name) in its namespace; see the Role the operator builds.
"""
