"""A kubernetes_asyncio API client from a kubeconfig file or the in-cluster service account."""

from __future__ import annotations

from kubernetes_asyncio import client, config


async def api_client(kubeconfig: str = "") -> client.ApiClient:
    if kubeconfig:
        cfg = client.Configuration()
        await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        return client.ApiClient(configuration=cfg)
    config.load_incluster_config()
    return client.ApiClient()
