"""A real Prometheus (hack/prometheus.sh) scrapes running members under load:

- two `threadweaver serve` processes: one embedded on SQLite, one on the production backends
  (dynalite behind a proxy that throttles 5 % of the requests, MariaDB behind a fault proxy);
- the operator's metrics endpoint (its real exposition code, fed by planned passes, since no
  control plane runs here; the operator e2e suite scrapes a running operator);
- the chart's alert rules load; every query of the chart's dashboard returns data; every metric
  the dashboard and the rules use is on a scraped /metrics (the drift guard, live);
- then the read model is stalled (MariaDB unreachable) while commands go on: the projection lag
  grows and the ThreadWeaverProjectionLagHigh alert fires for real (its `for` shortened to 0s in
  this test's copy of the rules; the expression and threshold are the chart's).
"""

from __future__ import annotations

import asyncio
import collections
import time
import urllib.request
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from tests.support.backends import production_backends
from tests.support.dynamo_fault_proxy import DynamoFaultProxy
from tests.support.faultproxy import FaultProxy
from tests.support.operator_observations import lease, observation
from tests.support.prometheus import (
    RULES,
    PrometheusServer,
    alert_rules,
    dashboard_queries,
    metric_names,
)
from tests.support.runtime_process import RuntimeProcess, free_port
from tests.support.services import ensure_services
from threadweaver.domain import new_ulid
from threadweaver.shards import ShardMap
from threadweaver_operator import names, planning
from threadweaver_operator.kube import KubeError
from threadweaver_operator.metrics import OperatorMetrics

LAG_ALERT = "ThreadWeaverProjectionLagHigh"


class Load:
    """Clients creating threads, adding messages (some refused), reading them back."""

    def __init__(self, *urls: str) -> None:
        self.urls = urls
        self.stop = asyncio.Event()
        self.statuses: collections.Counter = collections.Counter()

    async def run(self, http: aiohttp.ClientSession, url: str) -> None:
        admin, tid = new_ulid(), None
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                if tid is None or n % 25 == 0:
                    body = {
                        "accountId": admin,
                        "title": "load",
                        "administratorIds": [admin],
                        "memberIds": [],
                        "createAt": 1,
                    }
                    async with http.post(url + "/v1/threads/create", json=body) as r:
                        self.statuses[r.status] += 1
                        if r.status == 200:
                            tid = (await r.json())["thread_id"]
                    continue
                sender = admin if n % 10 else new_ulid()  # a stranger's message is refused
                body = {
                    "accountId": sender,
                    "createAt": 2,
                    "messages": [{"text": "m", "toAccountIds": []}],
                }
                async with http.post(url + f"/v1/threads/{tid}/messages/add", json=body) as r:
                    self.statuses[r.status] += 1
                if n % 3 == 0:
                    async with http.get(
                        url + f"/v1/threads/{tid}", params={"account_id": admin}
                    ) as r:
                        self.statuses[r.status] += 1
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.statuses[type(exc).__name__] += 1
            await asyncio.sleep(0.01)

    def start(self, http: aiohttp.ClientSession) -> list[asyncio.Task]:
        return [asyncio.create_task(self.run(http, u)) for u in self.urls for _ in range(3)]


def operator_endpoint() -> tuple[str, OperatorMetrics]:
    """The operator's metrics, recorded from planned passes (a rebalance, a handoff waiting,
    a failed pass), served like `threadweaver-operator --metrics-port` serves them."""
    m = OperatorMetrics(CollectorRegistry())
    three = ShardMap.initial(64, [names.member("chat", i) for i in range(3)])
    leases = tuple(lease(names.member("chat", i), 1, acked=three.epoch) for i in range(4))
    first = observation(4, three, leases=leases)
    steps = planning.plan(first)
    m.pass_done(first, steps, now=0.0)
    with pytest.raises(KubeError), m.reconcile("team", "chat"):
        raise KubeError(500, "etcd timeout")
    with m.reconcile("team", "chat"):
        pass
    port = free_port()
    start_http_server(port, addr="127.0.0.1", registry=m.registry)
    return f"127.0.0.1:{port}", m


def exposed_samples(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def rules_with_short_lag_for(path) -> None:
    """The chart's rules with the lag alert's `for` set to 0s (everything else unchanged)."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == LAG_ALERT:
                rule["for"] = "0s"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


async def wait_for(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await asyncio.to_thread(check):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(1)


async def test_prometheus_scrapes_members_dashboard_has_data_and_a_stalled_read_model_alerts(
    tmp_path,
):
    services = ensure_services()
    mysql = urlsplit(services.mysql)
    db_proxy = FaultProxy(mysql.hostname, mysql.port or 3306).start()
    async with production_backends(services) as backends:
        upstream = "http://" + urlsplit(backends.journal_url).netloc
        ddb_proxy = DynamoFaultProxy(upstream, throttle=0.05).start()
        journal_url = backends.journal_url.replace(
            urlsplit(backends.journal_url).netloc, f"127.0.0.1:{ddb_proxy.port}"
        )
        read_model_url = backends.read_model_url.replace(
            f"{mysql.hostname}:{mysql.port or 3306}", f"127.0.0.1:{db_proxy.port}"
        )
        common = ["--passivate-after", "1", "--projection-poll-interval", "1"]
        embedded = RuntimeProcess(tmp_path / "sqlite", name="sqlite", args=common)
        production = RuntimeProcess(
            tmp_path / "dynamo",
            name="dynamo",
            args=[*common, "--journal", journal_url, "--read-model", read_model_url],
        )
        prometheus = None
        try:
            embedded.start()
            production.start(timeout=60)
            operator, _ = operator_endpoint()
            rules = tmp_path / "rules.yaml"
            rules_with_short_lag_for(rules)
            prometheus = PrometheusServer(
                tmp_path / "prometheus",
                targets=[f"127.0.0.1:{embedded.port}", f"127.0.0.1:{production.port}"],
                job_targets={"threadweaver-operator": [operator]},
                rule_files=[rules],
            ).start()
            load = Load(embedded.url, production.url)
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                tasks = load.start(http)
                try:
                    await _answer_a_few_503s(http, db_proxy, production)
                    await _check_scrapes_rules_and_dashboard(
                        prometheus, operator, embedded, production
                    )
                    await _check_the_lag_alert_fires(prometheus, db_proxy, production)
                finally:
                    load.stop.set()
                    await asyncio.gather(*tasks)
            assert load.statuses[200] > 100, load.statuses
        finally:
            if prometheus is not None:
                prometheus.stop()
            embedded.stop()
            production.stop()
            ddb_proxy.close()
            db_proxy.close()


async def _answer_a_few_503s(http, db_proxy, production) -> None:
    """A moment without the read model: queries answer 5xx (the error panels have something
    to show, as they would in production sooner or later). Mostly 503; the first query on a
    pooled connection the proxy reset may answer 500 (the read model's error mapping)."""
    db_proxy.down()
    try:
        for _ in range(3):
            async with http.get(
                f"{production.url}/v1/threads/{new_ulid()}", params={"account_id": new_ulid()}
            ) as r:
                assert r.status >= 500, await r.text()
    finally:
        db_proxy.up()


async def _check_scrapes_rules_and_dashboard(prometheus, operator, embedded, production):
    await wait_for(
        "every target scraped",
        lambda: (
            set(prometheus.targets_up().values()) == {"up"} and len(prometheus.targets_up()) == 3
        ),
        60,
    )
    loaded = {r["name"] for g in prometheus.rule_groups() for r in g["rules"]}
    assert loaded == {r["alert"] for r in alert_rules()}

    missing: dict[str, str] = {}

    def every_query_has_data() -> bool:
        missing.clear()
        for title, expr in dashboard_queries():
            if not prometheus.query(expr):
                missing[title] = expr
        return not missing

    try:
        await wait_for("data for every dashboard query", every_query_has_data, 90)
    except AssertionError:
        raise AssertionError(f"dashboard queries without data: {missing}") from None

    # the drift guard, live: what the dashboard and the rules use is on a scraped /metrics
    exposed = set()
    for url in (embedded.url, production.url, f"http://{operator}"):
        exposed |= exposed_samples(url + "/metrics")
    used = {n for _, expr in dashboard_queries() for n in metric_names(expr)}
    used |= {n for rule in alert_rules() for n in metric_names(rule["expr"])}
    assert used <= exposed, sorted(used - exposed)
    throttled = prometheus.query('sum(threadweaver_dynamodb_requests_total{outcome="throttled"})')
    assert throttled and float(throttled[0]["value"][1]) > 0  # the proxy's throttling is seen


async def _check_the_lag_alert_fires(prometheus, db_proxy, production):
    assert not [a for a in prometheus.alerts() if a["labels"]["alertname"] == LAG_ALERT]
    instance = f"127.0.0.1:{production.port}"
    db_proxy.down()
    try:

        def firing() -> bool:
            return any(
                a["labels"]["alertname"] == LAG_ALERT and a["state"] == "firing"
                for a in prometheus.alerts()
            )

        await wait_for("the projection lag alert", firing, 120)
        lag = prometheus.query(f'max(threadweaver_projection_lag_seconds{{instance="{instance}"}})')
        assert float(lag[0]["value"][1]) > 30
    finally:
        db_proxy.up()

    def caught_up() -> bool:
        lag = prometheus.query(f'max(threadweaver_projection_lag_seconds{{instance="{instance}"}})')
        return bool(lag) and float(lag[0]["value"][1]) < 5

    await wait_for("the read model to catch up", caught_up, 120)
