"""The operator runs in its own namespace: a one-label DynamoDB endpoint host (a Service of the
cluster's namespace, as the sample writes it) is qualified with the cluster's namespace."""

import pytest

from threadweaver_operator.provisioning import in_cluster_namespace


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://dynalite:8000", "http://dynalite.demo.svc:8000"),
        ("http://dynalite", "http://dynalite.demo.svc"),
        ("http://dynalite.other.svc:8000", "http://dynalite.other.svc:8000"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("https://dynamodb.us-east-1.amazonaws.com", "https://dynamodb.us-east-1.amazonaws.com"),
    ],
)
def test_one_label_hosts_get_the_clusters_namespace(url, expected):
    assert in_cluster_namespace(url, "demo") == expected
